package interop

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/interop/internal/vectors"
	"github.com/stretchr/testify/require"
)

// The tests here run the format against TLS stacks that are not this
// library: OpenSSL's s_client and s_server, curl and Node.js. What they
// receive is checked by the Python verifier (and the Go one); what they
// send is checked by atls. Each is skipped when its tool is absent.

// connResult is what an attested server saw on one connection.
type connResult struct {
	claims *attest.Claims // the client's, with a ClientVerifier
	err    error
}

// serveTLS accepts TLS connections on loopback with cfg; after each
// handshake it writes greeting and closes. It returns the address and the
// results of the handshakes.
func serveTLS(t *testing.T, cfg *tls.Config, srv *atls.Server, greeting string) (string, <-chan connResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	results := make(chan connResult, 16)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				ctx, cancel := context.WithTimeout(context.Background(), processTimeout)
				defer cancel()
				tc := tls.Server(conn, cfg)
				if err := tc.HandshakeContext(ctx); err != nil {
					results <- connResult{err: err}
					return
				}
				var r connResult
				if srv != nil {
					r.claims, _ = srv.PeerClaims(tc.ConnectionState())
				}
				results <- r
				_, _ = io.WriteString(tc, greeting)
				_ = tc.Close()
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), results
}

func nextResult(t *testing.T, results <-chan connResult) connResult {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(processTimeout):
		t.Fatal("the server saw no connection")
		return connResult{}
	}
}

// newNonceHex returns a random nonce in hex.
func newNonceHex(t *testing.T) string {
	t.Helper()
	var n [attest.NonceSize]byte
	_, err := rand.Read(n[:])
	require.NoError(t, err)
	return hex.EncodeToString(n[:])
}

// checkServerCert verifies a server certificate received by another TLS
// stack with the Python verifier and returns its claims.
func checkServerCert(t *testing.T, der []byte, nonce string) map[string]any {
	t.Helper()
	path := filepath.Join(t.TempDir(), "received.der")
	require.NoError(t, os.WriteFile(path, der, 0o600))
	py := runPython(t, pyRequest{cert: path, role: "server", nonce: nonce, acceptStatic: nonce == ""})
	require.Empty(t, py.Check, "the Python verifier rejects the certificate the peer received: %s", py.Line)
	if nonce == "" {
		require.Equal(t, "static", py.Claims["mode"])
	} else {
		// Servers batch nonce-bound evidence by default (SPEC section
		// 4.1); either mode is bound to this nonce.
		require.Contains(t, []any{"nonce", "batch"}, py.Claims["mode"])
	}
	require.Equal(t, "server", py.Claims["role"])
	return py.Claims
}

// TestOpenSSLClient connects openssl s_client to an attested atls server:
// without a nonce (static evidence), with a nonce in ALPN, and with a
// static client certificate from certgen (mutual attestation).
func TestOpenSSLClient(t *testing.T) {
	openssl := tool(t, "openssl")
	requirePython(t)
	dir := t.TempDir()
	clientCert, clientKey := writePEM(t, dir, "client", issue(t, attest.RoleClient, attest.ModeStatic, [attest.NonceSize]byte{}))

	for _, c := range []struct {
		name          string
		nonce, mutual bool
	}{{"static", false, false}, {"nonce", true, false}, {"mutual", false, true}} {
		t.Run(c.name, func(t *testing.T) {
			opts := atls.ServerOptions{Attester: simAttester(t), StaticFallback: true}
			if c.mutual {
				opts.ClientVerifier, opts.AcceptStaticClients = goVerifier(t, nil), true
			}
			srv, err := atls.NewServer(opts)
			require.NoError(t, err)
			addr, results := serveTLS(t, srv.TLSConfig(), srv, "atls ok\n")

			args := []string{"s_client", "-connect", addr, "-tls1_3", "-showcerts", "-ign_eof"}
			nonce := ""
			if c.nonce {
				nonce = newNonceHex(t)
				args = append(args, "-alpn", atls.NoncePrefix+nonce)
			}
			if c.mutual {
				args = append(args, "-cert", clientCert, "-key", clientKey)
			}
			stdout, stderr, code := run(t, "", openssl, args...)
			require.Equal(t, 0, code, "openssl s_client:\n%s\n%s", stdout, stderr)
			r := nextResult(t, results)
			require.NoError(t, r.err)
			require.Contains(t, stdout, "atls ok")
			require.Contains(t, stdout, "TLSv1.3")
			if c.mutual {
				// The server accepted openssl's static client certificate,
				// after sending its nonce among the acceptable CA names
				// (which openssl shows and ignores).
				require.NotNil(t, r.claims)
				require.Equal(t, attest.RoleClient, r.claims.Role)
				require.Equal(t, attest.ModeStatic, r.claims.Mode)
				require.Contains(t, stdout, atls.NoncePrefix)
			}
			// What openssl received passes the Python verifier.
			checkServerCert(t, firstPEM(t, stdout, "Certificate chain"), nonce)
		})
	}
}

