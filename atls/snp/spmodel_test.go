package snp

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
)

// fakeClock is a clock whose Sleep advances time at once.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.advance(d)
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.mu.Unlock()
	return nil
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// gateAttester records the requests it gets and, when gate is set, holds
// each until a value arrives on gate. It tracks how many are inside at
// once.
type gateAttester struct {
	gate    chan struct{}
	entered chan byte // reportData[0] of each request, as it enters

	inside, maxInside atomic.Int32
	calls             atomic.Int32
}

func newGateAttester(gated bool) *gateAttester {
	g := &gateAttester{entered: make(chan byte, 64)}
	if gated {
		g.gate = make(chan struct{})
	}
	return g
}

func (g *gateAttester) Attest(ctx context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	g.calls.Add(1)
	n := g.inside.Add(1)
	for {
		m := g.maxInside.Load()
		if n <= m || g.maxInside.CompareAndSwap(m, n) {
			break
		}
	}
	g.entered <- rd[0]
	if g.gate != nil {
		<-g.gate
	}
	g.inside.Add(-1)
	return &attest.Evidence{}, nil
}

func newTestSPModel(t *testing.T, inner attest.Attester, p SPProfile, c *fakeClock) *SPModel {
	t.Helper()
	o := SPModelOptions{Profile: p}
	if c != nil {
		o.Now, o.Sleep = c.Now, c.Sleep
	}
	m, err := NewSPModel(inner, o)
	require.NoError(t, err)
	return m
}

// waitFor polls cond until it holds; it fails the test only after a
// minute, so a loaded machine cannot make it fail.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestParseSPProfile(t *testing.T) {
	require.Equal(t, []string{"none", "serial-8ms", "gcp"}, SPProfileNames())
	for _, name := range SPProfileNames() {
		p, err := ParseSPProfile(name)
		require.NoError(t, err)
		require.Equal(t, name, p.Name)
	}
	p, err := ParseSPProfile("")
	require.NoError(t, err)
	require.True(t, p.IsZero())
	require.Equal(t, "none (no latency, no throttle)", p.String())

	p, err = ParseSPProfile("gcp")
	require.NoError(t, err)
	require.Equal(t, SPProfile{Name: "gcp", Latency: 8 * time.Millisecond, Rate: 1, Burst: 10, ThrottleTimeout: time.Minute}, p)
	require.Equal(t, "gcp (8ms per report, serialized, burst 10, 1/s, fails after 1m0s throttled)", p.String())

	p, err = ParseSPProfile("serial-8ms")
	require.NoError(t, err)
	require.Equal(t, SPProfile{Name: "serial-8ms", Latency: 8 * time.Millisecond}, p)

	_, err = ParseSPProfile("aws")
	require.ErrorIs(t, err, attest.ErrConfig)
	require.Equal(t, "snp.sp.config", attest.FailedCheck(err))
	require.ErrorContains(t, err, "none, serial-8ms, gcp")
}

func TestNewSPModelRejects(t *testing.T) {
	for name, c := range map[string]struct {
		inner attest.Attester
		p     SPProfile
	}{
		"nil attester":      {nil, SPProfile{}},
		"negative latency":  {newGateAttester(false), SPProfile{Latency: -1}},
		"negative rate":     {newGateAttester(false), SPProfile{Rate: -1}},
		"burst, no rate":    {newGateAttester(false), SPProfile{Burst: 3}},
		"timeout, no rate":  {newGateAttester(false), SPProfile{ThrottleTimeout: time.Second}},
		"negative burst":    {newGateAttester(false), SPProfile{Rate: 1, Burst: -1}},
		"negative throttle": {newGateAttester(false), SPProfile{Rate: 1, ThrottleTimeout: -1}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewSPModel(c.inner, SPModelOptions{Profile: c.p})
			require.ErrorIs(t, err, attest.ErrConfig)
			require.Equal(t, "snp.sp.config", attest.FailedCheck(err))
		})
	}
}

