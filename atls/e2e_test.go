package atls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/certgen"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixture is one simulated AMD chain with a server and a client VM.
type fixture struct {
	chain         *snp.SimChain
	serverAtt     *snp.SimAttester
	clientAtt     *snp.SimAttester
	serverMeasure [48]byte
	clientMeasure [48]byte
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

func getFixture(t testing.TB) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		f := &fixture{
			serverMeasure: sha512.Sum384([]byte("server image")),
			clientMeasure: sha512.Sum384([]byte("client image")),
		}
		if f.chain, fixErr = snp.NewSimChain("Milan"); fixErr != nil {
			return
		}
		if f.serverAtt, fixErr = snp.NewSimAttester(f.chain, snp.SimOptions{Measurement: f.serverMeasure}); fixErr != nil {
			return
		}
		f.clientAtt, fixErr = snp.NewSimAttester(f.chain, snp.SimOptions{Measurement: f.clientMeasure})
		fix = f
	})
	require.NoError(t, fixErr)
	return fix
}

// verifier returns a verifier trusting the fixture's simulated root and
// pinning measurement m.
func (f *fixture) verifier(t testing.TB, m [48]byte) *countingVerifier {
	t.Helper()
	v, err := snp.NewVerifier(snp.VerifierOptions{Roots: f.chain.Roots(), Policy: pinMeasurement(t, m)})
	require.NoError(t, err)
	return &countingVerifier{v: v}
}

// countingVerifier counts calls that reach the platform verifier.
type countingVerifier struct {
	v     attest.Verifier
	calls atomic.Int64
}

func (c *countingVerifier) Verify(ctx context.Context, ev *attest.Evidence, rd [64]byte) (*attest.Claims, error) {
	c.calls.Add(1)
	return c.v.Verify(ctx, ev, rd)
}

// handshake runs one TLS handshake over loopback and returns both sides'
// results.
type result struct {
	client, server       error
	clientCS, serverCS   tls.ConnectionState
	negotiatedByServer   string
	serverSawClientCerts int
}

func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var res result
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			res.server = err
			return
		}
		defer c.Close()
		sc := tls.Server(c, serverCfg)
		_ = sc.SetDeadline(time.Now().Add(20 * time.Second))
		res.server = sc.Handshake()
		res.serverCS = sc.ConnectionState()
		res.negotiatedByServer = res.serverCS.NegotiatedProtocol
		res.serverSawClientCerts = len(res.serverCS.PeerCertificates)
		if res.server == nil {
			// Let the client finish reading the session tickets, if any.
			_, _ = sc.Write([]byte("x"))
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	cc := tls.Client(c, clientCfg)
	_ = cc.SetDeadline(time.Now().Add(20 * time.Second))
	res.client = cc.Handshake()
	if res.client == nil {
		buf := make([]byte, 1)
		_, res.client = io.ReadFull(cc, buf)
	}
	res.clientCS = cc.ConnectionState()
	cc.Close()
	<-done
	return res
}

func requireCheck(t *testing.T, err error, kind error, check string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, kind, "error: %v", err)
	var ce *attest.CheckError
	require.True(t, errors.As(err, &ce), "no CheckError in %v", err)
	require.Equal(t, check, ce.Check, "error: %v", err)
}

func newServer(t *testing.T, o atls.ServerOptions) *atls.Server {
	t.Helper()
	s, err := atls.NewServer(o)
	require.NoError(t, err)
	return s
}

func newClient(t *testing.T, o atls.ClientOptions) *atls.Client {
	t.Helper()
	c, err := atls.NewClient(o)
	require.NoError(t, err)
	return c
}

func clientConfig(t *testing.T, c *atls.Client, base *tls.Config) *tls.Config {
	t.Helper()
	cfg, err := c.Hook(base)
	require.NoError(t, err)
	return cfg
}

func TestOneWayNonce(t *testing.T) {
	f := getFixture(t)
	ver := f.verifier(t, f.serverMeasure)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt})
	cli := newClient(t, atls.ClientOptions{Verifier: ver})

	res := handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
	require.NoError(t, res.client)
	require.NoError(t, res.server)
	require.Equal(t, uint16(tls.VersionTLS13), res.clientCS.Version)
	require.Equal(t, "", res.clientCS.NegotiatedProtocol)

	claims, ok := cli.PeerClaims(res.clientCS)
	require.True(t, ok)
	require.Equal(t, snp.Platform, claims.Platform)
	require.True(t, claims.Simulated)
	require.Equal(t, attest.RoleServer, claims.Role)
	require.Equal(t, attest.ModeNonce, claims.Mode)
	require.Equal(t, f.serverMeasure[:], []byte(claims.SNP.Measurement))
	require.Equal(t, res.clientCS.PeerCertificates[0].NotAfter, claims.NotAfter)
}

