package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
)

// plainHTTP3 fetches url with an HTTP/3 client that is not atls: it sends
// no nonce and verifies nothing.
func plainHTTP3(t *testing.T, url string) (*http.Response, error) {
	t.Helper()
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	t.Cleanup(func() { _ = tr.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err == nil {
		_ = resp.Body.Close()
	}
	return resp, err
}

// requireStaticEvidence requires that the server's certificate carries
// static-mode evidence for the server role.
func requireStaticEvidence(t *testing.T, resp *http.Response) {
	t.Helper()
	require.Equal(t, "HTTP/3.0", resp.Proto)
	ev, err := attest.FromCertificate(resp.TLS.PeerCertificates[0])
	require.NoError(t, err, "the certificate carries evidence")
	b, err := ev.Binding()
	require.NoError(t, err)
	require.Equal(t, attest.RoleServer, b.Role)
	require.Equal(t, attest.ModeStatic, b.Mode)
}

func TestServeAndGetQUIC(t *testing.T) {
	s := newSetup(t)
	srv := startServe(t, "--simulate", "--sim-dir", s.dir, "--quic")

	// One-way attestation over HTTP/3 and failures by class, as over TCP.
	claims, refused := requireGetOneWay(t, s, srv.url, "--quic")
	require.Equal(t, attest.ModeBatch, claims.Mode) // servers batch by default
	require.Equal(t, 1, strings.Count(refused.stderr, "\n"), refused.stderr)

	// Nothing listens on TCP.
	mustRun(t, exitFailure, "get", "--policy", s.policy, "--roots", s.roots, srv.url+"/")

	// An HTTP/3 client that is not atls sends no nonce: it gets the static
	// fallback certificate, attested all the same.
	resp, err := plainHTTP3(t, srv.url+"/plain")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	requireStaticEvidence(t, resp)

	// Graceful shutdown: exit 0.
	require.Equal(t, exitOK, srv.stop())
	log := srv.stderr.String()
	require.Contains(t, log, "SIMULATED attestation")
	require.Contains(t, log, `protocol="HTTP/3 (QUIC, UDP)"`)
	require.Contains(t, log, "path=/hello proto=HTTP/3.0")
	require.Contains(t, log, "path=/plain proto=HTTP/3.0")
	require.Contains(t, log, "atls serve: stopped")
}

func TestServeQUICMutual(t *testing.T) {
	s := newSetup(t)
	srv := startServe(t, "--simulate", "--sim-dir", s.dir, "--quic", "--mutual", "--policy", s.policy, "--roots", s.roots)
	get := []string{"get", "--quic", "--policy", s.policy, "--roots", s.roots}

	// A client that does not attest is refused in the handshake.
	r := mustRun(t, exitFailure, append(get, srv.url+"/")...)
	require.Contains(t, r.stderr, "refused the QUIC handshake")
	require.Contains(t, r.stderr, "--attest")

	// An attested client gets its own verified claims echoed.
	r = mustRun(t, exitOK, append(get, "--attest", "--simulate", "--sim-dir", s.dir, "--show-attestation", srv.url+"/who")...)
	requireClientClaimsEchoed(t, s, r.stdout)
	require.Contains(t, r.stderr, s.measurement, "the server's claims")

	// A client running another image is refused by the server's policy.
	r = mustRun(t, exitFailure, append(get, "--attest", "--simulate", "--sim-dir", s.dir, "--measurement", strings.Repeat("0e", 48), srv.url+"/")...)
	require.Contains(t, r.stderr, "refused")
	require.Contains(t, r.stderr, "server's policy")

	// So is an HTTP/3 client that is not atls.
	_, err := plainHTTP3(t, srv.url+"/")
	require.Error(t, err)

	require.Equal(t, exitOK, srv.stop())
	log := srv.stderr.String()
	require.Contains(t, log, "check=policy.measurement")
	require.Contains(t, log, "client_measurement="+s.measurement)
	require.Contains(t, log, "mutual=true")
}

func TestServeQUICModes(t *testing.T) {
	s := newSetup(t)
	get := []string{"get", "--quic", "--policy", s.policy, "--roots", s.roots}

	static := startServe(t, "--simulate", "--sim-dir", s.dir, "--quic", "--mode", "static")
	r := mustRun(t, exitVerify, append(get, static.url+"/")...)
	require.Contains(t, r.stderr, "binding.freshness")
	require.Contains(t, r.stderr, "--accept-static")
	r = mustRun(t, exitOK, append(get, "--accept-static", "--show-attestation", "--json", static.url+"/")...)
	var claims atls.Claims
	decodeJSON(t, r.stderr, &claims)
	require.Equal(t, attest.ModeStatic, claims.Mode)
	resp, err := plainHTTP3(t, static.url+"/")
	require.NoError(t, err)
	requireStaticEvidence(t, resp)

	strict := startServe(t, "--simulate", "--sim-dir", s.dir, "--quic", "--static-fallback=false")
	mustRun(t, exitOK, append(get, strict.url+"/")...)
	_, err = plainHTTP3(t, strict.url+"/")
	require.Error(t, err, "a client without a nonce is refused")
}

func TestGetQUICNoServer(t *testing.T) {
	s := newSetup(t)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer pc.Close() // bound and silent
	r := mustRun(t, exitFailure, "get", "--quic", "--policy", s.policy, "--roots", s.roots, "https://"+pc.LocalAddr().String()+"/")
	require.Contains(t, r.stderr, "atls serve --quic")
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), r.stderr)
}