// TestCurl fetches a page from an attested atls HTTPS server with curl,
// one-way and with a static client certificate, and checks the server
// certificate curl saw.
func TestCurl(t *testing.T) {
	curl := tool(t, "curl")
	requirePython(t)
	dir := t.TempDir()
	clientCert, clientKey := writePEM(t, dir, "client", issue(t, attest.RoleClient, attest.ModeStatic, [attest.NonceSize]byte{}))
	for _, mutual := range []bool{false, true} {
		t.Run(map[bool]string{false: "one-way", true: "mutual"}[mutual], func(t *testing.T) {
			opts := atls.ServerOptions{Attester: simAttester(t), Freshness: atls.FreshnessStatic}
			if mutual {
				opts.ClientVerifier, opts.AcceptStaticClients = goVerifier(t, nil), true
			}
			srv, err := atls.NewServer(opts)
			require.NoError(t, err)
			url := serveHTTP(t, srv, func(w http.ResponseWriter, r *http.Request) {
				who := "anonymous"
				if c, ok := srv.RequestClaims(r); ok {
					who = c.Role.String() + " " + c.Mode.String()
				}
				fmt.Fprintf(w, "hello %s\n", who)
			})
			body := filepath.Join(t.TempDir(), "body")
			args := []string{"--silent", "--show-error", "--insecure", "--tlsv1.3", "--max-time", "20",
				"--output", body, "--write-out", "%{certs}", url}
			if mutual {
				args = append(args, "--cert", clientCert, "--key", clientKey)
			}
			stdout, stderr, code := run(t, "", curl, args...)
			require.Equal(t, 0, code, "curl:\n%s\n%s", stdout, stderr)
			got, err := os.ReadFile(body)
			require.NoError(t, err)
			if mutual {
				require.Equal(t, "hello client static\n", string(got))
			} else {
				require.Equal(t, "hello anonymous\n", string(got))
			}
			checkServerCert(t, firstPEM(t, stdout, ""), "")
		})
	}
}

// serveHTTP serves h over HTTPS on loopback with srv's configuration.
func serveHTTP(t *testing.T, srv *atls.Server, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := srv.Hook(&tls.Config{NextProtos: []string{"http/1.1"}})
	hs := &http.Server{Handler: h, ReadHeaderTimeout: processTimeout}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(tls.NewListener(ln, cfg))
	}()
	t.Cleanup(func() {
		_ = hs.Close()
		<-done
	})
	return "https://" + ln.Addr().String() + "/"
}

// sServer is a running openssl s_server.
type sServer struct {
	addr string
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
}

func (s *sServer) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// startSServer starts openssl s_server on a free loopback port with the
// given certificate; it serves accepts connections with -www and exits.
// Ports are picked by listening and closing, so a busy port is retried.
func startSServer(t *testing.T, openssl, certPath, keyPath string, accepts int, extra ...string) *sServer {
	t.Helper()
	for attempt := 0; ; attempt++ {
		s, err := trySServer(t, openssl, certPath, keyPath, accepts, extra)
		if err == nil {
			return s
		}
		if attempt == 4 {
			t.Fatalf("openssl s_server did not start: %v", err)
		}
	}
}

