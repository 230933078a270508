package atls_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
)

// skewClock is a clock that tests move forward.
type skewClock struct{ skew atomic.Int64 }

func (c *skewClock) now() time.Time          { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *skewClock) advance(d time.Duration) { c.skew.Add(int64(d)) }

// handlerSeen is what one request's handler saw.
type handlerSeen struct {
	ctx        context.Context
	fromCtx    *atls.Claims // ClaimsFromContext(r.Context())
	fromLookup bool         // RequestClaims(r) answered
	proto      string
}

// A long-lived HTTP/2 connection keeps its client's claims past the
// client certificate's NotAfter (ClaimsFromContext), where RequestClaims,
// whose store expires with the certificate, stops answering; once the
// connection closes they are gone (issue 14).
func TestConnContextHTTP2OutlivesCertificate(t *testing.T) {
	f := atlstest.Get(t)
	clock := &skewClock{}
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement), Now: clock.now})
	seen := make(chan handlerSeen, 4)
	afterClose := make(chan bool, 1)
	var conns atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{
		TLSConfig:   srv.TLSConfig(),
		ConnContext: atls.ConnContext,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := atls.ClaimsFromContext(r.Context())
			_, lookup := srv.RequestClaims(r)
			seen <- handlerSeen{ctx: r.Context(), fromCtx: c, fromLookup: lookup, proto: r.Proto}
			if r.URL.Path == "/hold" {
				// A long request: held until its connection closes.
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				<-r.Context().Done()
				_, ok := atls.ClaimsFromContext(r.Context())
				afterClose <- ok
				return
			}
			_, _ = io.WriteString(w, "ok")
		}),
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	defer hs.Close()

	cli := atlstest.NewClient(t, atls.ClientOptions{
		Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester,
		Base: &tls.Config{NextProtos: []string{"h2"}},
	})
	tr := cli.Transport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	get := func() handlerSeen {
		resp, err := hc.Get("https://" + ln.Addr().String() + "/")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, 2, resp.ProtoMajor)
		return <-seen
	}

	first := get()
	require.Equal(t, "HTTP/2.0", first.proto)
	require.NotNil(t, first.fromCtx)
	require.Equal(t, f.ClientMeasurement[:], []byte(first.fromCtx.SNP.Measurement))
	require.Equal(t, attest.RoleClient, first.fromCtx.Role)
	require.True(t, first.fromLookup)

	// Past the client certificate's NotAfter, on the same connection.
	clock.advance(time.Until(first.fromCtx.NotAfter) + time.Hour)
	second := get()
	require.Equal(t, int64(1), conns.Load(), "the second request must reuse the connection")
	require.False(t, second.fromLookup, "RequestClaims expires with the certificate")
	require.NotNil(t, second.fromCtx, "the connection's claims must outlive its certificate")
	require.Equal(t, first.fromCtx.EvidenceDigest, second.fromCtx.EvidenceDigest)

	// A request in flight when the connection closes sees the claims go.
	go func() {
		if resp, err := hc.Get("https://" + ln.Addr().String() + "/hold"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	held := <-seen
	require.NotNil(t, held.fromCtx, "claims while the connection is open")
	require.Equal(t, int64(1), conns.Load())
	// A copy: modifying it changes nothing for the next reader.
	held.fromCtx.SNP = nil
	again, ok := atls.ClaimsFromContext(held.ctx)
	require.True(t, ok)
	require.NotNil(t, again.SNP)
	require.NoError(t, hs.Close())
	select {
	case ok := <-afterClose:
		require.False(t, ok, "the claims outlived the connection")
	case <-time.After(20 * time.Second):
		t.Fatal("the held request did not end with its connection")
	}
	_, ok = atls.ClaimsFromContext(second.ctx)
	require.False(t, ok)
}

// ClaimsFromContext answers nothing for a connection whose client the
// server does not verify, nor without ConnContext.
func TestConnContextWithoutClaims(t *testing.T) {
	f := atlstest.Get(t)
	oneWay := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	mutual := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
	for name, tc := range map[string]struct {
		srv         *atls.Server
		connContext func(context.Context, net.Conn) context.Context
	}{
		"one-way":           {oneWay, atls.ConnContext},
		"mutual, no record": {mutual, nil},
	} {
		t.Run(name, func(t *testing.T) {
			got := make(chan bool, 1)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			hs := &http.Server{TLSConfig: tc.srv.TLSConfig(), ConnContext: tc.connContext,
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, ok := atls.ClaimsFromContext(r.Context())
					got <- ok
				})}
			go func() { _ = hs.ServeTLS(ln, "", "") }()
			defer hs.Close()
			cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
			tr := cli.Transport()
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get("https://" + ln.Addr().String() + "/")
			require.NoError(t, err)
			resp.Body.Close()
			require.False(t, <-got)
		})
	}
	_, ok := atls.ClaimsFromContext(context.Background())
	require.False(t, ok)
}

// A record is one connection's: a context shared by mistake between two
// handshakes ends up holding nobody's claims, and a record whose
// handshake context is done holds none.
func TestConnContextRecordIsPerConnection(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
	ctx, cancel := context.WithCancel(atls.ConnContext(context.Background(), nil))
	defer cancel()
	handshake := func(hctx context.Context) {
		t.Helper()
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		errs := make(chan error, 1)
		go func() {
			// net.Pipe is synchronous: the pipes are closed, not the TLS
			// connections, whose close_notify nobody would read.
			_, _, err := cli.Handshake(context.Background(), a, nil)
			errs <- err
		}()
		require.NoError(t, tls.Server(b, srv.TLSConfig()).HandshakeContext(hctx))
		require.NoError(t, <-errs)
	}
	handshake(ctx)
	c, ok := atls.ClaimsFromContext(ctx)
	require.True(t, ok)
	require.Equal(t, f.ClientMeasurement[:], []byte(c.SNP.Measurement))
	handshake(ctx)
	_, ok = atls.ClaimsFromContext(ctx)
	require.False(t, ok, "a record filled by two handshakes must hold nothing")

	ctx2, cancel2 := context.WithCancel(atls.ConnContext(context.Background(), nil))
	handshake(ctx2)
	_, ok = atls.ClaimsFromContext(ctx2)
	require.True(t, ok)
	cancel2()
	_, ok = atls.ClaimsFromContext(ctx2)
	require.False(t, ok, "a done context answers nothing")
}

// Client.Handshake returns the server's claims with the connection, and
// each call makes its own configuration.
func TestClientHandshake(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	base := &tls.Config{NextProtos: []string{"my-proto"}}
	for range 2 {
		a, b := net.Pipe()
		go func() {
			_ = tls.Server(b, srv.Hook(&tls.Config{NextProtos: []string{"my-proto"}})).Handshake()
			_ = b.Close()
		}()
		tc, claims, err := cli.Handshake(context.Background(), a, base)
		require.NoError(t, err)
		require.Equal(t, "my-proto", tc.ConnectionState().NegotiatedProtocol)
		require.Equal(t, f.ServerMeasurement[:], []byte(claims.SNP.Measurement))
		require.Equal(t, []string{"my-proto"}, base.NextProtos, "base must not be modified")
		_ = a.Close()
	}

	wrong := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ClientMeasurement)})
	a, b := net.Pipe()
	go func() {
		_ = tls.Server(b, srv.TLSConfig()).Handshake()
		_ = b.Close()
	}()
	_, claims, err := wrong.Handshake(context.Background(), a, nil)
	atlstest.RequireCheck(t, err, attest.ErrPolicy, "policy.measurement")
	require.Nil(t, claims)
}