// TestSPModelSerializes holds the device busy and queues requests one
// after the other: the wrapped attester must see one request at a time,
// in arrival order.
func TestSPModelSerializes(t *testing.T) {
	inner := newGateAttester(true)
	m := newTestSPModel(t, inner, SPProfile{}, nil)
	const n = 4
	errs := make(chan error, n)
	start := func(i byte) {
		go func() {
			_, err := m.Attest(context.Background(), [64]byte{i})
			errs <- err
		}()
	}
	start(0)
	require.Equal(t, byte(0), <-inner.entered)
	for i := byte(1); i < n; i++ {
		start(i)
		waitFor(t, "a queued request", func() bool { return m.Stats().Queued == int(i) })
	}
	require.Equal(t, int32(1), inner.calls.Load(), "a queued request reached the device")
	for i := byte(1); i < n; i++ {
		inner.gate <- struct{}{}
		require.Equal(t, i, <-inner.entered, "requests must be served in arrival order")
	}
	inner.gate <- struct{}{}
	for range n {
		require.NoError(t, <-errs)
	}
	require.Equal(t, int32(1), inner.maxInside.Load())
	st := m.Stats()
	require.Equal(t, int64(n), st.Reports)
	require.Zero(t, st.Queued)
	require.Zero(t, st.Failed)
}

// TestSPModelLatency counts, on a fake clock, the latency each report
// adds, and checks with the real clock that concurrent reports do not
// overlap (a lower bound only).
func TestSPModelLatency(t *testing.T) {
	c := newFakeClock()
	m := newTestSPModel(t, newGateAttester(false), SPProfile{Latency: 8 * time.Millisecond}, c)
	t0 := c.Now()
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			_, err := m.Attest(context.Background(), [64]byte{byte(i)})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	require.Equal(t, 40*time.Millisecond, c.Now().Sub(t0))
	require.Equal(t, []time.Duration{8 * time.Millisecond, 8 * time.Millisecond, 8 * time.Millisecond, 8 * time.Millisecond, 8 * time.Millisecond}, c.slept())
	require.Equal(t, int64(5), m.Stats().Reports)

	// Real time: two concurrent reports take at least two latencies.
	const lat = 30 * time.Millisecond
	rm := newTestSPModel(t, newGateAttester(false), SPProfile{Latency: lat}, nil)
	begin := time.Now()
	for range 2 {
		wg.Go(func() {
			_, err := rm.Attest(context.Background(), [64]byte{})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	require.GreaterOrEqual(t, time.Since(begin), 2*lat)
}

// TestSPModelTokenBucket checks the throttle on a fake clock: a burst
// passes at once, then reports wait for the sustained rate, and tokens
// refill with time.
func TestSPModelTokenBucket(t *testing.T) {
	c := newFakeClock()
	m := newTestSPModel(t, newGateAttester(false), SPProfile{Rate: 2, Burst: 3}, c)
	attestN := func(n int) {
		for range n {
			_, err := m.Attest(context.Background(), [64]byte{})
			require.NoError(t, err)
		}
	}
	attestN(3)
	require.Empty(t, c.slept(), "the burst must pass without waiting")
	attestN(1)
	require.Equal(t, []time.Duration{500 * time.Millisecond}, c.slept())
	attestN(1)
	require.Equal(t, []time.Duration{500 * time.Millisecond, 500 * time.Millisecond}, c.slept())

	// A second idle refills two tokens: two reports pass, the third waits.
	c.advance(time.Second)
	attestN(2)
	require.Len(t, c.slept(), 2)
	attestN(1)
	require.Equal(t, []time.Duration{500 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond}, c.slept())

	// A long idle refills no more than the burst.
	c.advance(time.Hour)
	attestN(3)
	require.Len(t, c.slept(), 3)
	attestN(1)
	require.Len(t, c.slept(), 4)

	st := m.Stats()
	require.Equal(t, int64(12), st.Reports)
	require.Equal(t, int64(4), st.Throttled)
	require.Equal(t, 2*time.Second, st.ThrottleWait)
}

// TestSPModelThrottleTimeout: a report that would wait longer than the
// timeout fails after waiting the timeout, naming the check.
func TestSPModelThrottleTimeout(t *testing.T) {
	c := newFakeClock()
	inner := newGateAttester(false)
	m := newTestSPModel(t, inner, SPProfile{Rate: 0.1, Burst: 1, ThrottleTimeout: 2 * time.Second}, c)
	_, err := m.Attest(context.Background(), [64]byte{})
	require.NoError(t, err)
	t0 := c.Now()
	_, err = m.Attest(context.Background(), [64]byte{})
	require.ErrorIs(t, err, attest.ErrBusy)
	require.Equal(t, "snp.sp.throttle", attest.FailedCheck(err))
	require.Equal(t, 2*time.Second, c.Now().Sub(t0))
	require.Equal(t, int32(1), inner.calls.Load())
	// Ten seconds after the first report the bucket has a token again.
	c.advance(8 * time.Second)
	_, err = m.Attest(context.Background(), [64]byte{})
	require.NoError(t, err)
	st := m.Stats()
	require.Equal(t, int64(2), st.Reports)
	require.Equal(t, int64(1), st.Failed)
}

// TestSPModelCancelWhileQueued: a request whose context ends while it
// waits for the device fails with "snp.sp.queue" and never reaches it.
func TestSPModelCancelWhileQueued(t *testing.T) {
	inner := newGateAttester(true)
	m := newTestSPModel(t, inner, SPProfile{Latency: time.Millisecond}, nil)
	first := make(chan error, 1)
	go func() {
		_, err := m.Attest(context.Background(), [64]byte{1})
		first <- err
	}()
	require.Equal(t, byte(1), <-inner.entered)

	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() {
		_, err := m.Attest(ctx, [64]byte{2})
		second <- err
	}()
	waitFor(t, "the second request to queue", func() bool { return m.Stats().Queued == 1 })
	cancel()
	err := <-second
	require.ErrorIs(t, err, attest.ErrBusy)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, "snp.sp.queue", attest.FailedCheck(err))

	inner.gate <- struct{}{}
	require.NoError(t, <-first)
	require.Equal(t, int32(1), inner.calls.Load(), "the cancelled request reached the device")
	st := m.Stats()
	require.Equal(t, int64(1), st.Reports)
	require.Equal(t, int64(1), st.Failed)
	require.Zero(t, st.Queued)

	// The device is free again.
	go func() { inner.gate <- struct{}{} }()
	_, err = m.Attest(context.Background(), [64]byte{3})
	require.NoError(t, err)
}

// TestSPModelCancelWhileThrottled: a request whose context ends while it
// waits for the throttle fails with "snp.sp.throttle" and frees the
// device.
func TestSPModelCancelWhileThrottled(t *testing.T) {
	inner := newGateAttester(false)
	sleeping := make(chan struct{}, 1)
	m, err := NewSPModel(inner, SPModelOptions{
		Profile: SPProfile{Rate: 0.001, Burst: 1},
		Sleep: func(ctx context.Context, d time.Duration) error {
			sleeping <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		},
	})
	require.NoError(t, err)
	_, err = m.Attest(context.Background(), [64]byte{})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := m.Attest(ctx, [64]byte{})
		done <- err
	}()
	<-sleeping
	cancel()
	err = <-done
	require.ErrorIs(t, err, attest.ErrBusy)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, "snp.sp.throttle", attest.FailedCheck(err))
	require.Equal(t, int32(1), inner.calls.Load())
	require.Equal(t, int64(1), m.Stats().Throttled)

	// The device was released: the next request reaches the throttle.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() {
		_, err := m.Attest(ctx2, [64]byte{})
		done <- err
	}()
	<-sleeping
	cancel2()
	require.Error(t, <-done)
}