func trySServer(t *testing.T, openssl, certPath, keyPath string, accepts int, extra []string) (*sServer, error) {
	addr := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), processTimeout)
	args := append([]string{"s_server", "-accept", addr, "-tls1_3", "-cert", certPath, "-key", keyPath,
		"-www", "-naccept", fmt.Sprint(accepts)}, extra...)
	cmd := exec.CommandContext(ctx, openssl, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	s := &sServer{addr: addr, done: make(chan struct{})}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			s.mu.Lock()
			s.out.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if !signalled && sc.Text() == "ACCEPT" {
				ready <- true
				signalled = true
			}
		}
		if !signalled {
			ready <- false
		}
		_ = cmd.Wait()
		close(s.done)
	}()
	if !<-ready {
		<-s.done
		cancel()
		return nil, fmt.Errorf("s_server on %s exited:\n%s", addr, s.output())
	}
	t.Cleanup(func() {
		cancel() // kills it if it has not exited by itself
		<-s.done
	})
	return s, nil
}

// httpGet sends a minimal HTTP request on conn and returns the response.
func httpGet(t *testing.T, conn net.Conn) string {
	t.Helper()
	require.NoError(t, conn.SetDeadline(time.Now().Add(processTimeout)))
	_, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n")
	require.NoError(t, err)
	resp, err := io.ReadAll(conn)
	if err != nil && !errors.Is(err, io.EOF) {
		// s_server may close without close_notify.
		t.Logf("reading the response: %v", err)
	}
	return string(resp)
}

// TestOpenSSLServer makes an atls client (and the Python verifier, which
// connects by itself) talk to openssl s_server serving a certgen
// certificate; with -Verify 1, openssl asks for a client certificate and
// the atls client presents a static one.
func TestOpenSSLServer(t *testing.T) {
	openssl := tool(t, "openssl")
	requirePython(t)
	dir := t.TempDir()
	certPath, keyPath := writePEM(t, dir, "server", issue(t, attest.RoleServer, attest.ModeStatic, [attest.NonceSize]byte{}))

	t.Run("one-way", func(t *testing.T) {
		s := startSServer(t, openssl, certPath, keyPath, 2)
		client, err := atls.NewClient(atls.ClientOptions{Verifier: goVerifier(t, nil), AcceptStatic: true})
		require.NoError(t, err)
		conn, err := client.DialContext(context.Background(), "tcp", s.addr)
		require.NoError(t, err)
		claims, ok := client.PeerClaims(conn.ConnectionState())
		require.True(t, ok)
		require.Equal(t, attest.RoleServer, claims.Role)
		require.Equal(t, attest.ModeStatic, claims.Mode)
		resp := httpGet(t, conn)
		_ = conn.Close()
		require.Contains(t, resp, "no client certificate available")

		// The Python verifier as a TLS client of openssl: it offers a
		// nonce in ALPN, which openssl ignores, so it gets the static
		// certificate.
		py := runPython(t, pyRequest{connect: s.addr, role: "server", acceptStatic: true})
		require.Empty(t, py.Check, py.Line)
		require.Equal(t, "static", py.Claims["mode"])
		require.Equal(t, claimsJSON(t, claims)["snp"], py.Claims["snp"])
	})

	t.Run("mutual", func(t *testing.T) {
		s := startSServer(t, openssl, certPath, keyPath, 1, "-Verify", "1")
		client, err := atls.NewClient(atls.ClientOptions{
			Verifier: goVerifier(t, nil), AcceptStatic: true,
			Attester: simAttester(t), StaticFallback: true,
		})
		require.NoError(t, err)
		conn, err := client.DialContext(context.Background(), "tcp", s.addr)
		require.NoError(t, err)
		resp := httpGet(t, conn)
		_ = conn.Close()
		// openssl completed the handshake with our certificate, and shows
		// it; it verifies as a static client certificate.
		der := firstPEM(t, resp, "Client certificate")
		path := filepath.Join(t.TempDir(), "client.der")
		require.NoError(t, os.WriteFile(path, der, 0o600))
		py := runPython(t, pyRequest{cert: path, role: "client", acceptStatic: true})
		require.Empty(t, py.Check, py.Line)
		require.Equal(t, "client", py.Claims["role"])
		require.Equal(t, "static", py.Claims["mode"])
	})

	t.Run("tampered", func(t *testing.T) {
		good := issue(t, attest.RoleServer, attest.ModeStatic, [attest.NonceSize]byte{})
		bad, err := vectors.TamperReport(good)
		require.NoError(t, err)
		badCert, badKey := writePEM(t, t.TempDir(), "tampered", bad)
		s := startSServer(t, openssl, badCert, badKey, 2)

		client, err := atls.NewClient(atls.ClientOptions{Verifier: goVerifier(t, nil), AcceptStatic: true})
		require.NoError(t, err)
		_, err = client.DialContext(context.Background(), "tcp", s.addr)
		require.Error(t, err)
		require.Equal(t, "snp.report.signature", attest.FailedCheck(err), "%v", err)

		py := runPython(t, pyRequest{connect: s.addr, role: "server", acceptStatic: true})
		require.Equal(t, "snp.report.signature", py.Check, py.Line)
		py = runPython(t, pyRequest{cert: badCert, role: "server", acceptStatic: true})
		require.Equal(t, "snp.report.signature", py.Check, py.Line)
	})
}

