package snp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/confidential-go/atls/atls/attest"
)

// The secure-processor model stands in front of an attester and makes it
// cost what the AMD secure processor costs a guest: a fixed latency per
// report, one request in flight at a time (the guest driver serializes
// requests, and waiters are served in arrival order), and a host-side
// throttle modelled as a token bucket. The simulator signs in software in
// well under a millisecond; without this model, benchmarks and demos would
// hide the one resource that limits fresh attestation on real hardware.
//
// Figures of the named profiles: about 8 ms per report on a GCP Milan
// guest, and GCP's throttle, which stalls about every tenth report of a
// burst so that the sustained rate is about one report per second.

// SPProfile is a timing model of the secure processor. The zero value is
// the profile "none": no latency, no throttle.
type SPProfile struct {
	// Name names the profile in logs and help text; "" reads as "none"
	// when the profile adds nothing, "custom" otherwise.
	Name string
	// Latency is the time one report takes on the device, including the
	// wrapped attester's own time: a report returns no earlier than
	// Latency after the device started on it. Zero adds nothing.
	Latency time.Duration
	// Rate is the sustained number of reports per second the host lets
	// through; zero means no throttle.
	Rate float64
	// Burst is how many reports may pass at once before Rate applies
	// (the bucket size). Zero means 1 when Rate is set.
	Burst int
	// ThrottleTimeout is the longest a report waits for the throttle
	// before it fails with check "snp.sp.throttle", as the Linux driver
	// gives up after retrying for 60 s. Zero means no limit.
	ThrottleTimeout time.Duration
}

// Named secure-processor profiles, for ParseSPProfile and help text.
var spProfiles = []SPProfile{
	{Name: "none"},
	{Name: "serial-8ms", Latency: 8 * time.Millisecond},
	{Name: "gcp", Latency: 8 * time.Millisecond, Rate: 1, Burst: 10, ThrottleTimeout: 60 * time.Second},
}

// SPProfiles returns the named profiles, in a fixed order starting with
// "none".
func SPProfiles() []SPProfile { return slices.Clone(spProfiles) }

// SPProfileNames returns the names ParseSPProfile accepts, in a fixed
// order starting with "none".
func SPProfileNames() []string {
	names := make([]string, len(spProfiles))
	for i, p := range spProfiles {
		names[i] = p.Name
	}
	return names
}

// ParseSPProfile returns the named profile: "none" (no latency, no
// throttle), "serial-8ms" (8 ms per report, serialized, no throttle) or
// "gcp" (8 ms per report, burst 10, then one report per second, reports
// that would wait more than 60 s for the throttle fail). "" means "none".
func ParseSPProfile(name string) (SPProfile, error) {
	if name == "" {
		name = "none"
	}
	for _, p := range spProfiles {
		if p.Name == name {
			return p, nil
		}
	}
	return SPProfile{}, attest.Fail(attest.ErrConfig, "snp.sp.config", "unknown secure-processor profile %q (want one of %s)", name, strings.Join(SPProfileNames(), ", "))
}

// Period is the sustained interval between reports that p's throttle
// allows (1/Rate), or 0 without a throttle. A batching server on such a
// host should start reports no more often than that
// (attest.BatcherOptions.MinInterval), so that a batch gathers requests
// while the host would hold it anyway.
func (p SPProfile) Period() time.Duration {
	if p.Rate <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / p.Rate)
}

// IsZero reports whether p adds nothing: no latency and no throttle.
func (p SPProfile) IsZero() bool { return p.Latency == 0 && p.Rate == 0 }

// String returns the profile's name and figures, e.g.
// "serial-8ms (8ms per report, serialized)".
func (p SPProfile) String() string {
	name := p.Name
	if name == "" {
		name = "custom"
		if p.IsZero() {
			name = "none"
		}
	}
	if p.IsZero() {
		return name + " (no latency, no throttle)"
	}
	s := fmt.Sprintf("%s (%v per report, serialized", name, p.Latency)
	if p.Rate > 0 {
		s += fmt.Sprintf(", burst %d, %g/s", max(p.Burst, 1), p.Rate)
		if p.ThrottleTimeout > 0 {
			s += fmt.Sprintf(", fails after %v throttled", p.ThrottleTimeout)
		}
	}
	return s + ")"
}

func (p SPProfile) check() error {
	if p.Latency < 0 || p.Rate < 0 || p.Burst < 0 || p.ThrottleTimeout < 0 {
		return attest.Fail(attest.ErrConfig, "snp.sp.config", "secure-processor profile %s: negative latency, rate, burst or timeout", p)
	}
	if p.Rate == 0 && (p.Burst != 0 || p.ThrottleTimeout != 0) {
		return attest.Fail(attest.ErrConfig, "snp.sp.config", "secure-processor profile %s: a burst or throttle timeout without a rate", p)
	}
	return nil
}

