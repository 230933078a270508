package atls_test

import (
	"context"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/certgen"
	"github.com/confidential-go/atls/internal/atlstest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func clientConfig(t *testing.T, c *atls.Client, base *tls.Config) *tls.Config {
	t.Helper()
	cfg, err := c.Hook(base)
	require.NoError(t, err)
	return cfg
}

func TestOneWayNonce(t *testing.T) {
	f := atlstest.Get(t)
	ver := f.Verifier(t, f.ServerMeasurement)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: ver})

	res := atlstest.Handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
	require.NoError(t, res.Client)
	require.NoError(t, res.Server)
	require.Equal(t, uint16(tls.VersionTLS13), res.ClientCS.Version)
	require.Equal(t, "", res.ClientCS.NegotiatedProtocol)

	claims, ok := cli.PeerClaims(res.ClientCS)
	require.True(t, ok)
	require.Equal(t, snp.Platform, claims.Platform)
	require.True(t, claims.Simulated)
	require.Equal(t, attest.RoleServer, claims.Role)
	require.Equal(t, attest.ModeBatch, claims.Mode) // servers batch by default
	require.Equal(t, f.ServerMeasurement[:], []byte(claims.SNP.Measurement))
	require.Equal(t, res.ClientCS.PeerCertificates[0].NotAfter, claims.NotAfter)
}

func TestMutualAttestation(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})

	res := atlstest.Handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
	require.NoError(t, res.Client)
	require.NoError(t, res.Server)

	sc, ok := cli.PeerClaims(res.ClientCS)
	require.True(t, ok)
	require.Equal(t, f.ServerMeasurement[:], []byte(sc.SNP.Measurement))
	cc, ok := srv.PeerClaims(res.ServerCS)
	require.True(t, ok)
	require.Equal(t, attest.RoleClient, cc.Role)
	require.Equal(t, attest.ModeNonce, cc.Mode)
	require.Equal(t, f.ClientMeasurement[:], []byte(cc.SNP.Measurement))
}

func TestMutualClientWithoutEvidenceRejected(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
	// A verifying client that does not attest: sends no certificate.
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	res := atlstest.Handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
	require.Error(t, res.Server)
	require.Error(t, res.Client)

	// A client with an ordinary certificate: not attested. (Go's client
	// would only send a certificate issued by one of the advertised
	// authorities, so hand it over explicitly.)
	plain := selfSigned(t, "plain client")
	res = atlstest.Handshake(t, srv.TLSConfig(), clientConfig(t, cli, &tls.Config{
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &plain, nil },
	}))
	atlstest.RequireCheck(t, res.Server, attest.ErrNotAttested, "evidence.extension")
}

func selfSigned(t *testing.T, name string) tls.Certificate {
	return atlstest.NewCA(t).Issue(t, name, x509.ExtKeyUsageClientAuth)
}

func TestAttestedServerOrdinaryClientCerts(t *testing.T) {
	f := atlstest.Get(t)
	ca := atlstest.NewCA(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	serverBase := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool}
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	clientCert := ca.Issue(t, "client", x509.ExtKeyUsageClientAuth)

	res := atlstest.Handshake(t, srv.Hook(serverBase), clientConfig(t, cli, &tls.Config{Certificates: []tls.Certificate{clientCert}}))
	require.NoError(t, res.Client)
	require.NoError(t, res.Server)
	require.Equal(t, 1, len(res.ServerCS.PeerCertificates))

	// Without a client certificate the server's own PKI check refuses.
	res = atlstest.Handshake(t, srv.Hook(serverBase), clientConfig(t, cli, nil))
	require.Error(t, res.Server)
}

