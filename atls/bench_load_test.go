package atls_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/internal/atlstest"
)

// loadClients is the number of concurrent clients of BenchmarkLoad.
const loadClients = 64

// loadFullEnv, set to 1, makes the gcp scenarios of BenchmarkLoad run at
// least loadFullDuration of load (the figures of BENCHMARKS.md) instead
// of b.N handshakes only.
const (
	loadFullEnv      = "ATLS_BENCH_FULL"
	loadFullDuration = 60 * time.Second
)

// loadVariant is one server configuration of BenchmarkLoad.
type loadVariant struct {
	name string
	opts atls.ServerOptions
	// batched variants are skipped when the server does not batch.
	batched bool
}

var loadVariants = []loadVariant{
	{name: "static", opts: atls.ServerOptions{Freshness: atls.FreshnessStatic}},
	{name: "nonce-unbatched", opts: atls.ServerOptions{DisableBatching: true, StaticFallback: true}},
	{name: "nonce-batched", opts: atls.ServerOptions{StaticFallback: true}, batched: true},
}

// BenchmarkLoad runs loadClients clients at once against one server
// whose attester goes through a model of the secure processor (profiles
// serial-8ms and gcp, see snp.ParseSPProfile). Each iteration is one new
// TCP connection (handshake, attestation, verification) and one small
// HTTP request. It reports:
//
//   - handshakes/s: successful connections per second of wall time;
//   - p50-ms, p99-ms: latency of a successful connection, from dial to the
//     end of the response body;
//   - failed: connections that failed (handshake refused, timeout);
//   - fallbacks: nonce-mode connections that got the static certificate
//     (the server's attestation wait expired);
//   - reports: reports the secure processor made.
//
// ns/op is the wall time per connection, cpu-ns/op the CPU time of the
// whole process (clients and server) per connection. Clients accept static evidence so
// that a fallback counts as a fallback, not a failure; every client has its
// own atls.Client (and verification cache) and shares one verifier.
//
// With ATLS_BENCH_FULL=1 the gcp scenarios run for at least a minute,
// whatever b.N (run them with -benchtime=1x).
func BenchmarkLoad(b *testing.B) {
	f := atlstest.Get(b)
	for _, profile := range []string{"serial-8ms", "gcp"} {
		sp, err := snp.ParseSPProfile(profile)
		if err != nil {
			b.Fatal(err)
		}
		var minDuration time.Duration
		if profile == "gcp" && os.Getenv(loadFullEnv) == "1" {
			minDuration = loadFullDuration
		}
		for _, v := range loadVariants {
			b.Run("sp="+profile+"/server="+v.name, func(b *testing.B) {
				runLoad(b, f, sp, v, minDuration)
			})
		}
	}
}

// loadResult is what the clients of one run saw.
type loadResult struct {
	ok, failed, fallbacks int
	latencies             []time.Duration
	firstErr              error
}

