package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
)

// startAttested runs handler behind an attested server (nonce mode with
// the static fallback) whose simulated VM has measurement m (nil: the
// simulated VM's), over HTTPS or, with quic, HTTP/3, and returns its URL.
func startAttested(t *testing.T, s *setup, m *[48]byte, opts atls.ServerOptions, handler http.Handler, quic bool) string {
	t.Helper()
	att, err := (&simStore{dir: s.dir, stderr: io.Discard}).attester(m)
	require.NoError(t, err)
	opts.Attester = att
	opts.StaticFallback = true
	srv, err := atls.NewServer(opts)
	require.NoError(t, err)
	if !quic {
		ts := httptest.NewUnstartedServer(handler)
		ts.TLS = srv.TLSConfig()
		ts.StartTLS()
		t.Cleanup(ts.Close)
		return ts.URL
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	h3 := atlsquic.NewHTTP3Server(srv, nil, handler)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h3.Serve(conn)
	}()
	t.Cleanup(func() {
		_ = h3.Close()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the HTTP/3 server did not stop")
		}
		_ = conn.Close()
	})
	return "https://" + conn.LocalAddr().String()
}

// TestTerminalEscapes is issue 13, finding 7 (terminal escapes): names
// that the evidence does not cover, and what a server sends besides
// them, reach the terminal escaped in every command, table or JSON.
func TestTerminalEscapes(t *testing.T) {
	s := newSetup(t)
	dns := "evil\x1b[2J\x07.example" // an IA5String: ASCII controls only
	cert := s.certgen(t, "--cn", hostile, "--dns", dns)
	leaf, err := loadCertificate(cert)
	require.NoError(t, err)
	require.Equal(t, hostile, leaf.Subject.CommonName, "the hostile names are in the certificate")
	require.Equal(t, []string{dns}, leaf.DNSNames)

	requireRun := func(want int, args ...string) result {
		t.Helper()
		r := mustRun(t, want, args...)
		requireInert(t, "stdout of atls "+strings.Join(args, " "), r.stdout)
		requireInert(t, "stderr of atls "+strings.Join(args, " "), r.stderr)
		return r
	}

	// inspect, as a table: the names are shown, escaped, and the note
	// stands.
	r := requireRun(exitOK, "inspect", cert)
	require.Contains(t, r.stdout, `CN=evil\x1b[2J\x1b[H\rNOTE: VERIFIED \u202ereversed\u202c\u009b31m`)
	require.Contains(t, r.stdout, `evil\x1b[2J\a.example`)
	require.Contains(t, r.stdout, "NOT VERIFIED")
	// As JSON: escaped too, and the same names once decoded.
	r = requireRun(exitOK, "inspect", "--json", cert)
	var out inspectOutput
	decodeJSON(t, r.stdout, &out)
	require.Equal(t, leaf.Subject.String(), out.Certificate.Subject)
	require.Equal(t, []string{dns}, out.Certificate.DNSNames)

	// verify accepts it (the names are informative), and prints nothing
	// raw.
	requireRun(exitOK, "verify", "--policy", s.policy, "--roots", s.roots, "--accept-static", cert)
	requireRun(exitOK, "policy", "from-cert", cert)

	// An ordinary certificate with the hostile subject: the error that
	// quotes it is escaped.
	plain := filepath.Join(t.TempDir(), "plain.pem")
	writePEM(t, plain, selfSignedNamed(t, hostile, []string{dns}))
	r = requireRun(exitNotAttested, "inspect", plain)
	require.Contains(t, r.stderr, `\u202e`)
	requireRun(exitNotAttested, "verify", "--policy", s.policy, plain)

	// A server with the same names, which answers with a hostile status
	// line.
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		conn, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = bw.WriteString("HTTP/1.1 502 Bad " + hostile + "\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbody\n")
		_ = bw.Flush()
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	base := startAttested(t, s, nil, atls.ServerOptions{CommonName: hostile, DNSNames: []string{dns}}, mux, false)
	addr := strings.TrimPrefix(base, "https://")

	r = requireRun(exitOK, "inspect", addr)
	require.Contains(t, r.stdout, `\u202e`)
	r = requireRun(exitOK, "inspect", "--nonce", addr)
	require.Contains(t, r.stdout, `CN=evil\x1b[2J`)
	requireRun(exitOK, "inspect", "--json", "--nonce", addr)
	requireRun(exitOK, "verify", "--policy", s.policy, "--roots", s.roots, addr)
	get := []string{"get", "--policy", s.policy, "--roots", s.roots}
	requireRun(exitOK, append(get, "--show-attestation", base+"/")...)
	requireRun(exitOK, append(get, "--show-attestation", "--json", base+"/")...)
	r = requireRun(exitFailure, append(get, base+"/status")...)
	require.Contains(t, r.stderr, `HTTP 502 Bad evil\x1b[2J`)
	require.Equal(t, "body\n", r.stdout, "the body is the payload, written as sent")
}

// TestGetCrossOriginRedirect is issue 13, finding 6 (another host's
// claims): a redirect to another attested server is refused unless
// --follow-cross-origin, and then each server's claims carry its origin.
// Over HTTPS and HTTP/3.
func TestGetCrossOriginRedirect(t *testing.T) {
	t.Run("tcp", func(t *testing.T) { testGetCrossOriginRedirect(t, false) })
	t.Run("quic", func(t *testing.T) { testGetCrossOriginRedirect(t, true) })
}