func TestAttestedClientOrdinaryServerPKI(t *testing.T) {
	f := atlstest.Get(t)
	ca := atlstest.NewCA(t)
	serverCert := ca.Issue(t, "server.test", x509.ExtKeyUsageServerAuth)
	srv := atlstest.NewServer(t, atls.ServerOptions{ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
	cli := atlstest.NewClient(t, atls.ClientOptions{Attester: f.ClientAttester})

	res := atlstest.Handshake(t,
		srv.Hook(&tls.Config{Certificates: []tls.Certificate{serverCert}}),
		clientConfig(t, cli, &tls.Config{RootCAs: ca.Pool, ServerName: "server.test"}))
	require.NoError(t, res.Client)
	require.NoError(t, res.Server)
	cc, ok := srv.PeerClaims(res.ServerCS)
	require.True(t, ok)
	require.Equal(t, f.ClientMeasurement[:], []byte(cc.SNP.Measurement))

	// The ordinary PKI check still runs on the client: wrong name fails.
	res = atlstest.Handshake(t,
		srv.Hook(&tls.Config{Certificates: []tls.Certificate{serverCert}}),
		clientConfig(t, cli, &tls.Config{RootCAs: ca.Pool, ServerName: "other.test"}))
	require.Error(t, res.Client)
}

func TestStaticMode(t *testing.T) {
	f := atlstest.Get(t)
	ver := f.Verifier(t, f.ServerMeasurement)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Freshness: atls.FreshnessStatic})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: ver, AcceptStatic: true})
	scfg := srv.TLSConfig()

	var leaf []byte
	for i := 0; i < 3; i++ {
		res := atlstest.Handshake(t, scfg, clientConfig(t, cli, nil))
		require.NoError(t, res.Client)
		c, ok := cli.PeerClaims(res.ClientCS)
		require.True(t, ok)
		require.Equal(t, attest.ModeStatic, c.Mode)
		if leaf != nil {
			require.Equal(t, leaf, res.ClientCS.PeerCertificates[0].Raw, "static certificate is reused")
		}
		leaf = res.ClientCS.PeerCertificates[0].Raw
	}
	require.Equal(t, int64(1), ver.Calls.Load(), "repeated handshakes with one static certificate verify once")

	// A client that did not opt in refuses static evidence.
	strict := atlstest.NewClient(t, atls.ClientOptions{Verifier: ver})
	res := atlstest.Handshake(t, scfg, clientConfig(t, strict, nil))
	atlstest.RequireCheck(t, res.Client, attest.ErrBinding, "binding.freshness")

	// Maximum age: the certificate is back-dated a minute, so 30s is exceeded.
	young := atlstest.NewClient(t, atls.ClientOptions{Verifier: ver, AcceptStatic: true, MaxAge: 30 * time.Second})
	res = atlstest.Handshake(t, scfg, clientConfig(t, young, nil))
	atlstest.RequireCheck(t, res.Client, attest.ErrBinding, "binding.max_age")
}

func TestStaticFallbackForClientsWithoutNonce(t *testing.T) {
	f := atlstest.Get(t)
	strictSrv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	plain := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	res := atlstest.Handshake(t, strictSrv.TLSConfig(), plain)
	atlstest.RequireCheck(t, res.Server, attest.ErrBinding, "nonce.missing")

	fallback := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, StaticFallback: true})
	res = atlstest.Handshake(t, fallback.TLSConfig(), plain.Clone())
	require.NoError(t, res.Client)
	atlstest.RequireBindingMode(t, res.ClientCS.PeerCertificates[0], attest.ModeStatic)

	// Clients that do send a nonce still get a nonce-bound certificate.
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	res = atlstest.Handshake(t, fallback.TLSConfig(), clientConfig(t, cli, nil))
	require.NoError(t, res.Client)
}

func TestALPNCoexists(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})

	base := &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	ccfg := clientConfig(t, cli, base)
	require.Equal(t, []string{"h2", "http/1.1"}, base.NextProtos, "base is not modified")
	require.Len(t, ccfg.NextProtos, 3)
	res := atlstest.Handshake(t, srv.Hook(&tls.Config{NextProtos: []string{"http/1.1"}}), ccfg)
	require.NoError(t, res.Client)
	require.Equal(t, "http/1.1", res.ClientCS.NegotiatedProtocol)

	// A client offering only the nonce still reaches a server that has
	// protocols of its own; no protocol is negotiated.
	res = atlstest.Handshake(t, srv.Hook(&tls.Config{NextProtos: []string{"h2"}}), clientConfig(t, cli, nil))
	require.NoError(t, res.Client)
	require.Equal(t, "", res.ClientCS.NegotiatedProtocol)
}

func TestClientConfigIsSingleUse(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	cfg := clientConfig(t, cli, nil)
	require.NoError(t, atlstest.Handshake(t, srv.TLSConfig(), cfg).Client)
	atlstest.RequireCheck(t, atlstest.Handshake(t, srv.TLSConfig(), cfg).Client, attest.ErrConfig, "nonce.reuse")
}