func runLoad(b *testing.B, f *atlstest.Fixture, sp snp.SPProfile, v loadVariant, minDuration time.Duration) {
	model, err := snp.NewSPModel(f.ServerAttester, snp.SPModelOptions{Profile: sp})
	if err != nil {
		b.Fatal(err)
	}
	so := v.opts
	so.Attester = model
	// As an operator would on such a host: report no more often than the
	// throttle's sustained rate, gathering meanwhile.
	so.Batch.MinInterval = sp.Period()
	srv := atlstest.NewServer(b, so)
	if v.batched != (srv.Batcher() != nil) {
		b.Skipf("this server does not batch as variant %s needs", v.name)
	}
	url := serveLoad(b, srv)
	verifier := f.Verifier(b, f.ServerMeasurement)
	clients := make([]*http.Client, loadClients)
	for i := range clients {
		cli := atlstest.NewClient(b, atls.ClientOptions{Verifier: verifier, AcceptStatic: true})
		tr := cli.Transport()
		tr.DisableKeepAlives = true
		b.Cleanup(tr.CloseIdleConnections)
		clients[i] = &http.Client{Transport: &claimsTransport{cli: cli, tr: tr}, Timeout: 60 * time.Second}
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	reportsBefore := model.Stats().Reports
	b.ResetTimer()
	cpu := cpuTime()
	start := time.Now()
	res := loadRun(clients, url, so.Freshness == atls.FreshnessNonce, b.N, start.Add(minDuration))
	elapsed := time.Since(start)
	cpuUsed := cpuTime() - cpu
	b.StopTimer()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	n := res.ok + res.failed
	if res.ok == 0 {
		b.Fatalf("no connection succeeded (%d failed): %v", res.failed, res.firstErr)
	}
	if res.firstErr != nil {
		b.Logf("%d of %d connections failed, the first with: %v", res.failed, n, res.firstErr)
	}
	slices.Sort(res.latencies)
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(n), "ns/op")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n), "allocs/op")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(n), "B/op")
	if cpu >= 0 {
		b.ReportMetric(float64(cpuUsed)/float64(n), "cpu-ns/op")
	}
	b.ReportMetric(float64(res.ok)/elapsed.Seconds(), "handshakes/s")
	b.ReportMetric(msec(percentile(res.latencies, 0.50)), "p50-ms")
	b.ReportMetric(msec(percentile(res.latencies, 0.99)), "p99-ms")
	b.ReportMetric(float64(res.failed), "failed")
	b.ReportMetric(float64(res.fallbacks), "fallbacks")
	b.ReportMetric(float64(model.Stats().Reports-reportsBefore), "reports")
	b.ReportMetric(elapsed.Seconds(), "load-s")
}

// loadRun makes connections from every client at once until n are done
// and the deadline has passed. With nonce, static evidence counts as a
// fallback.
func loadRun(clients []*http.Client, url string, nonce bool, n int, deadline time.Time) loadResult {
	var (
		next int64
		mu   sync.Mutex
		res  loadResult
		wg   sync.WaitGroup
	)
	for _, hc := range clients {
		wg.Go(func() {
			var mine loadResult
			for atomic.AddInt64(&next, 1) <= int64(n) || time.Now().Before(deadline) {
				begin := time.Now()
				mode, err := loadOne(hc, url)
				if err != nil {
					mine.failed++
					if mine.firstErr == nil {
						mine.firstErr = err
					}
					continue
				}
				mine.ok++
				mine.latencies = append(mine.latencies, time.Since(begin))
				if nonce && mode == attest.ModeStatic {
					mine.fallbacks++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			res.ok += mine.ok
			res.failed += mine.failed
			res.fallbacks += mine.fallbacks
			res.latencies = append(res.latencies, mine.latencies...)
			if res.firstErr == nil {
				res.firstErr = mine.firstErr
			}
		})
	}
	wg.Wait()
	return res
}

// loadOne makes one connection and request and returns the freshness
// mode of the server's evidence.
func loadOne(hc *http.Client, url string) (attest.Mode, error) {
	mode := new(attest.Mode)
	ctx := context.WithValue(context.Background(), modeKey{}, mode)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, errors.New(resp.Status)
	}
	return *mode, nil
}

// claimsTransport requires verified claims for every response and
// stores their freshness mode in the *attest.Mode of the request's
// context (key modeKey).
type claimsTransport struct {
	cli *atls.Client
	tr  http.RoundTripper
}

type modeKey struct{}

func (t *claimsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.tr.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	claims, ok := t.cli.ResponseClaims(resp)
	if !ok {
		resp.Body.Close()
		return nil, errors.New("the response carries no verified claims")
	}
	if mode, ok := req.Context().Value(modeKey{}).(*attest.Mode); ok {
		*mode = claims.Mode
	}
	return resp, nil
}

// serveLoad runs an HTTPS server for srv on loopback that answers "ok".
func serveLoad(b *testing.B, srv *atls.Server) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{
		TLSConfig:         srv.TLSConfig(),
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }),
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	b.Cleanup(func() { _ = hs.Close() })
	return "https://" + ln.Addr().String() + "/"
}

// percentile returns the p-quantile of sorted (nearest rank), or 0.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func msec(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
