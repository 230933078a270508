package atls_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
	"github.com/stretchr/testify/require"
)

// A configuration from Server.Hook returned by some other
// GetConfigForClient (an SNI router) never gets its own callback called:
// it must refuse handshakes, not serve unattested or skip client checks.
func TestHookedConfigUsedDirectlyFailsClosed(t *testing.T) {
	f := atlstest.Get(t)
	ca := atlstest.NewCA(t)
	// Attested client of an ordinary-PKI server.
	srv := atlstest.NewServer(t, atls.ServerOptions{ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
	inner := srv.Hook(&tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "server.test", 0)}})
	router := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return inner, nil }}
	plain := &tls.Config{RootCAs: ca.Pool, ServerName: "server.test"}
	res := atlstest.Handshake(t, router, plain)
	require.Error(t, res.Server, "a client without a certificate must not get through")
	// A client with an ordinary certificate reaches the guard.
	withCert := plain.Clone()
	clientCert := ca.Issue(t, "client", 0)
	withCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &clientCert, nil }
	res = atlstest.Handshake(t, router, withCert)
	atlstest.RequireCheck(t, res.Server, attest.ErrConfig, "server.config_used_directly")

	// Attested server: no certificate is served at all.
	asrv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, StaticFallback: true})
	ainner := asrv.TLSConfig()
	arouter := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return ainner, nil }}
	res = atlstest.Handshake(t, arouter, &tls.Config{InsecureSkipVerify: true})
	require.Error(t, res.Client)
	atlstest.RequireCheck(t, res.Server, attest.ErrConfig, "server.config_used_directly")
}

// Changing the client authentication of a hooked configuration after the
// fact would silently do nothing; it is refused instead.
func TestHookedConfigChangedIsRefused(t *testing.T) {
	f := atlstest.Get(t)
	ca := atlstest.NewCA(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	cfg := srv.TLSConfig()
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.ClientCAs = ca.Pool
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	ccfg, err := cli.TLSConfig()
	require.NoError(t, err)
	res := atlstest.Handshake(t, cfg, ccfg)
	atlstest.RequireCheck(t, res.Server, attest.ErrConfig, "server.config_changed")
}

// The HTTP transport ignores proxy settings (through a proxy net/http
// would make the TLS connection itself, unattested) and refuses http://.
func TestTransportFailsClosed(t *testing.T) {
	f := atlstest.Get(t)
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("NO_PROXY", "")

	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	hs.TLS = srv.TLSConfig()
	hs.StartTLS()
	defer hs.Close()

	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	tr := cli.Transport()
	require.Nil(t, tr.Proxy)
	hc := &http.Client{Transport: tr}
	resp, err := hc.Get(hs.URL)
	require.NoError(t, err, "the proxy setting is not used")
	resp.Body.Close()
	_, ok := cli.ResponseClaims(resp)
	require.True(t, ok)

	plainHTTP := httptest.NewServer(http.NotFoundHandler())
	defer plainHTTP.Close()
	_, err = hc.Get(plainHTTP.URL)
	atlstest.RequireCheck(t, err, attest.ErrConfig, "transport.plaintext")
}

// Without a Verifier the server is verified by PKI; InsecureSkipVerify
// would verify nothing, whichever way the configuration is made.
func TestHookRefusesUnverifiedServer(t *testing.T) {
	f := atlstest.Get(t)
	cli := atlstest.NewClient(t, atls.ClientOptions{Attester: f.ClientAttester})
	_, err := cli.Hook(&tls.Config{InsecureSkipVerify: true})
	atlstest.RequireCheck(t, err, attest.ErrConfig, "client.options")
}