// SPModelOptions configure an SPModel.
type SPModelOptions struct {
	// Profile is the timing model. The zero value adds no latency and no
	// throttle, but still serializes requests.
	Profile SPProfile
	// Now and Sleep replace the clock, for tests. Sleep must wait d
	// (or advance a fake clock by d) and return ctx's error if ctx is
	// done first. Nil means time.Now and a real timer.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// SPStats are an SPModel's counters.
type SPStats struct {
	// Reports is the number of reports served (the wrapped attester
	// succeeded).
	Reports int64
	// Failed counts requests that got an error: cancelled while queued or
	// throttled, throttle timeout, or an error of the wrapped attester.
	Failed int64
	// Throttled counts the reports that waited for the throttle;
	// ThrottleWait is the total time they waited.
	Throttled    int64
	ThrottleWait time.Duration
	// QueueWait is the total time requests waited for the device while
	// another request was in flight.
	QueueWait time.Duration
	// Queued is the number of requests waiting for the device now.
	Queued int
}

// SPModel is an attest.Attester that models the secure processor in
// front of another attester: requests are served one at a time in arrival
// order, each waits for the throttle, then takes the profile's latency.
// The waits are real (goroutines block) unless SPModelOptions replace the
// clock. A request whose context is done while it waits fails with check
// "snp.sp.queue" (waiting for the device) or "snp.sp.throttle" (waiting for
// the throttle); once the device has started on a report it completes.
//
// It is safe for concurrent use.
type SPModel struct {
	inner   attest.Attester
	profile SPProfile
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error

	// device holds one token while a request is in flight. Blocked
	// senders on a channel are woken in the order they blocked, and a
	// freed slot goes to the first of them: arrival order.
	device chan struct{}

	// Guarded by the device token: only the request in flight uses them.
	tokens float64   // throttle tokens available at last
	last   time.Time // when tokens was computed

	mu    sync.Mutex // guards stats
	stats SPStats
}

var _ attest.Attester = (*SPModel)(nil)

// NewSPModel returns an SPModel serving the reports of inner under
// opts.Profile. It fails with check "snp.sp.config" for a nil inner or an
// invalid profile.
func NewSPModel(inner attest.Attester, opts SPModelOptions) (*SPModel, error) {
	if inner == nil {
		return nil, attest.Fail(attest.ErrConfig, "snp.sp.config", "nil attester")
	}
	if err := opts.Profile.check(); err != nil {
		return nil, err
	}
	m := &SPModel{
		inner:   inner,
		profile: opts.Profile,
		now:     opts.Now,
		sleep:   opts.Sleep,
		device:  make(chan struct{}, 1),
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.sleep == nil {
		m.sleep = sleepCtx
	}
	if m.profile.Rate > 0 && m.profile.Burst == 0 {
		m.profile.Burst = 1
	}
	m.tokens = float64(m.profile.Burst)
	m.last = m.now()
	return m, nil
}

// Profile returns the model's profile.
func (m *SPModel) Profile() SPProfile { return m.profile }

// Stats returns a snapshot of the model's counters.
func (m *SPModel) Stats() SPStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Attest implements attest.Attester: it waits for the device and the
// throttle, then asks the wrapped attester for the report.
func (m *SPModel) Attest(ctx context.Context, reportData [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	ev, err := m.attest(ctx, reportData)
	m.mu.Lock()
	if err != nil {
		m.stats.Failed++
	} else {
		m.stats.Reports++
	}
	m.mu.Unlock()
	return ev, err
}

func (m *SPModel) attest(ctx context.Context, reportData [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	if err := m.acquire(ctx); err != nil {
		return nil, err
	}
	defer func() { <-m.device }()
	if err := m.throttle(ctx); err != nil {
		return nil, err
	}
	start := m.now()
	ev, err := m.inner.Attest(ctx, reportData)
	if err != nil {
		return nil, err
	}
	if rest := m.profile.Latency - m.now().Sub(start); rest > 0 {
		// The report is in flight: it completes whatever ctx says.
		_ = m.sleep(context.WithoutCancel(ctx), rest)
	}
	return ev, nil
}

// acquire waits for the device, in arrival order.
func (m *SPModel) acquire(ctx context.Context) error {
	select {
	case m.device <- struct{}{}:
		return nil
	default:
	}
	m.mu.Lock()
	m.stats.Queued++
	m.mu.Unlock()
	start := m.now()
	var err error
	select {
	case m.device <- struct{}{}:
	case <-ctx.Done():
		err = attest.Wrap(attest.ErrBusy, "snp.sp.queue", fmt.Errorf("waiting for the secure processor: %w", ctx.Err()))
	}
	waited := m.now().Sub(start)
	m.mu.Lock()
	m.stats.Queued--
	m.stats.QueueWait += waited
	m.mu.Unlock()
	return err
}

// throttle takes one token from the bucket, waiting for it if there is
// none. Only the request holding the device calls it.
func (m *SPModel) throttle(ctx context.Context) error {
	p := m.profile
	if p.Rate == 0 {
		return nil
	}
	now := m.now()
	m.tokens = min(float64(p.Burst), m.tokens+now.Sub(m.last).Seconds()*p.Rate)
	m.last = now
	if m.tokens >= 1 {
		m.tokens--
		return nil
	}
	wait := time.Duration((1 - m.tokens) / p.Rate * float64(time.Second))
	if p.ThrottleTimeout > 0 && wait > p.ThrottleTimeout {
		// The driver retries until it gives up; the host's bucket
		// refills meanwhile (accounted for at the next request).
		err := m.throttleWait(ctx, p.ThrottleTimeout)
		if err == nil {
			err = attest.Fail(attest.ErrBusy, "snp.sp.throttle", "the secure processor stayed throttled for %v (profile %s)", p.ThrottleTimeout, p)
		}
		return err
	}
	if err := m.throttleWait(ctx, wait); err != nil {
		return err
	}
	m.tokens, m.last = 0, m.now()
	return nil
}

func (m *SPModel) throttleWait(ctx context.Context, d time.Duration) error {
	start := m.now()
	err := m.sleep(ctx, d)
	waited := m.now().Sub(start)
	m.mu.Lock()
	m.stats.Throttled++
	m.stats.ThrottleWait += waited
	m.mu.Unlock()
	if err != nil {
		return attest.Wrap(attest.ErrBusy, "snp.sp.throttle", fmt.Errorf("waiting for the throttled secure processor: %w", err))
	}
	return nil
}

// sleepCtx waits d, or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