// TestSimAttesterSP plugs the model into the simulator through
// SimOptions.SP.
func TestSimAttesterSP(t *testing.T) {
	chain := testSimChain(t, "Milan")
	_, err := NewSimAttester(chain, SimOptions{SP: SPProfile{Latency: -time.Second}})
	require.ErrorIs(t, err, attest.ErrConfig)

	plain, err := NewSimAttester(chain, SimOptions{})
	require.NoError(t, err)
	_, err = plain.Attest(context.Background(), [64]byte{})
	require.NoError(t, err)
	require.Equal(t, SPStats{}, plain.SPStats())

	p, err := ParseSPProfile("serial-8ms")
	require.NoError(t, err)
	a, err := NewSimAttester(chain, SimOptions{SP: p})
	require.NoError(t, err)
	require.Equal(t, p, a.Options().SP)
	begin := time.Now()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			rd := [64]byte{byte(i)}
			ev, err := a.Attest(context.Background(), rd)
			if err != nil {
				t.Error(err)
				return
			}
			if ev == nil {
				t.Error(errors.New("nil evidence"))
			}
		})
	}
	wg.Wait()
	require.GreaterOrEqual(t, time.Since(begin), 3*p.Latency)
	st := a.SPStats()
	require.Equal(t, int64(3), st.Reports)
	require.Zero(t, st.Throttled)
}
