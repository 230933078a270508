package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
)

// server is "atls serve" running in a goroutine.
type server struct {
	addr   string
	url    string
	stderr *lockedBuffer
	stop   func() int // cancels the server and returns its exit code
}

func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan int, 1)
	stderr := &lockedBuffer{}
	e := &env{ctx: ctx, stdout: &lockedBuffer{}, stderr: stderr, listening: func(a net.Addr) { addrc <- a }}
	go func() {
		done <- runEnv(e, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...))
	}()
	s := &server{stderr: stderr}
	select {
	case a := <-addrc:
		s.addr = a.String()
	case code := <-done:
		cancel()
		t.Fatalf("serve exited with %d before listening: %s", code, stderr)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("serve did not start")
	}
	s.url = "https://" + s.addr
	stopped := false
	code := 0
	s.stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Error("serve did not shut down")
				code = -1
			}
		}
		return code
	}
	t.Cleanup(func() { s.stop() })
	return s
}

// requireGetOneWay runs "atls get" with flags (such as --quic) against the
// one-way attested server at url: the body on stdout, the claims on
// stderr, and failures by class. It returns the claims shown with --json
// and the result of the run refused by policy, for further checks.
func requireGetOneWay(t *testing.T, s *setup, url string, flags ...string) (atls.Claims, result) {
	t.Helper()
	get := func(args ...string) []string {
		return append(append([]string{"get"}, flags...), args...)
	}
	r := mustRun(t, exitOK, get("--policy", s.policy, "--roots", s.roots, "--show-attestation", url+"/hello")...)
	var echo echoResponse
	decodeJSON(t, r.stdout, &echo)
	require.Equal(t, echoResponse{Method: "GET", Path: "/hello"}, echo)
	require.Contains(t, r.stderr, "SIMULATED")
	require.Contains(t, r.stderr, s.measurement)
	require.Contains(t, r.stderr, "freshness          batch")

	r = mustRun(t, exitOK, get("--policy", s.policy, "--roots", s.roots, "--show-attestation", "--json", url+"/")...)
	var claims atls.Claims
	decodeJSON(t, r.stderr, &claims)
	require.True(t, claims.Simulated)
	require.Equal(t, s.measurement, claims.SNP.Measurement.String())

	// Failures by class.
	wrong := filepath.Join(t.TempDir(), "wrong.json")
	mustRun(t, exitOK, "policy", "init", "--measurement", strings.Repeat("01", 48), "--out", wrong)
	refused := mustRun(t, exitPolicy, get("--policy", wrong, "--roots", s.roots, url+"/")...)
	require.Contains(t, refused.stderr, "policy.measurement")
	require.Empty(t, refused.stdout)
	r = mustRun(t, exitVerify, get("--policy", s.policy, url+"/")...)
	require.Contains(t, r.stderr, "snp.vcek.chain")
	require.Contains(t, r.stderr, "--roots")
	return claims, refused
}

// requireClientClaimsEchoed requires the echo server's answer to be the
// attested client's own verified claims.
func requireClientClaimsEchoed(t *testing.T, s *setup, stdout string) {
	t.Helper()
	var echo echoResponse
	decodeJSON(t, stdout, &echo)
	require.True(t, echo.ClientAttested)
	require.Equal(t, "client", echo.Client.Role.String())
	require.Equal(t, s.measurement, echo.Client.SNP.Measurement.String())
	require.True(t, echo.Client.Simulated)
	require.Contains(t, echo.Note, "SIMULATED")
}

func TestServeAndGet(t *testing.T) {
	s := newSetup(t)
	srv := startServe(t, "--simulate", "--sim-dir", s.dir)
	get := []string{"get", "--policy", s.policy, "--roots", s.roots}

	// One-way attestation: the body on stdout, the claims on stderr;
	// failures by class.
	claims, _ := requireGetOneWay(t, s, srv.url)

	// An HTTP error status is a failure, with the body still written.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "index.txt"), []byte("static file\n"), 0o644))
	files := startServe(t, "--simulate", "--sim-dir", s.dir, "--dir", dir)
	r := mustRun(t, exitOK, append(get, files.url+"/index.txt")...)
	require.Equal(t, "static file\n", r.stdout)
	r = mustRun(t, exitFailure, append(get, files.url+"/missing")...)
	require.Contains(t, r.stderr, "404")

	// verify and inspect talk to the server too.
	r = mustRun(t, exitOK, "verify", "--policy", s.policy, "--roots", s.roots, srv.addr)
	decodeJSON(t, r.stdout, &claims)
	require.Equal(t, "batch", claims.Mode.String()) // servers batch by default
	r = mustRun(t, exitOK, "inspect", "--sim-dir", s.dir, srv.addr)
	require.Contains(t, r.stdout, "static (bound to the key and validity only; no nonce)", "static fallback for a client without a nonce")
	require.Contains(t, r.stdout, "SIMULATED")
	r = mustRun(t, exitOK, "inspect", "--nonce", srv.addr)
	require.Contains(t, r.stdout, "inspect sent nonce")
	verifyUsage(t, "--policy", s.policy, "--nonce", strings.Repeat("11", 32), srv.addr)
	verifyUsage(t, "--policy", s.policy, "--role", "client", srv.addr)

	// Graceful shutdown: exit 0.
	require.Equal(t, exitOK, srv.stop())
	log := srv.stderr.String()
	require.Contains(t, log, "SIMULATED attestation")
	require.Contains(t, log, "atls serve: listening")
	require.Contains(t, log, "atls serve: stopped")
	require.Contains(t, log, "path=/hello")
}

