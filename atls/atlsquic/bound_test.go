package atlsquic_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

const boundProto = "atls-test"

// switchVerifier counts appraisals and, once broken, fails them all.
type switchVerifier struct {
	v      attest.Verifier
	calls  atomic.Int32
	broken atomic.Bool
}

func (s *switchVerifier) Verify(ctx context.Context, ev *attest.Evidence, rd [64]byte) (*attest.Claims, error) {
	s.calls.Add(1)
	if s.broken.Load() {
		return nil, attest.Fail(attest.ErrPolicy, "snp.measurement", "policy changed")
	}
	return s.v.Verify(ctx, ev, rd)
}

// switchAttester passes through until told to tamper (evidence for other
// REPORT_DATA) or to stall (never answer until ctx ends).
type switchAttester struct {
	a      attest.Attester
	tamper atomic.Bool
	stall  atomic.Bool
}

func (s *switchAttester) Attest(ctx context.Context, rd [64]byte) (*attest.Evidence, error) {
	if s.stall.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if s.tamper.Load() {
		rd[0] ^= 1
	}
	return s.a.Attest(ctx, rd)
}

type quicServer struct {
	ln       *atlsquic.BoundListener
	accepted chan *atlsquic.BoundConn
	mu       sync.Mutex
	rejected []error
}

func newQUICBound(t *testing.T, opts atlsquic.BoundListenerOptions) *quicServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	opts.TLS = &tls.Config{NextProtos: []string{boundProto}}
	s := &quicServer{accepted: make(chan *atlsquic.BoundConn, 8)}
	opts.OnReject = func(_ net.Addr, err error) {
		s.mu.Lock()
		s.rejected = append(s.rejected, err)
		s.mu.Unlock()
	}
	s.ln, err = atlsquic.ListenBound(pc, opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.ln.Close() })
	go func() {
		for {
			c, err := s.ln.Accept(context.Background())
			if err != nil {
				return
			}
			s.accepted <- c
			go func() {
				for {
					st, err := c.AcceptStream(context.Background())
					if err != nil {
						return
					}
					go func() {
						_, _ = io.Copy(st, st)
						st.Close()
					}()
				}
			}()
		}
	}()
	return s
}

func dialQUICBound(t *testing.T, addr string, opts atlsquic.BoundDialOptions) (*atlsquic.BoundConn, error) {
	t.Helper()
	opts.TLS = &tls.Config{NextProtos: []string{boundProto}, InsecureSkipVerify: true}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return atlsquic.DialBound(ctx, addr, opts)
}

func quicEcho(t *testing.T, c *atlsquic.BoundConn, msg string) {
	t.Helper()
	st, err := c.OpenStreamSync(context.Background())
	require.NoError(t, err)
	_, err = st.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(st, buf)
	require.NoError(t, err)
	require.Equal(t, msg, string(buf))
	st.Close()
}

func TestBoundQUICMutualAndOnDemandReattest(t *testing.T) {
	f := atlstest.Get(t)
	srv := newQUICBound(t, atlsquic.BoundListenerOptions{Bound: atls.BoundOptions{
		Attester: f.ServerAttester, Verifier: f.Verifier(t, f.ClientMeasurement)}})
	c, err := dialQUICBound(t, srv.ln.Addr().String(), atlsquic.BoundDialOptions{Bound: atls.BoundOptions{
		Attester: f.ClientAttester, Verifier: f.Verifier(t, f.ServerMeasurement)}})
	require.NoError(t, err)
	defer c.CloseWithError(0, "")
	first := c.PeerClaims()
	require.Equal(t, attest.ModeBound, first.Mode)
	require.Equal(t, f.ServerMeasurement[:], []byte(first.SNP.Measurement))
	quicEcho(t, c, "hello")

	again, err := c.Reattest(context.Background())
	require.NoError(t, err)
	require.NotEqual(t, first.EvidenceDigest, again.EvidenceDigest, "new evidence, with a new nonce")
	require.Equal(t, 1, c.Reattestations())

	sc := <-srv.accepted
	require.Equal(t, f.ClientMeasurement[:], []byte(sc.PeerClaims().SNP.Measurement))
	_, err = sc.Reattest(context.Background()) // the server re-attests the client too
	require.NoError(t, err)
	quicEcho(t, c, "still up")
}