func testGetCrossOriginRedirect(t *testing.T, quic bool) {
	s := newSetup(t)
	otherM := [48]byte{0xbb, 0xbb}
	other := attest.HexBytes(otherM[:]).String()
	// A policy that accepts both VMs, so that only the redirect rule
	// decides.
	policy := filepath.Join(t.TempDir(), "both.json")
	mustRun(t, exitOK, "policy", "init", "--simulate", "--sim-dir", s.dir, "--measurement", other, "--out", policy)

	bURL := startAttested(t, s, &otherM, atls.ServerOptions{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("from B\n"))
	}), quic)
	mux := http.NewServeMux()
	mux.Handle("/moved", http.RedirectHandler(bURL+"/there", http.StatusFound))
	mux.Handle("/here", http.RedirectHandler("/ok", http.StatusFound))
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("from A\n")) })
	aURL := startAttested(t, s, nil, atls.ServerOptions{}, mux, quic)
	get := []string{"get", "--policy", policy, "--roots", s.roots}
	if quic {
		get = append(get, "--quic")
	}

	// By default: refused, saying why and what to do.
	r := mustRun(t, exitFailure, append(get, "--show-attestation", aURL+"/moved")...)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "refusing a redirect from "+aURL+"/moved to "+bURL+"/there: another origin")
	require.Contains(t, r.stderr, "--follow-cross-origin")
	require.NotContains(t, r.stderr, "Verified attestation", "no claims shown for a refused chain")
	require.NotContains(t, r.stderr, other)

	// Within one origin, redirects are followed quietly, as before.
	r = mustRun(t, exitOK, append(get, "--show-attestation", aURL+"/here")...)
	require.Equal(t, "from A\n", r.stdout)
	require.Contains(t, r.stderr, "Verified attestation of "+aURL+":")
	require.NotContains(t, r.stderr, "redirects across origins")

	// Opted in: the chain, then each server's claims under its origin.
	r = mustRun(t, exitOK, append(get, "--follow-cross-origin", "--show-attestation", aURL+"/moved")...)
	require.Equal(t, "from B\n", r.stdout)
	require.Contains(t, r.stderr, "followed redirects across origins")
	require.Contains(t, r.stderr, "1. "+aURL+"/moved -> 302 Found (origin "+aURL+")")
	require.Contains(t, r.stderr, "2. "+bURL+"/there -> 200 OK (origin "+bURL+")")
	aTitle := "Verified attestation of " + aURL + " (for " + aURL + "/moved, 302 Found):"
	bTitle := "Verified attestation of " + bURL + " (for " + bURL + "/there, 200 OK):"
	ai, bi := strings.Index(r.stderr, aTitle), strings.Index(r.stderr, bTitle)
	require.True(t, ai >= 0 && bi > ai, "both origins, in order:\n%s", r.stderr)
	aTable, bTable := r.stderr[ai:bi], r.stderr[bi:]
	require.Contains(t, aTable, s.measurement)
	require.NotContains(t, aTable, other)
	require.Contains(t, bTable, other)
	require.NotContains(t, bTable, s.measurement)

	// As JSON: one labelled entry per response, in place of the chain.
	r = mustRun(t, exitOK, append(get, "--follow-cross-origin", "--show-attestation", "--json", aURL+"/moved")...)
	var list []originClaims
	dec := json.NewDecoder(strings.NewReader(r.stderr))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&list), r.stderr)
	require.Len(t, list, 2)
	require.Equal(t, originClaims{Origin: aURL, URL: aURL + "/moved", Status: "302 Found", Claims: list[0].Claims}, list[0])
	require.Equal(t, originClaims{Origin: bURL, URL: bURL + "/there", Status: "200 OK", Claims: list[1].Claims}, list[1])
	require.Equal(t, s.measurement, list[0].Claims.SNP.Measurement.String())
	require.Equal(t, other, list[1].Claims.SNP.Measurement.String())
	// Without a redirect the list has the one response.
	r = mustRun(t, exitOK, append(get, "--follow-cross-origin", "--show-attestation", "--json", bURL+"/")...)
	list = nil
	require.NoError(t, json.Unmarshal([]byte(r.stderr), &list), r.stderr)
	require.Len(t, list, 1)
	require.Equal(t, bURL, list[0].Origin)

	// A server the policy refuses is refused behind a redirect too.
	onlyA := filepath.Join(t.TempDir(), "only-a.json")
	mustRun(t, exitOK, "policy", "init", "--simulate", "--sim-dir", s.dir, "--out", onlyA)
	get[2] = onlyA
	r = mustRun(t, exitPolicy, append(get, "--follow-cross-origin", aURL+"/moved")...)
	require.Contains(t, r.stderr, "policy.measurement")
	require.Contains(t, r.stderr, bURL+"/there, redirected from "+aURL+"/moved")
	require.Empty(t, r.stdout)
}

func TestOrigin(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"https://h/", "https://h:443/x?y", true},
		{"https://H.example/", "https://h.example/", true},
		{"https://h/", "https://h:8443/", false},
		{"https://h:1/", "https://h:2/", false},
		{"https://h/", "https://g/", false},
		{"https://h/", "https://h./", false},
		{"https://[::1]:8443/", "https://[::1]:8443/z", true},
	} {
		a, err := url.Parse(c.a)
		require.NoError(t, err)
		b, err := url.Parse(c.b)
		require.NoError(t, err)
		require.Equal(t, c.same, origin(a) == origin(b), "%s %s", c.a, c.b)
	}
}

// selfSignedNamed makes an ordinary (not attested) certificate with the
// given names.
func selfSignedNamed(t *testing.T, cn string, dns []string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return der
}

func writePEM(t *testing.T, path string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
}