// nodeClient is a Node.js TLS client: it connects with TLS 1.3, offers the
// ALPN protocols given, and writes the server's certificate (DER) to a
// file.
const nodeClient = `
const tls = require('tls');
const fs = require('fs');
const [host, port, out, alpn] = process.argv.slice(2);
const sock = tls.connect({
  host, port: Number(port), rejectUnauthorized: false, minVersion: 'TLSv1.3',
  ALPNProtocols: alpn ? [alpn] : undefined,
}, () => {
  fs.writeFileSync(out, sock.getPeerCertificate().raw);
  console.log(JSON.stringify({protocol: sock.getProtocol(), alpn: sock.alpnProtocol}));
  sock.end();
});
sock.setTimeout(20000, () => { console.error('timeout'); process.exit(3); });
sock.on('error', (e) => { console.error(e.message); process.exit(2); });
sock.on('data', () => {});
`

// TestNodeClient connects Node.js to an attested atls server, with the
// nonce in ALPN and without, and verifies what it received in Python.
func TestNodeClient(t *testing.T) {
	node := tool(t, "node")
	requirePython(t)
	srv, err := atls.NewServer(atls.ServerOptions{Attester: simAttester(t), StaticFallback: true})
	require.NoError(t, err)
	addr, results := serveTLS(t, srv.TLSConfig(), nil, "atls ok\n")
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	script := filepath.Join(t.TempDir(), "client.js")
	require.NoError(t, os.WriteFile(script, []byte(nodeClient), 0o600))

	for _, withNonce := range []bool{true, false} {
		t.Run(map[bool]string{true: "nonce", false: "static"}[withNonce], func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "peer.der")
			nonce, alpn := "", ""
			if withNonce {
				nonce = newNonceHex(t)
				alpn = atls.NoncePrefix + nonce
			}
			stdout, stderr, code := run(t, "", node, script, host, port, out, alpn)
			require.Equal(t, 0, code, "node:\n%s\n%s", stdout, stderr)
			require.NoError(t, nextResult(t, results).err)
			// The server negotiated no protocol: the nonce entry is never
			// selected.
			require.JSONEq(t, `{"protocol":"TLSv1.3","alpn":false}`, stdout)
			der, err := os.ReadFile(out)
			require.NoError(t, err)
			checkServerCert(t, der, nonce)
		})
	}
}

// TestPythonClient has the Python verifier connect to an attested atls
// server that requires a nonce: it sends one in ALPN (SPEC section 5) and
// checks the nonce-bound certificate it gets.
func TestPythonClient(t *testing.T) {
	requirePython(t)
	srv, err := atls.NewServer(atls.ServerOptions{Attester: simAttester(t)})
	require.NoError(t, err)
	addr, results := serveTLS(t, srv.TLSConfig(), nil, "")
	nonce := newNonceHex(t)
	py := runPython(t, pyRequest{connect: addr, role: "server", nonce: nonce})
	require.Empty(t, py.Check, py.Line)
	require.NoError(t, nextResult(t, results).err)
	require.Contains(t, []any{"nonce", "batch"}, py.Claims["mode"])

	// Without --nonce, the verifier draws one itself.
	py = runPython(t, pyRequest{connect: addr, role: "server"})
	require.Empty(t, py.Check, py.Line)
	require.Contains(t, []any{"nonce", "batch"}, py.Claims["mode"])
	require.NoError(t, nextResult(t, results).err)
}
