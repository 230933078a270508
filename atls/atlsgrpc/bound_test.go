package atlsgrpc_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsgrpc"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
)

// boundHealth records the client claims each Check saw.
type boundHealth struct {
	healthpb.UnimplementedHealthServer
	calls  atomic.Int32
	claims chan *atls.Claims
}

func (h *boundHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.calls.Add(1)
	c, _ := atlsgrpc.ClaimsFromContext(ctx)
	h.claims <- c
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func boundGRPCServer(t *testing.T, opts atls.BoundOptions) (string, *boundHealth) {
	t.Helper()
	creds, err := atlsgrpc.NewBoundServerCredentials(opts, nil)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := grpc.NewServer(grpc.Creds(creds))
	h := &boundHealth{claims: make(chan *atls.Claims, 8)}
	healthpb.RegisterHealthServer(s, h)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().String(), h
}

// One client credential, several connections: bound mode needs nothing
// per connection.
func TestBoundCredentialsMutual(t *testing.T) {
	f := atlstest.Get(t)
	addr, h := boundGRPCServer(t, atls.BoundOptions{Attester: f.ServerAttester, Verifier: f.Verifier(t, f.ClientMeasurement)})
	creds, err := atlsgrpc.NewBoundClientCredentials(atls.BoundDialerOptions{
		TLS:   insecureTLS(),
		Bound: atls.BoundOptions{Attester: f.ClientAttester, Verifier: f.Verifier(t, f.ServerMeasurement)},
	})
	require.NoError(t, err)
	for range 2 { // two connections, one credential
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var p peer.Peer
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
		cancel()
		require.NoError(t, err)
		server, ok := atlsgrpc.ClaimsFromPeer(&p)
		require.True(t, ok)
		require.Equal(t, attest.ModeBound, server.Mode)
		require.Equal(t, f.ServerMeasurement[:], []byte(server.SNP.Measurement))
		client := <-h.claims
		require.NotNil(t, client)
		require.Equal(t, f.ClientMeasurement[:], []byte(client.SNP.Measurement))
		cc.Close()
	}
}

func TestBoundCredentialsRefuseUnverifiedServer(t *testing.T) {
	f := atlstest.Get(t)
	addr, h := boundGRPCServer(t, atls.BoundOptions{Attester: f.ServerAttester})
	// The client pins another measurement: the server is refused, and no
	// RPC reaches it.
	creds, err := atlsgrpc.NewBoundClientCredentials(atls.BoundDialerOptions{
		TLS: insecureTLS(), Bound: atls.BoundOptions{Verifier: f.Verifier(t, f.ClientMeasurement)}})
	require.NoError(t, err)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	require.Error(t, err)
	require.Equal(t, int32(0), h.calls.Load())
}

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }
