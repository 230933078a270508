package atlsgrpc_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsgrpc"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
)

// observed is what one RPC's handler saw.
type observed struct {
	ctx    context.Context
	claims *atls.Claims
	state  tls.ConnectionState
}

// health is a health service whose handlers report the claims of their
// peer (atlsgrpc.ClaimsFromContext). Watch sends one response, then holds
// the stream until the client goes and reports whether the claims were
// still there once the connection closed.
type health struct {
	healthpb.UnimplementedHealthServer
	seen       chan observed
	afterClose chan bool
}

func newHealth() *health {
	return &health{seen: make(chan observed, 8), afterClose: make(chan bool, 1)}
}

func (h *health) observe(ctx context.Context) {
	c, _ := atlsgrpc.ClaimsFromContext(ctx)
	var st tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		if ai, ok := p.AuthInfo.(atlsgrpc.AuthInfo); ok {
			st = ai.State
		}
	}
	h.seen <- observed{ctx: ctx, claims: c, state: st}
}

func (h *health) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.observe(ctx)
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (h *health) Watch(_ *healthpb.HealthCheckRequest, ss grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	ctx := ss.Context()
	h.observe(ctx)
	if err := ss.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
		return err
	}
	<-ctx.Done()
	// The stream ends before its transport closes the connection: wait
	// (generously) for the claims to go.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := atlsgrpc.ClaimsFromContext(ctx); !ok {
			h.afterClose <- false
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.afterClose <- true
	return nil
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// serve runs a gRPC server with srv's credentials and the interceptors
// for authz on ln.
func serve(t *testing.T, srv *atls.Server, authz atlsgrpc.AuthorizeFunc, h *health, ln net.Listener) *grpc.Server {
	t.Helper()
	creds, err := atlsgrpc.NewServerCredentials(srv, nil)
	require.NoError(t, err)
	gs := grpc.NewServer(grpc.Creds(creds),
		grpc.UnaryInterceptor(atlsgrpc.UnaryServerInterceptor(authz)),
		grpc.StreamInterceptor(atlsgrpc.StreamServerInterceptor(authz)))
	healthpb.RegisterHealthServer(gs, h)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return gs
}

func listen(t *testing.T) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return &countingListener{Listener: ln}
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func clientCreds(t *testing.T, cli *atls.Client) credentials.TransportCredentials {
	t.Helper()
	creds, err := atlsgrpc.NewClientCredentials(cli, nil)
	require.NoError(t, err)
	return creds
}

// pinClient authorizes exactly the client image of the fixture.
func pinClient(f *atlstest.Fixture) atlsgrpc.AuthorizeFunc {
	return func(_ context.Context, c *atls.Claims) error {
		if c.SNP == nil || string(c.SNP.Measurement) != string(f.ClientMeasurement[:]) {
			return errors.New("image not allowed")
		}
		return nil
	}
}

// Mutual attestation over gRPC: the handlers of a unary and a streaming
// RPC see the client's claims; the client sees the server's in the peer.
// The connection keeps its claims past the client certificate's NotAfter
// and loses them when it closes (issue 14).
func TestMutualUnaryAndStreamClaimsOutliveCertificate(t *testing.T) {
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement), Now: now})
	h := newHealth()
	ln := listen(t)
	serve(t, srv, pinClient(f), h, ln)
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
	cc := dial(t, ln.Addr().String(), clientCreds(t, cli))
	hc := healthpb.NewHealthClient(cc)

	var p peer.Peer
	_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	require.NoError(t, err)
	unary := <-h.seen
	require.NotNil(t, unary.claims)
	require.Equal(t, f.ClientMeasurement[:], []byte(unary.claims.SNP.Measurement))
	require.Equal(t, attest.RoleClient, unary.claims.Role)
	require.Equal(t, "h2", unary.state.NegotiatedProtocol)
	sc, ok := atlsgrpc.ClaimsFromPeer(&p)
	require.True(t, ok)
	require.Equal(t, f.ServerMeasurement[:], []byte(sc.SNP.Measurement))
	require.Equal(t, attest.RoleServer, sc.Role)
	require.Equal(t, atlsgrpc.AuthType, p.AuthInfo.AuthType())
	_, ok = srv.PeerClaims(unary.state)
	require.True(t, ok)

	// Past the client certificate's NotAfter, on the same connection.
	skew.Store(int64(time.Until(unary.claims.NotAfter) + time.Hour))
	_, ok = srv.PeerClaims(unary.state)
	require.False(t, ok, "PeerClaims expires with the certificate")
	stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	_, err = stream.Recv()
	require.NoError(t, err)
	streamed := <-h.seen
	require.NotNil(t, streamed.claims, "the connection's claims must outlive its certificate")
	require.Equal(t, unary.claims.EvidenceDigest, streamed.claims.EvidenceDigest)
	require.Equal(t, int64(1), ln.n.Load(), "one connection for both RPCs")

	// Closing the client's connection ends the claims on the server.
	require.NoError(t, cc.Close())
	select {
	case stillThere := <-h.afterClose:
		require.False(t, stillThere, "the claims outlived the connection")
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end with its connection")
	}
	_, ok = atlsgrpc.ClaimsFromPeer(&p)
	require.False(t, ok, "the client's view of the server ends with the connection too")
}

// The client credentials make a fresh configuration per handshake: after
// a server restart the client reconnects, with a new nonce. The obvious
// setup, credentials.NewTLS(cli.TLSConfig()), fails the reconnect with
// check nonce.reuse, whose message names the right API.
func TestReconnectAfterServerRestart(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
	single, err := cli.TLSConfig()
	require.NoError(t, err)
	single.NextProtos = append([]string{"h2"}, single.NextProtos...)

	for name, tc := range map[string]struct {
		creds   credentials.TransportCredentials
		wantErr string
	}{
		"atlsgrpc":                      {clientCreds(t, cli), ""},
		"credentials.NewTLS(TLSConfig)": {credentials.NewTLS(single), "nonce.reuse"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			h := newHealth()
			ln := listen(t)
			addr := ln.Addr().String()
			gs := serve(t, srv, pinClient(f), h, ln)
			hc := healthpb.NewHealthClient(dial(t, addr, tc.creds))
			_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			<-h.seen

			gs.Stop()
			ln2, err := net.Listen("tcp", addr)
			require.NoError(t, err)
			serve(t, srv, pinClient(f), h, &countingListener{Listener: ln2})

			if tc.wantErr == "" {
				// An RPC may fail while the old connection breaks;
				// the next ones reconnect.
				for {
					if _, err = hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err == nil || ctx.Err() != nil {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				require.NoError(t, err)
				got := <-h.seen
				require.Equal(t, f.ClientMeasurement[:], []byte(got.claims.SNP.Measurement))
				return
			}
			// The reconnect fails; gRPC reports the handshake error.
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			defer rcancel()
			var last error
			for rctx.Err() == nil {
				_, last = hc.Check(rctx, &healthpb.HealthCheckRequest{})
				if last != nil && status.Code(last) == codes.Unavailable && containsAll(last.Error(), tc.wantErr, "atlsgrpc") {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Fatalf("want a reconnect failing with %s naming atlsgrpc, last error: %v", tc.wantErr, last)
		})
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !contains(s, sub) {
			return false
		}
	}
	return true
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// The interceptors refuse: an attested peer the authorization function
// refuses (PermissionDenied, with its reason; a status it returns is
// kept), and a peer without verified claims (Unauthenticated), in unary
// and streaming RPCs, before the handler runs.
func TestAuthorizationRefuses(t *testing.T) {
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mutual := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
	oneWay := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	refuse := func(context.Context, *atls.Claims) error { return errors.New("image not allowed") }
	quota := func(context.Context, *atls.Claims) error {
		return status.Error(codes.ResourceExhausted, "quota")
	}
	for name, tc := range map[string]struct {
		srv   *atls.Server
		authz atlsgrpc.AuthorizeFunc
		code  codes.Code
		msg   string
	}{
		"refused":          {mutual, refuse, codes.PermissionDenied, "image not allowed"},
		"own status":       {mutual, quota, codes.ResourceExhausted, "quota"},
		"not attested":     {oneWay, nil, codes.Unauthenticated, "not attested"},
		"not attested, fn": {oneWay, pinClient(f), codes.Unauthenticated, "not attested"},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHealth()
			ln := listen(t)
			serve(t, tc.srv, tc.authz, h, ln)
			cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
			hc := healthpb.NewHealthClient(dial(t, ln.Addr().String(), clientCreds(t, cli)))
			_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			require.Equal(t, tc.code, status.Code(err), "error: %v", err)
			require.Contains(t, status.Convert(err).Message(), tc.msg)
			stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			_, err = stream.Recv()
			require.Equal(t, tc.code, status.Code(err), "error: %v", err)
			require.Contains(t, status.Convert(err).Message(), tc.msg)
			require.Empty(t, h.seen, "a refused RPC must not reach its handler")
		})
	}
}

// A client whose image the server's verifier refuses never gets a
// connection: the handshake fails, and no handler runs.
func TestUnattestedClientRefusedInHandshake(t *testing.T) {
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
	h := newHealth()
	ln := listen(t)
	serve(t, srv, nil, h, ln)
	// Attests with the server's image, which the server does not accept
	// from clients.
	impostor := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ServerAttester})
	hc := healthpb.NewHealthClient(dial(t, ln.Addr().String(), clientCreds(t, impostor)))
	_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err), "error: %v", err)
	require.Empty(t, h.seen)
}

func TestOptionsValidated(t *testing.T) {
	_, err := atlsgrpc.NewServerCredentials(nil, nil)
	atlstest.RequireCheck(t, err, attest.ErrConfig, "grpc.config")
	_, err = atlsgrpc.NewClientCredentials(nil, nil)
	atlstest.RequireCheck(t, err, attest.ErrConfig, "grpc.config")
	_, ok := atlsgrpc.ClaimsFromContext(context.Background())
	require.False(t, ok)
	_, ok = atlsgrpc.ClaimsFromPeer(&peer.Peer{})
	require.False(t, ok)
}
