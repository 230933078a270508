// Command grpc runs a gRPC service and its clients over mutually attested
// TLS, on loopback, using the SEV-SNP simulator:
//
//	go run ./examples/grpc
//
// The "inventory" service runs in a confidential VM and admits clients
// that run one of two known images, "frontend" and "reporting", each in a
// confidential VM of its own. Every connection is mutually attested: the
// client checks the server's evidence, bound to the client's nonce, and
// the server checks the client's, bound to its own, before any RPC.
// Package atlsgrpc turns an atls.Server and an atls.Client into gRPC
// transport credentials, puts the peer's verified claims in every RPC's
// context, and runs an authorization function on them before each RPC:
// here "reporting" may call Check but not Watch.
//
// The server is then restarted: the client reconnects by itself, with a
// fresh nonce (a configuration from atls.Client.TLSConfig handed to
// credentials.NewTLS would fail that reconnect: it serves one handshake).
//
// On real hardware: guest.NewAttester instead of the simulator, and
// snp.AMDRoots() instead of the simulated chain's roots.
package main

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsgrpc"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "grpc:", err)
		os.Exit(1)
	}
}

// images are the launch measurements of the three services.
var images = map[string][48]byte{
	"inventory": sha512.Sum384([]byte("inventory service v2")),
	"frontend":  sha512.Sum384([]byte("frontend v5")),
	"reporting": sha512.Sum384([]byte("reporting v1")),
}

// nameOf returns the service name of claims, by measurement.
func nameOf(c *atls.Claims) string {
	if c == nil || c.SNP == nil {
		return "unknown"
	}
	for n, m := range images {
		if string(c.SNP.Measurement) == string(m[:]) {
			return n
		}
	}
	return "unknown image " + c.SNP.Measurement.String()
}

// inventory is the service: the health service's two RPCs, one unary and
// one streaming, stand for any service's.
type inventory struct {
	healthpb.UnimplementedHealthServer
	out io.Writer
}

func (s *inventory) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	claims, _ := atlsgrpc.ClaimsFromContext(ctx) // the interceptor ensured they exist
	fmt.Fprintf(s.out, "   [inventory] Check from %s (measurement %s)\n", nameOf(claims), claims.SNP.Measurement)
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (s *inventory) Watch(_ *healthpb.HealthCheckRequest, ss grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	claims, _ := atlsgrpc.ClaimsFromContext(ss.Context())
	fmt.Fprintf(s.out, "   [inventory] Watch from %s: streaming\n", nameOf(claims))
	for range 2 {
		if err := ss.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
			return err
		}
	}
	return nil
}

// authorize admits both client images to Check and only "frontend" to
// Watch. The server's verifier has already checked the evidence and the
// policy (the two images) during the handshake.
func authorize(ctx context.Context, claims *atls.Claims) error {
	method, _ := grpc.Method(ctx)
	if method == healthpb.Health_Watch_FullMethodName && nameOf(claims) != "frontend" {
		return fmt.Errorf("%s may not call Watch", nameOf(claims))
	}
	return nil
}

func run(ctx context.Context, w io.Writer) error {
	out := &syncWriter{w: w}
	fmt.Fprintln(out, "Creating a simulated AMD chain (SIMULATED: not real hardware)...")
	chain, err := snp.NewSimChain("Genoa")
	if err != nil {
		return err
	}
	vm := func(name string) (*snp.SimAttester, error) {
		return snp.NewSimAttester(chain, snp.SimOptions{Measurement: images[name]})
	}
	verifier := func(names ...string) (*snp.Verifier, error) {
		p := snp.NewPolicy()
		for _, n := range names {
			m := images[n]
			p.Measurements = append(p.Measurements, attest.HexBytes(m[:]))
		}
		return snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: p})
	}

	// The server: attested itself, and verifying its clients.
	serverVM, err := vm("inventory")
	if err != nil {
		return err
	}
	clientPolicy, err := verifier("frontend", "reporting")
	if err != nil {
		return err
	}
	srv, err := atls.NewServer(atls.ServerOptions{Attester: serverVM, ClientVerifier: clientPolicy})
	if err != nil {
		return err
	}
	defer srv.Close()
	creds, err := atlsgrpc.NewServerCredentials(srv, nil)
	if err != nil {
		return err
	}
	start := func(addr string) (*grpc.Server, string, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, "", err
		}
		gs := grpc.NewServer(grpc.Creds(creds),
			grpc.UnaryInterceptor(atlsgrpc.UnaryServerInterceptor(authorize)),
			grpc.StreamInterceptor(atlsgrpc.StreamServerInterceptor(authorize)))
		healthpb.RegisterHealthServer(gs, &inventory{out: out})
		go func() { _ = gs.Serve(ln) }()
		return gs, ln.Addr().String(), nil
	}
	gs, addr, err := start("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer func() { gs.Stop() }()
	fmt.Fprintf(out, "inventory serves gRPC on %s\n", addr)

	// A client: attested as name, admitting only the inventory image.
	serverPolicy, err := verifier("inventory")
	if err != nil {
		return err
	}
	client := func(name string) (healthpb.HealthClient, func(), error) {
		cvm, err := vm(name)
		if err != nil {
			return nil, nil, err
		}
		cli, err := atls.NewClient(atls.ClientOptions{Verifier: serverPolicy, Attester: cvm})
		if err != nil {
			return nil, nil, err
		}
		ccreds, err := atlsgrpc.NewClientCredentials(cli, nil)
		if err != nil {
			return nil, nil, err
		}
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(ccreds))
		if err != nil {
			return nil, nil, err
		}
		return healthpb.NewHealthClient(cc), func() { _ = cc.Close() }, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	fmt.Fprintln(out, "\n1. frontend calls Check and Watch")
	frontend, closeFrontend, err := client("frontend")
	if err != nil {
		return err
	}
	defer closeFrontend()
	var p peer.Peer
	if _, err := frontend.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return err
	}
	sc, ok := atlsgrpc.ClaimsFromPeer(&p)
	if !ok {
		return errors.New("no claims of the server")
	}
	fmt.Fprintf(out, "   [frontend] the server is %s (measurement %s, %s mode, simulated %v)\n", nameOf(sc), sc.SNP.Measurement, sc.Mode, sc.Simulated)
	n, err := watch(ctx, frontend)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   [frontend] Watch: %d updates\n", n)

	fmt.Fprintln(out, "\n2. reporting calls Check, then Watch, which it may not")
	reporting, closeReporting, err := client("reporting")
	if err != nil {
		return err
	}
	defer closeReporting()
	if _, err := reporting.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		return err
	}
	if _, err := watch(ctx, reporting); err == nil {
		return errors.New("reporting was allowed to Watch")
	} else {
		st := status.Convert(err)
		fmt.Fprintf(out, "   [reporting] Watch refused: %s: %s\n", st.Code(), st.Message())
	}

	fmt.Fprintln(out, "\n3. the server restarts; frontend reconnects with a fresh nonce")
	gs.Stop()
	if gs, _, err = start(addr); err != nil {
		return err
	}
	for {
		// The first call may fail while the old connection breaks.
		_, err := frontend.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintln(out, "   [frontend] reconnected and attested again")
	return nil
}

// watch reads a Watch stream to its end and returns how many updates it
// carried.
func watch(ctx context.Context, hc healthpb.HealthClient) (int, error) {
	stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		n++
	}
}

// syncWriter serializes writes from the server's and clients' goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