func TestMutualAttestation(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt, ClientVerifier: f.verifier(t, f.clientMeasure)})
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure), Attester: f.clientAtt})

	res := handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
	require.NoError(t, res.client)
	require.NoError(t, res.server)

	sc, ok := cli.PeerClaims(res.clientCS)
	require.True(t, ok)
	require.Equal(t, f.serverMeasure[:], []byte(sc.SNP.Measurement))
	cc, ok := srv.PeerClaims(res.serverCS)
	require.True(t, ok)
	require.Equal(t, attest.RoleClient, cc.Role)
	require.Equal(t, attest.ModeNonce, cc.Mode)
	require.Equal(t, f.clientMeasure[:], []byte(cc.SNP.Measurement))
}

func TestMutualClientWithoutEvidenceRejected(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt, ClientVerifier: f.verifier(t, f.clientMeasure)})
	// A verifying client that does not attest: sends no certificate.
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure)})
	res := handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
	require.Error(t, res.server)
	require.Error(t, res.client)

	// A client with an ordinary certificate: not attested. (Go's client
	// would only send a certificate issued by one of the advertised
	// authorities, so hand it over explicitly.)
	plain := selfSigned(t, "plain client")
	res = handshake(t, srv.TLSConfig(), clientConfig(t, cli, &tls.Config{
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &plain, nil },
	}))
	requireCheck(t, res.server, attest.ErrNotAttested, "evidence.extension")
}

// testCA is an ordinary PKI for the mixed modes.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t testing.TB, name string, eku x509.ExtKeyUsage) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames:  []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{eku},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func selfSigned(t *testing.T, name string) tls.Certificate {
	return newTestCA(t).issue(t, name, x509.ExtKeyUsageClientAuth)
}

func TestAttestedServerOrdinaryClientCerts(t *testing.T) {
	f := getFixture(t)
	ca := newTestCA(t)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt})
	serverBase := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool}
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure)})
	clientCert := ca.issue(t, "client", x509.ExtKeyUsageClientAuth)

	res := handshake(t, srv.Hook(serverBase), clientConfig(t, cli, &tls.Config{Certificates: []tls.Certificate{clientCert}}))
	require.NoError(t, res.client)
	require.NoError(t, res.server)
	require.Equal(t, 1, res.serverSawClientCerts)

	// Without a client certificate the server's own PKI check refuses.
	res = handshake(t, srv.Hook(serverBase), clientConfig(t, cli, nil))
	require.Error(t, res.server)
}

func TestAttestedClientOrdinaryServerPKI(t *testing.T) {
	f := getFixture(t)
	ca := newTestCA(t)
	serverCert := ca.issue(t, "server.test", x509.ExtKeyUsageServerAuth)
	srv := newServer(t, atls.ServerOptions{ClientVerifier: f.verifier(t, f.clientMeasure)})
	cli := newClient(t, atls.ClientOptions{Attester: f.clientAtt})

	res := handshake(t,
		srv.Hook(&tls.Config{Certificates: []tls.Certificate{serverCert}}),
		clientConfig(t, cli, &tls.Config{RootCAs: ca.pool, ServerName: "server.test"}))
	require.NoError(t, res.client)
	require.NoError(t, res.server)
	cc, ok := srv.PeerClaims(res.serverCS)
	require.True(t, ok)
	require.Equal(t, f.clientMeasure[:], []byte(cc.SNP.Measurement))

	// The ordinary PKI check still runs on the client: wrong name fails.
	res = handshake(t,
		srv.Hook(&tls.Config{Certificates: []tls.Certificate{serverCert}}),
		clientConfig(t, cli, &tls.Config{RootCAs: ca.pool, ServerName: "other.test"}))
	require.Error(t, res.client)
}

