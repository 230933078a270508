package atls_test

import (
	"context"
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

// tamperingAttester passes through until told to bind other REPORT_DATA.
type tamperingAttester struct {
	a      attest.Attester
	tamper atomic.Bool
}

func (t *tamperingAttester) Attest(ctx context.Context, rd [64]byte) (*attest.Evidence, error) {
	if t.tamper.Load() {
		rd[0] ^= 1
	}
	return t.a.Attest(ctx, rd)
}

func TestBoundHTTPAndReattestation(t *testing.T) {
	f := atlstest.Get(t)
	att := &tamperingAttester{a: f.ServerAttester}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	// No rate limit: this test re-attests back to back.
	ln, err := atls.NewBoundListener(inner, atls.BoundListenerOptions{Bound: atls.BoundOptions{
		Attester: att, Verifier: f.Verifier(t, f.ClientMeasurement), MinReattestInterval: -1}})
	require.NoError(t, err)
	srv := atls.NewBoundHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, ok := atls.BoundRequestClaims(r)
		if !ok {
			http.Error(w, "no claims", http.StatusForbidden)
			return
		}
		if r.ProtoMajor != 1 {
			http.Error(w, "a BoundListener serves HTTP/1.1 only", http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(claims)
	}))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	d := boundDialer(t, atls.BoundDialerOptions{Bound: atls.BoundOptions{
		Attester: f.ClientAttester, Verifier: f.Verifier(t, f.ServerMeasurement)}})
	var dials atomic.Int32
	tr := d.Transport()
	dial := tr.DialTLSContext
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dial(ctx, network, addr)
	}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	base := "https://" + ln.Addr().String()

	// The handler sees the client's verified claims.
	resp, err := hc.Get(base + "/")
	require.NoError(t, err)
	var got attest.Claims
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	resp.Body.Close()
	require.Equal(t, f.ClientMeasurement[:], []byte(got.SNP.Measurement))
	require.Equal(t, attest.ModeBound, got.Mode)

	// Re-attestation on the same connection, twice.
	for range 2 {
		claims, err := atls.ReattestHTTP(context.Background(), hc, base)
		require.NoError(t, err)
		require.Equal(t, f.ServerMeasurement[:], []byte(claims.SNP.Measurement))
	}
	require.Equal(t, int32(1), dials.Load(), "one connection served everything")

	// Evidence for another binding: refused, and the connection closed.
	att.tamper.Store(true)
	_, err = atls.ReattestHTTP(context.Background(), hc, base)
	atlstest.RequireCheck(t, err, attest.ErrBinding, "snp.report_data")
	att.tamper.Store(false)
	resp, err = hc.Get(base + "/")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, int32(2), dials.Load(), "the refused connection was not used again")

	// Plain http:// is refused rather than sent unattested.
	_, err = hc.Get("http://" + ln.Addr().String() + "/")
	require.Error(t, err)
	require.Equal(t, "transport.plaintext", attest.FailedCheck(err))
}

func TestBoundHTTPReattesterPeriodic(t *testing.T) {
	f := atlstest.Get(t)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln, err := atls.NewBoundListener(inner, atls.BoundListenerOptions{Bound: atls.BoundOptions{Attester: f.ServerAttester, MinReattestInterval: -1}})
	require.NoError(t, err)
	srv := atls.NewBoundHTTPServer(http.NotFoundHandler())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	v := &countingVerifier{v: f.Verifier(t, f.ServerMeasurement)}
	d := boundDialer(t, atls.BoundDialerOptions{Bound: atls.BoundOptions{Verifier: v}})
	hc := &http.Client{Transport: d.Transport(), Timeout: 30 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	r := &atls.HTTPReattester{Client: hc, Base: "https://" + ln.Addr().String(), Interval: 20 * time.Millisecond}
	go func() { done <- r.Run(ctx) }()
	// Count appraisals instead of timing them: one to connect, then three
	// re-attestations.
	require.Eventually(t, func() bool { return v.n.Load() >= 4 }, 30*time.Second, 10*time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

type countingVerifier struct {
	v attest.Verifier
	n atomic.Int32
}

func (c *countingVerifier) Verify(ctx context.Context, ev *attest.Evidence, rd [64]byte) (*attest.Claims, error) {
	c.n.Add(1)
	return c.v.Verify(ctx, ev, rd)
}