func TestServeMutual(t *testing.T) {
	s := newSetup(t)
	srv := startServe(t, "--simulate", "--sim-dir", s.dir, "--mutual", "--policy", s.policy, "--roots", s.roots)
	get := []string{"get", "--policy", s.policy, "--roots", s.roots}

	// A client that does not attest is refused in the handshake.
	r := mustRun(t, exitFailure, append(get, srv.url+"/")...)
	require.Contains(t, r.stderr, "--attest")

	// An attested client gets its own verified claims echoed.
	r = mustRun(t, exitOK, append(get, "--attest", "--simulate", "--sim-dir", s.dir, srv.url+"/who")...)
	requireClientClaimsEchoed(t, s, r.stdout)

	// A client running another image is refused by the server's policy.
	r = mustRun(t, exitFailure, append(get, "--attest", "--simulate", "--sim-dir", s.dir, "--measurement", strings.Repeat("0e", 48), srv.url+"/")...)
	require.Contains(t, r.stderr, "refused")
	require.Equal(t, exitOK, srv.stop())
	require.Contains(t, srv.stderr.String(), "check=policy.measurement")
	require.Contains(t, srv.stderr.String(), "client_measurement="+s.measurement)
}

func TestServeModes(t *testing.T) {
	s := newSetup(t)
	get := []string{"get", "--policy", s.policy, "--roots", s.roots}

	static := startServe(t, "--simulate", "--sim-dir", s.dir, "--mode", "static")
	r := mustRun(t, exitVerify, append(get, static.url+"/")...)
	require.Contains(t, r.stderr, "binding.freshness")
	require.Contains(t, r.stderr, "--accept-static")
	mustRun(t, exitOK, append(get, "--accept-static", static.url+"/")...)
	mustRun(t, exitVerify, append(get, "--accept-static", "--max-age", "1s", static.url+"/")...)

	strict := startServe(t, "--simulate", "--sim-dir", s.dir, "--static-fallback=false")
	r = mustRun(t, exitFailure, "inspect", strict.addr)
	require.Contains(t, r.stderr, "--nonce")
	mustRun(t, exitOK, "inspect", "--nonce", strict.addr)
	mustRun(t, exitOK, append(get, strict.url+"/")...)
}

func TestServeWithoutSNP(t *testing.T) {
	if _, err := os.Stat("/dev/sev-guest"); err == nil {
		t.Skip("this machine is an SEV-SNP guest")
	}
	if _, err := os.Stat("/sys/kernel/config/tsm/report"); err == nil {
		t.Skip("this machine has a configfs-tsm report interface")
	}
	r := mustRun(t, exitFailure, "serve", "--addr", "127.0.0.1:0")
	require.Contains(t, r.stderr, "SEV-SNP not available")
	require.Contains(t, r.stderr, "--simulate")
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), r.stderr)
}

func TestOrdinaryTLSServer(t *testing.T) {
	s := newSetup(t)
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("not attested\n"))
	}))
	defer ts.Close()
	addr := strings.TrimPrefix(ts.URL, "https://")

	r := mustRun(t, exitNotAttested, "get", "--policy", s.policy, "--roots", s.roots, ts.URL+"/")
	require.Contains(t, r.stderr, "not attested")
	require.Empty(t, r.stdout)
	verifyFails(t, exitNotAttested, "evidence.extension", "--policy", s.policy, addr)
	mustRun(t, exitNotAttested, "inspect", addr)
	mustRun(t, exitNotAttested, "inspect", "--nonce", addr)
}

func TestGetRefusesPlainRedirect(t *testing.T) {
	s := newSetup(t)
	att, err := (&simStore{dir: s.dir, stderr: io.Discard}).attester(nil)
	require.NoError(t, err)
	srv, err := atls.NewServer(atls.ServerOptions{Attester: att})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/plain", http.RedirectHandler("http://example.invalid/", http.StatusFound))
	mux.Handle("/tls", http.RedirectHandler("/ok", http.StatusFound))
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	ts := httptest.NewUnstartedServer(mux)
	ts.TLS = srv.TLSConfig()
	ts.StartTLS()
	defer ts.Close()

	get := []string{"get", "--policy", s.policy, "--roots", s.roots}
	r := mustRun(t, exitOK, append(get, ts.URL+"/tls")...)
	require.Equal(t, "ok\n", r.stdout)
	r = mustRun(t, exitFailure, append(get, ts.URL+"/plain")...)
	require.Contains(t, r.stderr, "refusing a redirect to http://example.invalid/")
}
