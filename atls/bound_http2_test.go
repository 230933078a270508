package atls_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
	"github.com/stretchr/testify/require"
)

// protoClaims is what the handlers of these tests answer.
type protoClaims struct {
	Proto  int
	TLS    bool
	Claims *attest.Claims
}

// boundHTTPServer serves handlers that report the protocol and the
// client's claims, on a listener from NewBoundHTTPListener.
func boundHTTPServer(t *testing.T, lopts atls.BoundListenerOptions) string {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln, err := atls.NewBoundHTTPListener(inner, lopts)
	require.NoError(t, err)
	srv := atls.NewBoundHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, ok := atls.BoundRequestClaims(r)
		if !ok {
			http.Error(w, "no claims", http.StatusForbidden)
			return
		}
		_ = json.NewEncoder(w).Encode(protoClaims{Proto: r.ProtoMajor, TLS: r.TLS != nil, Claims: claims})
	}))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

func getProtoClaims(t *testing.T, hc *http.Client, url string) protoClaims {
	t.Helper()
	resp, err := hc.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var pc protoClaims
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&pc))
	require.Equal(t, resp.ProtoMajor, pc.Proto, "client and server agree on the protocol")
	require.NotNil(t, resp.TLS, "the transport sees the *tls.Conn")
	return pc
}

// countDials counts the connections tr dials.
func countDials(tr *http.Transport) *atomic.Int32 {
	var n atomic.Int32
	dial := tr.DialTLSContext
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.Add(1)
		return dial(ctx, network, addr)
	}
	return &n
}

func TestBoundHTTP2ClaimsAndReattestation(t *testing.T) {
	f := atlstest.Get(t)
	att := &tamperingAttester{a: f.ServerAttester}
	base := boundHTTPServer(t, atls.BoundListenerOptions{Bound: atls.BoundOptions{
		Attester: att, Verifier: f.Verifier(t, f.ClientMeasurement), MinReattestInterval: -1}})
	d := boundDialer(t, atls.BoundDialerOptions{Bound: atls.BoundOptions{
		Attester: f.ClientAttester, Verifier: f.Verifier(t, f.ServerMeasurement)}})
	tr := d.Transport()
	dials := countDials(tr)
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	// Several requests, some concurrent, share one HTTP/2 connection; each
	// handler sees the client's verified claims.
	for range 3 {
		pc := getProtoClaims(t, hc, base+"/")
		require.Equal(t, 2, pc.Proto)
		require.True(t, pc.TLS)
		require.NotNil(t, pc.Claims)
		require.Equal(t, f.ClientMeasurement[:], []byte(pc.Claims.SNP.Measurement))
		require.Equal(t, attest.ModeBound, pc.Claims.Mode)
	}
	done := make(chan protoClaims, 4)
	for range 4 {
		go func() {
			resp, err := hc.Get(base + "/")
			if err != nil {
				done <- protoClaims{}
				return
			}
			defer resp.Body.Close()
			var pc protoClaims
			_ = json.NewDecoder(resp.Body).Decode(&pc)
			done <- pc
		}()
	}
	for range 4 {
		pc := <-done
		require.Equal(t, 2, pc.Proto)
		require.NotNil(t, pc.Claims)
	}

	// Re-attestation over the HTTP/2 connection, twice.
	for range 2 {
		claims, err := atls.ReattestHTTP(context.Background(), hc, base)
		require.NoError(t, err)
		require.Equal(t, f.ServerMeasurement[:], []byte(claims.SNP.Measurement))
	}
	// The claims outlive re-attestation and many requests.
	pc := getProtoClaims(t, hc, base+"/")
	require.Equal(t, 2, pc.Proto)
	require.NotNil(t, pc.Claims)
	require.Equal(t, int32(1), dials.Load(), "one HTTP/2 connection served everything")

	// Evidence bound to something else: refused, and the connection closed.
	att.tamper.Store(true)
	_, err := atls.ReattestHTTP(context.Background(), hc, base)
	atlstest.RequireCheck(t, err, attest.ErrBinding, "snp.report_data")
	att.tamper.Store(false)
	// The HTTP/2 client notices the closed connection in its read loop:
	// the next request that succeeds went out on a new connection.
	require.Eventually(t, func() bool {
		resp, err := hc.Get(base + "/")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, int32(2), dials.Load(), "the refused connection was not used again")
}

// A client that offers only HTTP/1.1 gets it from the same listener, and
// its first request (written right after the exchange) reaches the
// handler whole: the exchange left no application byte behind.
func TestBoundHTTPListenerHTTP1(t *testing.T) {
	f := atlstest.Get(t)
	base := boundHTTPServer(t, atls.BoundListenerOptions{Bound: atls.BoundOptions{
		Attester: f.ServerAttester, Verifier: f.Verifier(t, f.ClientMeasurement)}})
	d := boundDialer(t, atls.BoundDialerOptions{
		TLS:   &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}},
		Bound: atls.BoundOptions{Attester: f.ClientAttester, Verifier: f.Verifier(t, f.ServerMeasurement)}})
	tr := d.Transport()
	dials := countDials(tr)
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for range 3 {
		pc := getProtoClaims(t, hc, base+"/")
		require.Equal(t, 1, pc.Proto)
		require.NotNil(t, pc.Claims)
		require.Equal(t, f.ClientMeasurement[:], []byte(pc.Claims.SNP.Measurement))
	}
	require.Equal(t, int32(1), dials.Load())
}

// Re-attestation requests on one connection are limited by the server's
// MinReattestInterval: a second one within it is refused with
// bound.reattest_rate before any report is made, and the client closes
// the connection.
func TestBoundHTTPReattestRateLimit(t *testing.T) {
	f := atlstest.Get(t)
	att := &countingAttester{a: f.ServerAttester}
	// An hour: the second request below is within it however slow the
	// machine is.
	base := boundHTTPServer(t, atls.BoundListenerOptions{Bound: atls.BoundOptions{
		Attester: att, MinReattestInterval: time.Hour}})
	d := boundDialer(t, atls.BoundDialerOptions{Bound: atls.BoundOptions{Verifier: f.Verifier(t, f.ServerMeasurement)}})
	tr := d.Transport()
	dials := countDials(tr)
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	_, err := atls.ReattestHTTP(context.Background(), hc, base)
	require.NoError(t, err)
	require.Equal(t, int32(2), att.n.Load(), "one report to connect, one to re-attest")
	_, err = atls.ReattestHTTP(context.Background(), hc, base)
	atlstest.RequireCheck(t, err, attest.ErrBusy, "bound.reattest_rate")
	require.Equal(t, int32(2), att.n.Load(), "no report for a refused request")
	require.Equal(t, int32(1), dials.Load())

	// The limit is per connection: the refused connection was closed, and
	// the next one may re-attest at once.
	require.Eventually(t, func() bool {
		_, err := atls.ReattestHTTP(context.Background(), hc, base)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, int32(2), dials.Load())
	require.Equal(t, int32(4), att.n.Load())
}

type countingAttester struct {
	a attest.Attester
	n atomic.Int32
}

func (c *countingAttester) Attest(ctx context.Context, rd [64]byte) (*attest.Evidence, error) {
	c.n.Add(1)
	return c.a.Attest(ctx, rd)
}
