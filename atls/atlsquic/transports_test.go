package atlsquic_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
	"github.com/confidential-go/atls/internal/atlstest"
)

// withTicketKey returns a configuration with a fixed session ticket key,
// so that separately hooked configurations accept each other's tickets.
func withTicketKey(k [32]byte) *tls.Config {
	c := &tls.Config{}
	c.SetSessionTicketKeys([][32]byte{k})
	return c
}

// testProto is the application protocol of the handshake tests. QUIC
// requires one; TCP gets the same, so that both run the same handshake.
const testProto = "atls-test/1"

// serverSide is an atls server hooked onto base, or, when srv is nil, a
// raw configuration served as is (a plain or malicious server).
type serverSide struct {
	srv  *atls.Server
	base *tls.Config
	raw  *tls.Config
}

// clientSide is an atls client hooked onto base, or, when cli is nil, a
// raw configuration (a plain or malicious client).
type clientSide struct {
	cli  *atls.Client
	base *tls.Config
	raw  *tls.Config
}

type transport struct {
	name      string
	handshake func(t *testing.T, s serverSide, c clientSide) atlstest.Outcome
}

var transports = []transport{{"tcp", tcpHandshake}, {"quic", quicHandshake}}

func withProto(c *tls.Config) *tls.Config {
	if c == nil {
		c = &tls.Config{}
	} else {
		c = c.Clone()
	}
	if len(c.NextProtos) == 0 {
		c.NextProtos = []string{testProto}
	}
	return c
}

// tcpHandshake runs one TLS handshake over loopback TCP with
// atlstest.Handshake, the way package atls's own tests do: the server
// writes one byte after its handshake so that the client learns the
// server's verdict on its certificate.
func tcpHandshake(t *testing.T, s serverSide, c clientSide) atlstest.Outcome {
	t.Helper()
	scfg := withProto(s.raw)
	if s.srv != nil {
		scfg = s.srv.Hook(withProto(s.base))
	}
	ccfg := withProto(c.raw)
	if c.cli != nil {
		var err error
		ccfg, err = c.cli.Hook(withProto(c.base))
		require.NoError(t, err)
	}
	return atlstest.Handshake(t, scfg, ccfg)
}

// quicHandshake runs one QUIC handshake over loopback UDP, through
// atlsquic.Listen and atlsquic.DialAddr for atls sides. The server opens a
// stream and writes one byte once it has accepted the connection, for the
// same reason as over TCP. A QUIC listener drops failed handshakes without
// a word, so the server's verdict is read from the context of its
// connection, which quic-go cancels with the handshake error as cause.
// (The listener is atlsquic.Listen's composition on a quic.Transport, for
// its ConnContext.)
func quicHandshake(t *testing.T, s serverSide, c clientSide) atlstest.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer pc.Close()

	// quic-go cancels the context it hands to ConnContext with the
	// connection's error as cause.
	connCtx := make(chan context.Context, 1)
	tr := &quic.Transport{Conn: pc, ConnContext: func(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
		select {
		case connCtx <- ctx:
		default:
		}
		return ctx, nil
	}}
	defer tr.Close()
	var scfg *tls.Config
	if s.srv != nil {
		scfg, err = atlsquic.ServerConfig(s.srv, withProto(s.base))
		require.NoError(t, err)
	} else {
		scfg = withProto(s.raw)
	}
	ln, err := tr.Listen(scfg, atlsquic.QUICConfig(nil))
	require.NoError(t, err)
	defer ln.Close()

	var (
		res      atlstest.Outcome
		serverCS tls.ConnectionState
		accepted atomic.Bool
	)
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		conn, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		accepted.Store(true)
		serverCS = conn.ConnectionState().TLS
		if str, err := conn.OpenUniStream(); err == nil {
			_, _ = str.Write([]byte("x"))
			_ = str.Close()
		}
		select {
		case <-conn.Context().Done():
		case <-ctx.Done():
		}
	}()

	addr := pc.LocalAddr().String()
	var conn *quic.Conn
	if c.cli != nil {
		conn, err = atlsquic.DialAddr(ctx, addr, c.cli, withProto(c.base), nil)
	} else {
		conn, err = quic.DialAddr(ctx, addr, withProto(c.raw), nil)
	}
	if err == nil {
		res.ClientCS = conn.ConnectionState().TLS
		var str *quic.ReceiveStream
		str, err = conn.AcceptUniStream(ctx)
		if err == nil {
			_, err = io.ReadFull(str, make([]byte, 1))
		}
		_ = conn.CloseWithError(0, "")
	}
	res.Client = err

	select {
	case hctx := <-connCtx:
		if !accepted.Load() {
			select {
			case <-hctx.Done():
				res.Server = context.Cause(hctx)
			case <-time.After(10 * time.Second):
				res.Server = errors.New("test: the server's handshake neither completed nor failed")
			}
		}
	case <-time.After(10 * time.Second):
		res.Server = errors.New("test: no ClientHello reached the server")
	}
	_ = ln.Close()
	<-srvDone
	res.ServerCS = serverCS
	return res
}