func TestStaticMode(t *testing.T) {
	f := getFixture(t)
	ver := f.verifier(t, f.serverMeasure)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt, Freshness: atls.FreshnessStatic})
	cli := newClient(t, atls.ClientOptions{Verifier: ver, AcceptStatic: true})
	scfg := srv.TLSConfig()

	var leaf []byte
	for i := 0; i < 3; i++ {
		res := handshake(t, scfg, clientConfig(t, cli, nil))
		require.NoError(t, res.client)
		c, ok := cli.PeerClaims(res.clientCS)
		require.True(t, ok)
		require.Equal(t, attest.ModeStatic, c.Mode)
		if leaf != nil {
			require.Equal(t, leaf, res.clientCS.PeerCertificates[0].Raw, "static certificate is reused")
		}
		leaf = res.clientCS.PeerCertificates[0].Raw
	}
	require.Equal(t, int64(1), ver.calls.Load(), "repeated handshakes with one static certificate verify once")

	// A client that did not opt in refuses static evidence.
	strict := newClient(t, atls.ClientOptions{Verifier: ver})
	res := handshake(t, scfg, clientConfig(t, strict, nil))
	requireCheck(t, res.client, attest.ErrBinding, "binding.freshness")

	// Maximum age: the certificate is back-dated a minute, so 30s is exceeded.
	young := newClient(t, atls.ClientOptions{Verifier: ver, AcceptStatic: true, MaxAge: 30 * time.Second})
	res = handshake(t, scfg, clientConfig(t, young, nil))
	requireCheck(t, res.client, attest.ErrBinding, "binding.max_age")
}

func TestStaticFallbackForClientsWithoutNonce(t *testing.T) {
	f := getFixture(t)
	strictSrv := newServer(t, atls.ServerOptions{Attester: f.serverAtt})
	plain := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	res := handshake(t, strictSrv.TLSConfig(), plain)
	requireCheck(t, res.server, attest.ErrBinding, "nonce.missing")

	fallback := newServer(t, atls.ServerOptions{Attester: f.serverAtt, StaticFallback: true})
	res = handshake(t, fallback.TLSConfig(), plain.Clone())
	require.NoError(t, res.client)
	ev, err := attest.FromCertificate(res.clientCS.PeerCertificates[0])
	require.NoError(t, err)
	p, err := ev.Binding()
	require.NoError(t, err)
	require.Equal(t, attest.ModeStatic, p.Mode)

	// Clients that do send a nonce still get a nonce-bound certificate.
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure)})
	res = handshake(t, fallback.TLSConfig(), clientConfig(t, cli, nil))
	require.NoError(t, res.client)
}

func TestALPNCoexists(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt})
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure)})

	base := &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	ccfg := clientConfig(t, cli, base)
	require.Equal(t, []string{"h2", "http/1.1"}, base.NextProtos, "base is not modified")
	require.Len(t, ccfg.NextProtos, 3)
	res := handshake(t, srv.Hook(&tls.Config{NextProtos: []string{"http/1.1"}}), ccfg)
	require.NoError(t, res.client)
	require.Equal(t, "http/1.1", res.clientCS.NegotiatedProtocol)

	// A client offering only the nonce still reaches a server that has
	// protocols of its own; no protocol is negotiated.
	res = handshake(t, srv.Hook(&tls.Config{NextProtos: []string{"h2"}}), clientConfig(t, cli, nil))
	require.NoError(t, res.client)
	require.Equal(t, "", res.clientCS.NegotiatedProtocol)
}

func TestClientConfigIsSingleUse(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt})
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure)})
	cfg := clientConfig(t, cli, nil)
	require.NoError(t, handshake(t, srv.TLSConfig(), cfg).client)
	requireCheck(t, handshake(t, srv.TLSConfig(), cfg).client, attest.ErrConfig, "nonce.reuse")
}

func TestPolicyRejectionReachesBothSides(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt})
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, sha512.Sum384([]byte("other image")))})
	res := handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
	requireCheck(t, res.client, attest.ErrPolicy, "policy.measurement")
	require.ErrorContains(t, res.server, "bad certificate", "the server receives a TLS alert")
}

func TestForgedChainRejected(t *testing.T) {
	f := getFixture(t)
	other, err := snp.NewSimChain("Milan")
	require.NoError(t, err)
	forger, err := snp.NewSimAttester(other, snp.SimOptions{Measurement: f.serverMeasure})
	require.NoError(t, err)
	srv := newServer(t, atls.ServerOptions{Attester: forger})
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure)})
	res := handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
	require.ErrorIs(t, res.client, attest.ErrVerification)

	// The real AMD roots do not accept simulated evidence either.
	amd, err := snp.NewVerifier(snp.VerifierOptions{Roots: snp.AMDRoots(), Policy: pinMeasurement(t, f.serverMeasure)})
	require.NoError(t, err)
	cli = newClient(t, atls.ClientOptions{Verifier: amd})
	res = handshake(t, newServer(t, atls.ServerOptions{Attester: f.serverAtt}).TLSConfig(), clientConfig(t, cli, nil))
	require.ErrorIs(t, res.client, attest.ErrVerification)
}

// maliciousServer serves whatever certificate pick returns, ignoring the
// client's nonce.
func maliciousServer(pick func(hello *tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return pick(h)
		},
	}
}

func TestNonceReplayRejected(t *testing.T) {
	f := getFixture(t)
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure)})
	// A certificate bound to some earlier nonce, replayed.
	old, err := certgen.Issue(context.Background(), certgen.Request{
		Attester: f.serverAtt, Role: attest.RoleServer, Mode: attest.ModeNonce, Nonce: [32]byte{1, 2, 3},
	})
	require.NoError(t, err)
	res := handshake(t, maliciousServer(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return old, nil }), clientConfig(t, cli, nil))
	requireCheck(t, res.client, attest.ErrBinding, "snp.report_data")
}

func TestKeySubstitutionRejected(t *testing.T) {
	f := getFixture(t)
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure)})
	res := handshake(t, maliciousServer(func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		// Evidence honestly made for key A, in a certificate for key B.
		n := nonceOf(t, h.SupportedProtos)
		a, err := certgen.Issue(h.Context(), certgen.Request{Attester: f.serverAtt, Role: attest.RoleServer, Mode: attest.ModeNonce, Nonce: n})
		if err != nil {
			return nil, err
		}
		return transplant(t, a.Leaf, a.Leaf.NotBefore, a.Leaf.NotAfter), nil
	}), clientConfig(t, cli, nil))
	requireCheck(t, res.client, attest.ErrBinding, "snp.report_data")
}

func TestRoleReflectionRejected(t *testing.T) {
	f := getFixture(t)
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure)})
	res := handshake(t, maliciousServer(func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		// Client-role evidence (for example a client's, replayed).
		return certgen.Issue(h.Context(), certgen.Request{Attester: f.serverAtt, Role: attest.RoleClient, Mode: attest.ModeNonce, Nonce: nonceOf(t, h.SupportedProtos)})
	}), clientConfig(t, cli, nil))
	requireCheck(t, res.client, attest.ErrBinding, "binding.role")
}

func TestMissingEvidenceRejected(t *testing.T) {
	f := getFixture(t)
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure)})
	plain := newTestCA(t).issue(t, "server", x509.ExtKeyUsageServerAuth)
	res := handshake(t, maliciousServer(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &plain, nil }), clientConfig(t, cli, nil))
	requireCheck(t, res.client, attest.ErrNotAttested, "evidence.extension")
}

func TestMalformedExtensionsRejected(t *testing.T) {
	f := getFixture(t)
	good, err := certgen.Issue(context.Background(), certgen.Request{Attester: f.serverAtt, Role: attest.RoleServer, Mode: attest.ModeStatic})
	require.NoError(t, err)
	var ext pkix.Extension
	for _, e := range good.Leaf.Extensions {
		if e.Id.Equal(attest.OIDCMW) {
			ext = e
		}
	}
	cases := map[string]struct {
		exts  []pkix.Extension
		check string
	}{
		"critical": {[]pkix.Extension{{Id: attest.OIDCMW, Critical: true, Value: ext.Value}}, "evidence.extension"},
		"garbage":  {[]pkix.Extension{{Id: attest.OIDCMW, Value: []byte{0x0c, 0x03, 'a', 'b', 'c'}}}, "evidence.collection"},
		"not utf8": {[]pkix.Extension{{Id: attest.OIDCMW, Value: []byte{0x04, 0x01, 0x00}}}, "evidence.extension"},
		"oversized": {[]pkix.Extension{{Id: attest.OIDCMW, Value: append([]byte{0x0c, 0x83, 0x01, 0x00, 0x01},
			make([]byte, 0x10001)...)}}, "evidence.extension"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure), AcceptStatic: true})
			cert := certWithExtensions(t, tc.exts)
			res := handshake(t, maliciousServer(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }), clientConfig(t, cli, nil))
			requireCheck(t, res.client, attest.ErrMalformedEvidence, tc.check)
		})
	}
}