func TestBoundQUICPeriodicReattest(t *testing.T) {
	f := atlstest.Get(t)
	srv := newQUICBound(t, atlsquic.BoundListenerOptions{Bound: atls.BoundOptions{Attester: f.ServerAttester}})
	v := &switchVerifier{v: f.Verifier(t, f.ServerMeasurement)}
	c, err := dialQUICBound(t, srv.ln.Addr().String(), atlsquic.BoundDialOptions{
		Bound: atls.BoundOptions{Verifier: v}, Reattest: atlsquic.ReattestOptions{Interval: 50 * time.Millisecond}})
	require.NoError(t, err)
	defer c.CloseWithError(0, "")
	// Count events rather than time them: three re-attestations happen.
	require.Eventually(t, func() bool { return c.Reattestations() >= 3 }, 30*time.Second, 10*time.Millisecond)
	require.GreaterOrEqual(t, v.calls.Load(), int32(4))
	quicEcho(t, c, "alive")
}

func TestBoundQUICFailedReattestDisconnects(t *testing.T) {
	f := atlstest.Get(t)
	cases := []struct {
		name    string
		breakIt func(v *switchVerifier, a *switchAttester)
		kind    error
		check   string
	}{
		{"changed policy", func(v *switchVerifier, _ *switchAttester) { v.broken.Store(true) }, attest.ErrPolicy, "snp.measurement"},
		{"tampered evidence", func(_ *switchVerifier, a *switchAttester) { a.tamper.Store(true) }, attest.ErrBinding, "snp.report_data"},
		{"timeout", func(_ *switchVerifier, a *switchAttester) { a.stall.Store(true) }, attest.ErrNotAttested, "bound.timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			att := &switchAttester{a: f.ServerAttester}
			srv := newQUICBound(t, atlsquic.BoundListenerOptions{Bound: atls.BoundOptions{Attester: att}})
			v := &switchVerifier{v: f.Verifier(t, f.ServerMeasurement)}
			failed := make(chan error, 1)
			c, err := dialQUICBound(t, srv.ln.Addr().String(), atlsquic.BoundDialOptions{
				Bound: atls.BoundOptions{Verifier: v},
				Reattest: atlsquic.ReattestOptions{Interval: 50 * time.Millisecond, Timeout: 500 * time.Millisecond,
					OnFailure: func(err error) { failed <- err }}})
			require.NoError(t, err)
			require.Eventually(t, func() bool { return c.Reattestations() >= 1 }, 30*time.Second, 10*time.Millisecond)
			tc.breakIt(v, att)
			var ferr error
			select {
			case ferr = <-failed:
			case <-time.After(30 * time.Second):
				t.Fatal("the re-attestation did not fail")
			}
			atlstest.RequireCheck(t, ferr, tc.kind, tc.check)
			select {
			case <-c.Context().Done():
			case <-time.After(30 * time.Second):
				t.Fatal("the connection stayed open")
			}
			var appErr *quic.ApplicationError
			require.True(t, errors.As(context.Cause(c.Context()), &appErr))
			require.Equal(t, atlsquic.BoundErrorCode, appErr.ErrorCode)
			// The server's side closes too.
			sc := <-srv.accepted
			select {
			case <-sc.Context().Done():
			case <-time.After(30 * time.Second):
				t.Fatal("the server's connection stayed open")
			}
		})
	}
}

func TestBoundQUICRefusals(t *testing.T) {
	f := atlstest.Get(t)
	// A client that does not attest, to a server that requires it.
	srv := newQUICBound(t, atlsquic.BoundListenerOptions{Bound: atls.BoundOptions{
		Attester: f.ServerAttester, Verifier: f.Verifier(t, f.ClientMeasurement)}})
	c, err := dialQUICBound(t, srv.ln.Addr().String(), atlsquic.BoundDialOptions{Bound: atls.BoundOptions{
		Verifier: f.Verifier(t, f.ServerMeasurement)}})
	if err == nil {
		<-c.Context().Done()
	}
	require.Eventually(t, func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.rejected) == 1
	}, 30*time.Second, 10*time.Millisecond)
	atlstest.RequireCheck(t, srv.rejected[0], attest.ErrNotAttested, "bound.missing")
	require.Empty(t, srv.accepted)

	// A server that does not attest, to a client that requires it.
	plain := newQUICBound(t, atlsquic.BoundListenerOptions{Bound: atls.BoundOptions{Verifier: f.Verifier(t, f.ClientMeasurement)}})
	_, err = dialQUICBound(t, plain.ln.Addr().String(), atlsquic.BoundDialOptions{Bound: atls.BoundOptions{
		Attester: f.ClientAttester, Verifier: f.Verifier(t, f.ServerMeasurement)}})
	atlstest.RequireCheck(t, err, attest.ErrNotAttested, "bound.missing")

	// Options with nothing to attest or verify.
	_, err = atlsquic.DialBound(context.Background(), srv.ln.Addr().String(), atlsquic.BoundDialOptions{
		TLS: &tls.Config{NextProtos: []string{boundProto}}, Bound: atls.BoundOptions{}})
	atlstest.RequireCheck(t, err, attest.ErrConfig, "bound.options")
}
