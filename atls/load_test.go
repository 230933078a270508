package atls_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/internal/atlstest"
)

var (
	stressRun     = flag.Bool("load", false, "run TestLoad: the load and fault scenarios of issue 13 at reduced size")
	stressN       = flag.Int("load.n", 200, "TestLoad: handshakes per scenario")
	stressClients = flag.Int("load.clients", 16, "TestLoad: concurrent clients")
	stressSPDelay = flag.Duration("load.sp", 20*time.Millisecond, "TestLoad: time per report of the modelled serial secure processor")
	stressOnly    = flag.String("load.only", "", "TestLoad: run only the scenarios whose name contains this")
)

// stressAttester models a secure processor: one report at a time, each taking
// delay. Every tenth report fails (fault "fail") or is forged (fault
// "forge": a report byte flipped after signing, which no verifier may
// accept); forged reports are remembered.
type stressAttester struct {
	inner attest.Attester
	delay time.Duration
	fault string

	mu     sync.Mutex
	calls  int
	forged map[[32]byte]bool
}

var errStressInjected = errors.New("injected secure-processor failure")

func (s *stressAttester) Attest(ctx context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s.fault == "fail" && s.calls%10 == 0 {
		return nil, errStressInjected
	}
	ev, err := s.inner.Attest(ctx, rd)
	if err != nil || s.fault != "forge" || s.calls%10 != 0 {
		return ev, err
	}
	out := &attest.Evidence{Type: ev.Type, Records: make(map[string]attest.Record, len(ev.Records))}
	for k, v := range ev.Records {
		out.Records[k] = v
	}
	r := out.Records[snp.ReportLabel]
	r.Value = slices.Clone(r.Value)
	r.Value[0x90] ^= 1 // in the measurement: the signature no longer covers it
	out.Records[snp.ReportLabel] = r
	if s.forged == nil {
		s.forged = map[[32]byte]bool{}
	}
	s.forged[sha256.Sum256(r.Value)] = true
	return out, nil
}

func (s *stressAttester) isForged(leaf *x509.Certificate) bool {
	ev, err := attest.FromCertificate(leaf)
	if err != nil {
		return false
	}
	r, ok := ev.Records[snp.ReportLabel]
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forged[sha256.Sum256(r.Value)]
}

// stressFigures are the results of one scenario.
type stressFigures struct {
	ok, failed, fallbacks, unattested int
	p50, p99                          time.Duration
	peakGoroutines                    int
	peakHeapMiB                       float64
	reports                           int
	errors                            []string // the first few failures
}

// TestLoad runs issue 13's load and fault scenarios at a reduced size:
// TCP and QUIC, one-way and mutual, batched and unbatched servers, a
// serial secure processor, and attesters failing or forging one report in
// ten. Clients accept static evidence, so a fallback counts as served. It
// checks what must hold under any load (no forged report accepted, no
// failure without a fault, goroutines back to the baseline) and logs the
// figures. It runs only with -load:
//
//	go test -run TestLoad -v ./atls/ -load [-load.n 2000 -load.clients 64 -load.sp 20ms]
func TestLoad(t *testing.T) {
	if !*stressRun {
		t.Skip("load test: run with -load (see the doc comment)")
	}
	f := atlstest.Get(t)
	baseGoroutines := runtime.NumGoroutine()
	for _, transport := range []string{"tcp", "quic"} {
		for _, mutual := range []bool{false, true} {
			for _, batched := range []bool{true, false} {
				for _, fault := range []string{"none", "fail", "forge"} {
					name := fmt.Sprintf("%s/mutual=%v/batched=%v/fault=%s", transport, mutual, batched, fault)
					if *stressOnly != "" && !strings.Contains(name, *stressOnly) {
						continue
					}
					t.Run(name, func(t *testing.T) {
						fig := runStressScenario(t, f, transport, mutual, batched, fault)
						t.Logf("%-40s ok %5d failed %4d fallbacks %4d unattested %d reports %4d p50 %6.1fms p99 %7.1fms goroutines %5d heap %6.1fMiB",
							name, fig.ok, fig.failed, fig.fallbacks, fig.unattested, fig.reports,
							stressMS(fig.p50), stressMS(fig.p99), fig.peakGoroutines, fig.peakHeapMiB)
						for _, e := range fig.errors {
							t.Logf("  failure: %s", e)
						}
						require.Zero(t, fig.unattested, "a forged report was accepted")
						if fault == "none" {
							require.Zero(t, fig.failed, "failures without a fault")
						}
						require.Equal(t, *stressN, fig.ok+fig.failed)
					})
				}
			}
		}
	}
	// Every connection, listener and renewal is gone.
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > baseGoroutines+5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	require.LessOrEqual(t, runtime.NumGoroutine(), baseGoroutines+5, "goroutines left behind")
}

func stressMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func runStressScenario(t *testing.T, f *atlstest.Fixture, transport string, mutual, batched bool, fault string) stressFigures {
	sp := &stressAttester{inner: f.ServerAttester, delay: *stressSPDelay, fault: fault}
	opts := atls.ServerOptions{
		Attester: sp, StaticFallback: true, DisableBatching: !batched,
		// One source (loopback) for every client.
		MaxAttestationsPerSource: -1,
	}
	if mutual {
		opts.ClientVerifier = f.Verifier(t, f.ClientMeasurement)
	}
	var srv *atls.Server
	var err error
	for range 10 { // the first static issuance may hit an injected fault
		if srv, err = atls.NewServer(opts); err == nil {
			break
		}
	}
	require.NoError(t, err)
	defer srv.Close()
	copts := atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true}
	if mutual {
		copts.Attester = f.ClientAttester
	}
	cli := atlstest.NewClient(t, copts)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })

	var url string
	var newClient func() (*http.Client, func())
	switch transport {
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		hs := &http.Server{Handler: handler, TLSConfig: srv.TLSConfig(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: stressQuietLog()}
		go func() { _ = hs.ServeTLS(ln, "", "") }()
		defer hs.Close()
		url = "https://" + ln.Addr().String() + "/"
		newClient = func() (*http.Client, func()) {
			tr := cli.Transport()
			tr.DisableKeepAlives = true
			return &http.Client{Transport: tr, Timeout: 30 * time.Second}, tr.CloseIdleConnections
		}
	case "quic":
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		defer pc.Close()
		h3 := atlsquic.NewHTTP3Server(srv, nil, handler)
		served := make(chan struct{})
		go func() { defer close(served); _ = h3.Serve(pc) }()
		defer func() { _ = h3.Close(); <-served }()
		url = "https://" + pc.LocalAddr().String() + "/"
		newClient = func() (*http.Client, func()) {
			tr := atlsquic.HTTP3Transport(cli, nil)
			return &http.Client{Transport: tr, Timeout: 30 * time.Second}, func() { _ = tr.Close() }
		}
	}

	var (
		next         atomic.Int64
		mu           sync.Mutex
		lat          []time.Duration
		fig          stressFigures
		peakG        atomic.Int64
		peakHeap     atomic.Uint64
		stopSampling = make(chan struct{})
		sampled      = make(chan struct{})
	)
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			if g := int64(runtime.NumGoroutine()); g > peakG.Load() {
				peakG.Store(g)
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peakHeap.Load() {
				peakHeap.Store(ms.HeapInuse)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	for range *stressClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*stressN) {
				hc, closeFn := newClient()
				start := time.Now()
				resp, err := hc.Get(url)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				d := time.Since(start)
				mu.Lock()
				switch {
				case err != nil || string(body) != "ok":
					fig.failed++
					if err != nil && len(fig.errors) < 5 {
						fig.errors = append(fig.errors, err.Error())
					}
				default:
					fig.ok++
					lat = append(lat, d)
					leaf := resp.TLS.PeerCertificates[0]
					if sp.isForged(leaf) {
						fig.unattested++
					}
					if ev, err := attest.FromCertificate(leaf); err == nil {
						if p, err := ev.Binding(); err == nil && p.Mode == attest.ModeStatic {
							fig.fallbacks++
						}
					}
				}
				mu.Unlock()
				closeFn()
			}
		}()
	}
	wg.Wait()
	close(stopSampling)
	<-sampled
	slices.Sort(lat)
	if len(lat) > 0 {
		fig.p50 = lat[len(lat)/2]
		fig.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	fig.peakGoroutines = int(peakG.Load())
	fig.peakHeapMiB = float64(peakHeap.Load()) / (1 << 20)
	sp.mu.Lock()
	fig.reports = sp.calls
	sp.mu.Unlock()
	return fig
}

// stressQuietLog drops net/http's per-connection error lines (expected under
// injected faults).
func stressQuietLog() *log.Logger { return log.New(io.Discard, "", 0) }