func TestResumedSessionIsCheckedAgain(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt, EnableResumption: true})
	cli := newClient(t, atls.ClientOptions{
		Verifier:         f.verifier(t, f.serverMeasure),
		EnableResumption: true,
		Base:             &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(4), ServerName: "attested"},
	})
	scfg := srv.TLSConfig()
	first, err := cli.TLSConfig()
	require.NoError(t, err)
	res := handshake(t, scfg, first)
	require.NoError(t, res.client)
	require.False(t, res.clientCS.DidResume)

	second, err := cli.TLSConfig()
	require.NoError(t, err)
	res = handshake(t, scfg, second)
	require.True(t, res.clientCS.DidResume, "the session was resumed")
	// The resumed session carries the first certificate, bound to the
	// first nonce: VerifyConnection refuses it.
	requireCheck(t, res.client, attest.ErrBinding, "snp.report_data")
}

func TestResumptionOffByDefault(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt})
	require.True(t, srv.TLSConfig().SessionTicketsDisabled)
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure),
		Base: &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(4)}})
	cfg, err := cli.TLSConfig()
	require.NoError(t, err)
	require.Nil(t, cfg.ClientSessionCache)
}

func TestTLS12Refused(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt, StaticFallback: true})
	res := handshake(t, srv.TLSConfig(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	require.Error(t, res.server)
	require.Error(t, res.client)
}

func TestHTTP(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt, ClientVerifier: f.verifier(t, f.clientMeasure)})
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := srv.RequestClaims(r)
		if !ok {
			http.Error(w, "no claims", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, c.SNP.Measurement.String())
	}))
	hs.TLS = srv.TLSConfig()
	hs.StartTLS()
	defer hs.Close()

	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure), Attester: f.clientAtt})
	hc := &http.Client{Transport: cli.Transport()}
	for i := 0; i < 2; i++ {
		resp, err := hc.Get(hs.URL)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		require.Equal(t, attest.HexBytes(f.clientMeasure[:]).String(), string(body))
		sc, ok := cli.ResponseClaims(resp)
		require.True(t, ok)
		require.Equal(t, f.serverMeasure[:], []byte(sc.SNP.Measurement))
	}
}

func TestOptionsValidated(t *testing.T) {
	_, err := atls.NewServer(atls.ServerOptions{})
	require.ErrorIs(t, err, attest.ErrConfig)
	_, err = atls.NewClient(atls.ClientOptions{})
	require.ErrorIs(t, err, attest.ErrConfig)
	f := getFixture(t)
	_, err = atls.NewClient(atls.ClientOptions{Attester: f.clientAtt, Base: &tls.Config{InsecureSkipVerify: true}})
	require.ErrorIs(t, err, attest.ErrConfig)
}

// TestNetHTTPServer uses http.Server itself, which adds h2 to the
// configuration after Hook returned: HTTP/2 is negotiated when the client
// offers it, and a plain HTTPS server is found not attested (not an ALPN
// failure).
func TestNetHTTPServer(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, atls.ServerOptions{Attester: f.serverAtt})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{TLSConfig: srv.TLSConfig(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	})}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	defer hs.Close()

	for base, proto := range map[*tls.Config]string{
		nil:                                      "HTTP/1.1",
		{NextProtos: []string{"h2", "http/1.1"}}: "HTTP/2.0",
	} {
		cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure), Base: base})
		hc := &http.Client{Transport: cli.Transport()}
		resp, err := hc.Get("https://" + ln.Addr().String() + "/")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, proto, string(body))
		_, ok := cli.ResponseClaims(resp)
		require.True(t, ok)
	}

	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure)})
	hc := &http.Client{Transport: cli.Transport()}
	plain := httptest.NewTLSServer(http.NotFoundHandler())
	defer plain.Close()
	_, err = hc.Get(plain.URL)
	requireCheck(t, err, attest.ErrNotAttested, "evidence.extension")
}

// gaugeAttester records how many attestations run at once.
type gaugeAttester struct {
	inner     attest.Attester
	cur, peak atomic.Int64
}

func (g *gaugeAttester) Attest(ctx context.Context, rd [64]byte) (*attest.Evidence, error) {
	n := g.cur.Add(1)
	defer g.cur.Add(-1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	return g.inner.Attest(ctx, rd)
}

func TestConcurrentAttestationsBounded(t *testing.T) {
	f := getFixture(t)
	g := &gaugeAttester{inner: f.serverAtt}
	srv := newServer(t, atls.ServerOptions{Attester: g, MaxConcurrentAttestations: 2})
	cli := newClient(t, atls.ClientOptions{Verifier: f.verifier(t, f.serverMeasure)})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.TLSConfig())
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := cli.DialContext(context.Background(), "tcp", ln.Addr().String())
			if err == nil {
				c.Close()
			}
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, g.peak.Load(), int64(2), "at most two attestations at once")
}