func TestPolicyRejectionReachesBothSides(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, sha512.Sum384([]byte("other image")))})
	res := atlstest.Handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
	atlstest.RequireCheck(t, res.Client, attest.ErrPolicy, "policy.measurement")
	require.ErrorContains(t, res.Server, "bad certificate", "the server receives a TLS alert")
}

func TestForgedChainRejected(t *testing.T) {
	f := atlstest.Get(t)
	other, err := snp.NewSimChain("Milan")
	require.NoError(t, err)
	forger, err := snp.NewSimAttester(other, snp.SimOptions{Measurement: f.ServerMeasurement})
	require.NoError(t, err)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: forger})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	res := atlstest.Handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
	require.ErrorIs(t, res.Client, attest.ErrVerification)

	// The real AMD roots do not accept simulated evidence either.
	amd, err := snp.NewVerifier(snp.VerifierOptions{Roots: snp.AMDRoots(), Policy: atlstest.PinMeasurement(t, f.ServerMeasurement)})
	require.NoError(t, err)
	cli = atlstest.NewClient(t, atls.ClientOptions{Verifier: amd})
	res = atlstest.Handshake(t, atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester}).TLSConfig(), clientConfig(t, cli, nil))
	require.ErrorIs(t, res.Client, attest.ErrVerification)
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
	f := atlstest.Get(t)
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	// A certificate bound to some earlier nonce, replayed.
	old, err := certgen.Issue(context.Background(), certgen.Request{
		Attester: f.ServerAttester, Role: attest.RoleServer, Mode: attest.ModeNonce, Nonce: [32]byte{1, 2, 3},
	})
	require.NoError(t, err)
	res := atlstest.Handshake(t, maliciousServer(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return old, nil }), clientConfig(t, cli, nil))
	atlstest.RequireCheck(t, res.Client, attest.ErrBinding, "snp.report_data")
}

func TestKeySubstitutionRejected(t *testing.T) {
	f := atlstest.Get(t)
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	res := atlstest.Handshake(t, maliciousServer(func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		// Evidence honestly made for key A, in a certificate for key B.
		a, err := atlstest.IssueForClientNonce(h, f.ServerAttester, attest.RoleServer)
		if err != nil {
			return nil, err
		}
		return atlstest.Transplant(t, a.Leaf), nil
	}), clientConfig(t, cli, nil))
	atlstest.RequireCheck(t, res.Client, attest.ErrBinding, "snp.report_data")
}

func TestRoleReflectionRejected(t *testing.T) {
	f := atlstest.Get(t)
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	res := atlstest.Handshake(t, maliciousServer(func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		// Client-role evidence (for example a client's, replayed).
		return atlstest.IssueForClientNonce(h, f.ServerAttester, attest.RoleClient)
	}), clientConfig(t, cli, nil))
	atlstest.RequireCheck(t, res.Client, attest.ErrBinding, "binding.role")
}

func TestMissingEvidenceRejected(t *testing.T) {
	f := atlstest.Get(t)
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	plain := atlstest.NewCA(t).Issue(t, "server", x509.ExtKeyUsageServerAuth)
	res := atlstest.Handshake(t, maliciousServer(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &plain, nil }), clientConfig(t, cli, nil))
	atlstest.RequireCheck(t, res.Client, attest.ErrNotAttested, "evidence.extension")
}

func TestMalformedExtensionsRejected(t *testing.T) {
	f := atlstest.Get(t)
	good, err := certgen.Issue(context.Background(), certgen.Request{Attester: f.ServerAttester, Role: attest.RoleServer, Mode: attest.ModeStatic})
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
			cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true})
			cert := atlstest.CertWithExtensions(t, tc.exts)
			res := atlstest.Handshake(t, maliciousServer(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }), clientConfig(t, cli, nil))
			atlstest.RequireCheck(t, res.Client, attest.ErrMalformedEvidence, tc.check)
		})
	}
}