// want is the expected result of one side: success, a failure with a
// named check, or (for the side that only receives an alert) any failure.
type want struct {
	kind  error
	check string
	fail  bool
}

func alerted() want { return want{fail: true} }

func (w want) assert(t *testing.T, side string, err error) {
	t.Helper()
	switch {
	case w.kind != nil:
		require.Error(t, err, "%s should fail check %s", side, w.check)
		atlstest.RequireCheck(t, err, w.kind, w.check)
	case w.fail:
		require.Error(t, err, "%s should fail", side)
	default:
		require.NoError(t, err, "%s", side)
	}
}

// verdict summarises an error as "ok", "<kind>/<check>" or "failed", to
// compare transports.
func verdict(err error) string {
	if err == nil {
		return "ok"
	}
	var ce *attest.CheckError
	if errors.As(err, &ce) {
		return fmt.Sprintf("%v/%s", ce.Kind, ce.Check)
	}
	return "failed"
}

// TestTransports runs every mode and combination over TCP and over QUIC
// and requires the same results, down to the error kind and check name.
func TestTransports(t *testing.T) {
	f := atlstest.Get(t)
	ca := atlstest.NewCA(t)
	serverCert := ca.Issue(t, "server.test", x509.ExtKeyUsageServerAuth)
	clientCert := ca.Issue(t, "client", x509.ExtKeyUsageClientAuth)
	plainServerCert := ca.Issue(t, "plain", x509.ExtKeyUsageServerAuth)
	plainClientCert := ca.Issue(t, "plain client", x509.ExtKeyUsageClientAuth)
	ticketKey := [32]byte{'a', 't', 'l', 's'}
	otherImage := [48]byte{0xff}

	// malicious serves whatever pick returns, ignoring the client's nonce.
	malicious := func(pick func(h *tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: pick}
	}
	// evilClient presents whatever pick returns when asked for a
	// certificate; it still verifies the server.
	evilClient := func(pick func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error)) clientSide {
		return clientSide{
			cli:  atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)}),
			base: &tls.Config{GetClientCertificate: pick},
		}
	}
	requireClaims := func(t *testing.T, claims *atls.Claims, ok bool, role attest.Role, mode attest.Mode, m [48]byte) {
		t.Helper()
		require.True(t, ok, "claims available")
		require.Equal(t, role, claims.Role)
		require.Equal(t, mode, claims.Mode)
		require.Equal(t, m[:], []byte(claims.SNP.Measurement))
		require.True(t, claims.Simulated)
	}

	type tcase struct {
		name string
		// rounds > 1 repeats the handshake with the same sides (session
		// resumption); the expectations apply to the last round, the
		// earlier ones must succeed.
		rounds         int
		sides          func(t *testing.T) (serverSide, clientSide)
		client, server want
		then           func(t *testing.T, s serverSide, c clientSide, o atlstest.Outcome)
	}
	cases := []tcase{
		{
			name: "one-way/nonce",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})}
			},
			then: func(t *testing.T, s serverSide, c clientSide, o atlstest.Outcome) {
				require.Equal(t, testProto, o.ClientCS.NegotiatedProtocol)
				require.Equal(t, uint16(tls.VersionTLS13), o.ClientCS.Version)
				claims, ok := c.cli.PeerClaims(o.ClientCS)
				requireClaims(t, claims, ok, attest.RoleServer, attest.ModeBatch, f.ServerMeasurement)
			},
		},
		{
			// Servers batch by default; DisableBatching gives one
			// report per handshake, mode nonce.
			name: "one-way/nonce-unbatched",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, DisableBatching: true})},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})}
			},
			then: func(t *testing.T, s serverSide, c clientSide, o atlstest.Outcome) {
				claims, ok := c.cli.PeerClaims(o.ClientCS)
				requireClaims(t, claims, ok, attest.RoleServer, attest.ModeNonce, f.ServerMeasurement)
			},
		},
		{
			name: "one-way/static",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Freshness: atls.FreshnessStatic})},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true})}
			},
			then: func(t *testing.T, s serverSide, c clientSide, o atlstest.Outcome) {
				claims, ok := c.cli.PeerClaims(o.ClientCS)
				requireClaims(t, claims, ok, attest.RoleServer, attest.ModeStatic, f.ServerMeasurement)
			},
		},
		{
			name: "one-way/static-fallback-for-a-plain-client",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, StaticFallback: true})},
					clientSide{raw: &tls.Config{InsecureSkipVerify: true}}
			},
			then: func(t *testing.T, s serverSide, c clientSide, o atlstest.Outcome) {
				leaf := o.ClientCS.PeerCertificates[0]
				require.True(t, hasCMW(leaf))
				atlstest.RequireBindingMode(t, leaf, attest.ModeStatic)
			},
		},
		{
			name: "mutual/nonce",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})}
			},
			then: func(t *testing.T, s serverSide, c clientSide, o atlstest.Outcome) {
				claims, ok := c.cli.PeerClaims(o.ClientCS)
				requireClaims(t, claims, ok, attest.RoleServer, attest.ModeBatch, f.ServerMeasurement)
				claims, ok = s.srv.PeerClaims(o.ServerCS)
				requireClaims(t, claims, ok, attest.RoleClient, attest.ModeNonce, f.ClientMeasurement)
			},
		},
		{
			// Static freshness is the server's: an atls server always
			// sends a nonce for client evidence.
			name: "mutual/static",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Freshness: atls.FreshnessStatic,
						ClientVerifier: f.Verifier(t, f.ClientMeasurement), AcceptStaticClients: true})},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true,
						Attester: f.ClientAttester, StaticFallback: true})}
			},
			then: func(t *testing.T, s serverSide, c clientSide, o atlstest.Outcome) {
				claims, ok := c.cli.PeerClaims(o.ClientCS)
				requireClaims(t, claims, ok, attest.RoleServer, attest.ModeStatic, f.ServerMeasurement)
				claims, ok = s.srv.PeerClaims(o.ServerCS)
				requireClaims(t, claims, ok, attest.RoleClient, attest.ModeNonce, f.ClientMeasurement)
			},
		},
		{
			name: "attested-server+client-certificates/nonce",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester}),
						base: &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool}},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)}),
						base: &tls.Config{Certificates: []tls.Certificate{clientCert}}}
			},
			then: func(t *testing.T, s serverSide, c clientSide, o atlstest.Outcome) {
				require.Len(t, o.ServerCS.VerifiedChains, 1, "the server verified the client's PKI certificate")
				claims, ok := c.cli.PeerClaims(o.ClientCS)
				requireClaims(t, claims, ok, attest.RoleServer, attest.ModeBatch, f.ServerMeasurement)
			},
		},
		{
			name: "attested-server+client-certificates/static",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Freshness: atls.FreshnessStatic}),
						base: &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool}},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true}),
						base: &tls.Config{Certificates: []tls.Certificate{clientCert}}}
			},
			then: func(t *testing.T, s serverSide, c clientSide, o atlstest.Outcome) {
				require.Len(t, o.ServerCS.VerifiedChains, 1)
				claims, ok := c.cli.PeerClaims(o.ClientCS)
				requireClaims(t, claims, ok, attest.RoleServer, attest.ModeStatic, f.ServerMeasurement)
			},
		},
		{
			name: "attested-server+client-certificates/missing-client-certificate",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester}),
						base: &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool}},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})}
			},
			client: alerted(), server: alerted(),
		},
		{
			name: "attested-client+server-pki/nonce",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{ClientVerifier: f.Verifier(t, f.ClientMeasurement)}),
						base: &tls.Config{Certificates: []tls.Certificate{serverCert}}},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Attester: f.ClientAttester}),
						base: &tls.Config{RootCAs: ca.Pool, ServerName: "server.test"}}
			},
			then: func(t *testing.T, s serverSide, c clientSide, o atlstest.Outcome) {
				require.Len(t, o.ClientCS.VerifiedChains, 1, "the client verified the server's PKI certificate")
				claims, ok := s.srv.PeerClaims(o.ServerCS)
				requireClaims(t, claims, ok, attest.RoleClient, attest.ModeNonce, f.ClientMeasurement)
			},
		},
		{
			name: "attested-client+server-pki/static",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{ClientVerifier: f.Verifier(t, f.ClientMeasurement), AcceptStaticClients: true}),
						base: &tls.Config{Certificates: []tls.Certificate{serverCert}}},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Attester: f.ClientAttester, StaticFallback: true}),
						base: &tls.Config{RootCAs: ca.Pool, ServerName: "server.test"}}
			},
			then: func(t *testing.T, s serverSide, c clientSide, o atlstest.Outcome) {
				claims, ok := s.srv.PeerClaims(o.ServerCS)
				requireClaims(t, claims, ok, attest.RoleClient, attest.ModeNonce, f.ClientMeasurement)
			},
		},
		{
			name: "attested-client+server-pki/wrong-server-name",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{ClientVerifier: f.Verifier(t, f.ClientMeasurement)}),
						base: &tls.Config{Certificates: []tls.Certificate{serverCert}}},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Attester: f.ClientAttester}),
						base: &tls.Config{RootCAs: ca.Pool, ServerName: "other.test"}}
			},
			client: alerted(), server: alerted(),
		},

		// Attacks on the client's appraisal of the server.
		{
			name: "attack/replayed-server-certificate",
			sides: func(t *testing.T) (serverSide, clientSide) {
				old, err := certgen.Issue(context.Background(), certgen.Request{
					Attester: f.ServerAttester, Role: attest.RoleServer, Mode: attest.ModeNonce, Nonce: [32]byte{1, 2, 3},
				})
				require.NoError(t, err)
				return serverSide{raw: malicious(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return old, nil })},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})}
			},
			client: want{kind: attest.ErrBinding, check: "snp.report_data"}, server: alerted(),
		},
		{
			name: "attack/server-key-substitution",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{raw: malicious(func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
						a, err := atlstest.IssueForClientNonce(h, f.ServerAttester, attest.RoleServer)
						if err != nil {
							return nil, err
						}
						return atlstest.Transplant(t, a.Leaf), nil
					})},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})}
			},
			client: want{kind: attest.ErrBinding, check: "snp.report_data"}, server: alerted(),
		},
		{
			name: "attack/server-role-reflection",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{raw: malicious(func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
						return atlstest.IssueForClientNonce(h, f.ServerAttester, attest.RoleClient)
					})},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})}
			},
			client: want{kind: attest.ErrBinding, check: "binding.role"}, server: alerted(),
		},
		{
			name: "attack/server-missing-evidence",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{raw: malicious(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &plainServerCert, nil })},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})}
			},
			client: want{kind: attest.ErrNotAttested, check: "evidence.extension"}, server: alerted(),
		},
		{
			name: "static/refused-by-a-nonce-client",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Freshness: atls.FreshnessStatic})},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})}
			},
			client: want{kind: attest.ErrBinding, check: "binding.freshness"}, server: alerted(),
		},
		{
			name: "static/too-old",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Freshness: atls.FreshnessStatic})},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true, MaxAge: 30 * time.Second})}
			},
			client: want{kind: attest.ErrBinding, check: "binding.max_age"}, server: alerted(),
		},
		{
			name: "policy/server-measurement-not-accepted",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, otherImage)})}
			},
			client: want{kind: attest.ErrPolicy, check: "policy.measurement"}, server: alerted(),
		},
		{
			name: "nonce/required-but-not-sent",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})},
					clientSide{raw: &tls.Config{InsecureSkipVerify: true}}
			},
			client: alerted(), server: want{kind: attest.ErrBinding, check: "nonce.missing"},
		},

		// Attacks on the server's appraisal of the client.
		{
			name: "attack/client-missing-evidence",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})},
					evilClient(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &plainClientCert, nil })
			},
			client: alerted(), server: want{kind: attest.ErrNotAttested, check: "evidence.extension"},
		},
		{
			name: "attack/client-sends-no-certificate",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})}
			},
			client: alerted(), server: alerted(),
		},
		{
			name: "attack/replayed-client-certificate",
			sides: func(t *testing.T) (serverSide, clientSide) {
				old, err := certgen.Issue(context.Background(), certgen.Request{
					Attester: f.ClientAttester, Role: attest.RoleClient, Mode: attest.ModeNonce, Nonce: [32]byte{4, 5, 6},
				})
				require.NoError(t, err)
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})},
					evilClient(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return old, nil })
			},
			client: alerted(), server: want{kind: attest.ErrBinding, check: "snp.report_data"},
		},
		{
			name: "attack/client-key-substitution",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})},
					evilClient(func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
						a, err := atlstest.IssueForServerNonce(cri, f.ClientAttester, attest.RoleClient)
						if err != nil {
							return nil, err
						}
						return atlstest.Transplant(t, a.Leaf), nil
					})
			},
			client: alerted(), server: want{kind: attest.ErrBinding, check: "snp.report_data"},
		},
		{
			// A server's evidence (here made by the client's VM, for the
			// server's own nonce) reflected back as a client's.
			name: "attack/client-role-reflection",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})},
					evilClient(func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
						return atlstest.IssueForServerNonce(cri, f.ClientAttester, attest.RoleServer)
					})
			},
			client: alerted(), server: want{kind: attest.ErrBinding, check: "binding.role"},
		},
		{
			name: "policy/client-measurement-not-accepted",
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, otherImage)})},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})}
			},
			client: alerted(), server: want{kind: attest.ErrPolicy, check: "policy.measurement"},
		},

		// Session resumption: checks run again in VerifyConnection.
		{
			name:   "resumption/nonce-refused-by-the-client",
			rounds: 2,
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, EnableResumption: true}),
						base: withTicketKey(ticketKey)},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), EnableResumption: true}),
						base: &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(4), ServerName: "attested"}}
			},
			// The resumed session carries the first certificate, bound to
			// the first nonce.
			client: want{kind: attest.ErrBinding, check: "snp.report_data"}, server: alerted(),
		},
		{
			name:   "resumption/static-accepted-and-checked",
			rounds: 2,
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Freshness: atls.FreshnessStatic, EnableResumption: true}),
						base: withTicketKey(ticketKey)},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true, EnableResumption: true}),
						base: &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(4), ServerName: "attested"}}
			},
			then: func(t *testing.T, s serverSide, c clientSide, o atlstest.Outcome) {
				require.True(t, o.ClientCS.DidResume, "the session was resumed")
				claims, ok := c.cli.PeerClaims(o.ClientCS)
				requireClaims(t, claims, ok, attest.RoleServer, attest.ModeStatic, f.ServerMeasurement)
			},
		},
		{
			name:   "resumption/mutual-refused-by-the-server",
			rounds: 2,
			sides: func(t *testing.T) (serverSide, clientSide) {
				return serverSide{srv: atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Freshness: atls.FreshnessStatic,
						ClientVerifier: f.Verifier(t, f.ClientMeasurement), EnableResumption: true}),
						base: withTicketKey(ticketKey)},
					clientSide{cli: atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true,
						Attester: f.ClientAttester, EnableResumption: true}),
						base: &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(4), ServerName: "attested"}}
			},
			// The resumed session carries the client's first certificate,
			// bound to the server's first nonce.
			client: alerted(), server: want{kind: attest.ErrBinding, check: "snp.report_data"},
		},
	}

	for _, tc := range cases {
		verdicts := map[string]string{}
		for _, tr := range transports {
			t.Run(tc.name+"/"+tr.name, func(t *testing.T) {
				s, c := tc.sides(t)
				var o atlstest.Outcome
				for round := 1; round <= max(tc.rounds, 1); round++ {
					o = tr.handshake(t, s, c)
					if round < tc.rounds {
						require.NoError(t, o.Client, "round %d", round)
						require.NoError(t, o.Server, "round %d", round)
						require.False(t, o.ClientCS.DidResume, "round %d", round)
					}
				}
				tc.client.assert(t, "client", o.Client)
				tc.server.assert(t, "server", o.Server)
				if tc.then != nil {
					tc.then(t, s, c, o)
				}
				verdicts[tr.name] = "client " + verdict(o.Client) + ", server " + verdict(o.Server)
			})
		}
		if len(verdicts) == len(transports) {
			require.Equal(t, verdicts["tcp"], verdicts["quic"], "%s: the same verdicts over TCP and QUIC", tc.name)
		}
	}
}
