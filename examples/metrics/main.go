// Command metrics wires atls.Trace to Prometheus: counters and latency
// histograms of attestations and verifications, and cache hits, served on
// /metrics, for an attested HTTPS server and its client on loopback with
// the SEV-SNP simulator:
//
//	go run ./examples/metrics
//
// It makes a few requests (and one that the client refuses, its policy
// pinning another image), then prints the atls lines of /metrics. Only
// this example imports Prometheus; the library reports through the
// callbacks of atls.Trace, which OpenTelemetry or expvar can use alike.
package main

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/snp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		os.Exit(1)
	}
}

// Metrics are the Prometheus collectors fed by an atls.Trace.
type Metrics struct {
	attestations  *prometheus.CounterVec
	attestSeconds *prometheus.HistogramVec
	verifications *prometheus.CounterVec
	verifySeconds *prometheus.HistogramVec
	cacheLookups  *prometheus.CounterVec
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "atls_attestations_total", Help: "Attestation reports requested, by role, mode and result.",
		}, []string{"role", "mode", "result"}),
		attestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "atls_attestation_seconds", Help: "Time to get an attestation report.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"role", "mode"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "atls_verifications_total", Help: "Peers appraised, by peer role, result and refusing check.",
		}, []string{"peer_role", "result", "check"}),
		verifySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "atls_verification_seconds", Help: "Time to appraise a peer's evidence.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"peer_role"}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "atls_cache_lookups_total", Help: "Verification cache lookups, by cache and result.",
		}, []string{"level", "result"}),
	}
	reg.MustRegister(m.attestations, m.attestSeconds, m.verifications, m.verifySeconds, m.cacheLookups)
	return m
}

// Trace returns the callbacks that feed m. They only update collectors,
// which never block, as atls.Trace requires.
func (m *Metrics) Trace() *atls.Trace {
	return &atls.Trace{
		AttestDone: func(i atls.AttestDoneInfo) {
			result := "ok"
			if i.Err != nil {
				result = "error"
			}
			m.attestations.WithLabelValues(i.Role.String(), i.Mode.String(), result).Inc()
			m.attestSeconds.WithLabelValues(i.Role.String(), i.Mode.String()).Observe(i.Latency.Seconds())
		},
		VerifyDone: func(i atls.VerifyDoneInfo) {
			result := "accepted"
			if i.Err != nil {
				result = "refused"
			}
			// Check names are a fixed set (docs/CHECKS.md, plus the
			// application's own Authorize checks): a bounded label.
			m.verifications.WithLabelValues(i.Role.String(), result, i.Check).Inc()
			m.verifySeconds.WithLabelValues(i.Role.String()).Observe(i.Latency.Seconds())
		},
		CacheLookup: func(i atls.CacheLookupInfo) {
			result := "miss"
			if i.Hit {
				result = "hit"
			}
			m.cacheLookups.WithLabelValues(string(i.Level), result).Inc()
		},
	}
}

// example is an attested server and two clients, one that trusts it and
// one whose policy pins another image, all reporting to one registry
// served on MetricsURL.
type example struct {
	URL, MetricsURL string
	good, wrong     *atls.Client
	close           func()
}

func newExample() (*example, error) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)

	chain, err := snp.NewSimChain("Milan")
	if err != nil {
		return nil, err
	}
	image := sha512.Sum384([]byte("example metrics service v1"))
	vm, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: image})
	if err != nil {
		return nil, err
	}
	srv, err := atls.NewServer(atls.ServerOptions{Attester: vm, Trace: m.Trace()})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: mux, TLSConfig: srv.TLSConfig(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.ServeTLS(ln, "", "") }()

	// /metrics on its own (plain, loopback) listener.
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		hs.Close()
		return nil, err
	}
	ms := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = ms.Serve(mln) }()

	client := func(m48 [48]byte) (*atls.Client, error) {
		policy, err := snp.ParsePolicy(fmt.Appendf(nil, `{"measurements": ["%x"]}`, m48))
		if err != nil {
			return nil, err
		}
		v, err := snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: policy})
		if err != nil {
			return nil, err
		}
		return atls.NewClient(atls.ClientOptions{Verifier: v, Trace: m.Trace()})
	}
	ex := &example{
		URL:        "https://" + ln.Addr().String() + "/hello",
		MetricsURL: "http://" + mln.Addr().String() + "/metrics",
		close:      func() { hs.Close(); ms.Close(); srv.Close() },
	}
	if ex.good, err = client(image); err == nil {
		ex.wrong, err = client(sha512.Sum384([]byte("another image")))
	}
	if err != nil {
		ex.close()
		return nil, err
	}
	return ex, nil
}

// get fetches the example's URL with cli, on a new connection.
func (ex *example) get(ctx context.Context, cli *atls.Client) error {
	hc := &http.Client{Transport: cli.Transport(), Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ex.URL, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// scrape returns the atls lines of /metrics.
func (ex *example) scrape(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ex.MetricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "atls_") && !strings.Contains(l, "_bucket{") {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

func run(ctx context.Context, w io.Writer) error {
	fmt.Fprintln(w, "Creating a simulated AMD chain and VM (SIMULATED: not real hardware)...")
	ex, err := newExample()
	if err != nil {
		return err
	}
	defer ex.close()
	for range 3 {
		if err := ex.get(ctx, ex.good); err != nil {
			return err
		}
	}
	var ce *atls.CheckError
	if err := ex.get(ctx, ex.wrong); !errors.As(err, &ce) {
		return fmt.Errorf("the client pinning another image was not refused with a check: %v", err)
	}
	fmt.Fprintf(w, "3 requests accepted, 1 refused (check %s); %s:\n", ce.Check, ex.MetricsURL)
	lines, err := ex.scrape(ctx)
	if err != nil {
		return err
	}
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	return nil
}