func TestResumedSessionIsCheckedAgain(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, EnableResumption: true})
	cli := atlstest.NewClient(t, atls.ClientOptions{
		Verifier:         f.Verifier(t, f.ServerMeasurement),
		EnableResumption: true,
		Base:             &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(4), ServerName: "attested"},
	})
	scfg := srv.TLSConfig()
	first, err := cli.TLSConfig()
	require.NoError(t, err)
	res := atlstest.Handshake(t, scfg, first)
	require.NoError(t, res.Client)
	require.False(t, res.ClientCS.DidResume)

	second, err := cli.TLSConfig()
	require.NoError(t, err)
	res = atlstest.Handshake(t, scfg, second)
	require.True(t, res.ClientCS.DidResume, "the session was resumed")
	// The resumed session carries the first certificate, bound to the
	// first nonce: VerifyConnection refuses it.
	atlstest.RequireCheck(t, res.Client, attest.ErrBinding, "snp.report_data")
}

func TestResumptionOffByDefault(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	require.True(t, srv.TLSConfig().SessionTicketsDisabled)
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement),
		Base: &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(4)}})
	cfg, err := cli.TLSConfig()
	require.NoError(t, err)
	require.Nil(t, cfg.ClientSessionCache)
}

func TestTLS12Refused(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, StaticFallback: true})
	g := &gaugeAttester{inner: f.ServerAttester}
	nonceSrv := atlstest.NewServer(t, atls.ServerOptions{Attester: g})
	for _, cfg := range []*tls.Config{srv.TLSConfig(), nonceSrv.TLSConfig()} {
		// A TLS 1.2 client that does send a nonce entry.
		old := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
			NextProtos: []string{atls.NoncePrefix + strings.Repeat("ab", 32)}}
		res := atlstest.Handshake(t, cfg, old)
		atlstest.RequireCheck(t, res.Server, attest.ErrConfig, "tls.version")
		require.Error(t, res.Client)
	}
	require.Zero(t, g.peak.Load(), "no attestation is spent on a client that cannot speak TLS 1.3")
}

func TestHTTP(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
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

	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
	hc := &http.Client{Transport: cli.Transport()}
	for i := 0; i < 2; i++ {
		resp, err := hc.Get(hs.URL)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		require.Equal(t, attest.HexBytes(f.ClientMeasurement[:]).String(), string(body))
		sc, ok := cli.ResponseClaims(resp)
		require.True(t, ok)
		require.Equal(t, f.ServerMeasurement[:], []byte(sc.SNP.Measurement))
	}
}

func TestOptionsValidated(t *testing.T) {
	_, err := atls.NewServer(atls.ServerOptions{})
	require.ErrorIs(t, err, attest.ErrConfig)
	_, err = atls.NewClient(atls.ClientOptions{})
	require.ErrorIs(t, err, attest.ErrConfig)
	f := atlstest.Get(t)
	_, err = atls.NewClient(atls.ClientOptions{Attester: f.ClientAttester, Base: &tls.Config{InsecureSkipVerify: true}})
	require.ErrorIs(t, err, attest.ErrConfig)
}

// TestNetHTTPServer uses http.Server itself, which adds h2 to the
// configuration after Hook returned: HTTP/2 is negotiated when the client
// offers it, and a plain HTTPS server is found not attested (not an ALPN
// failure).
func TestNetHTTPServer(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{TLSConfig: srv.TLSConfig(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	})}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	defer hs.Close()

	for base, proto := range map[*tls.Config]string{
		nil:                                      "HTTP/2.0",
		{NextProtos: []string{"http/1.1"}}:       "HTTP/1.1",
		{NextProtos: []string{"h2", "http/1.1"}}: "HTTP/2.0",
	} {
		cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Base: base})
		hc := &http.Client{Transport: cli.Transport()}
		resp, err := hc.Get("https://" + ln.Addr().String() + "/")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, proto, string(body))
		_, ok := cli.ResponseClaims(resp)
		require.True(t, ok)
	}

	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	hc := &http.Client{Transport: cli.Transport()}
	plain := httptest.NewTLSServer(http.NotFoundHandler())
	defer plain.Close()
	_, err = hc.Get(plain.URL)
	atlstest.RequireCheck(t, err, attest.ErrNotAttested, "evidence.extension")
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
	f := atlstest.Get(t)
	g := &gaugeAttester{inner: f.ServerAttester}
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: g, DisableBatching: true, MaxConcurrentAttestations: 2})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
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
