package atlsquic_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/asn1"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
	"github.com/confidential-go/atls/internal/atlstest"
)

// Interoperability over QUIC with a stack that is not quic-go: the example
// client and server of ngtcp2 (GnuTLS flavour) that Debian ships in the
// packages ngtcp2-client (gtlsclient) and ngtcp2-server (gtlsserver):
//
//	apt-get install -y ngtcp2-client ngtcp2-server
//
// Neither sends an atls nonce, so the attested side uses static evidence.

const ngtcp2Timeout = 20 * time.Second

func lookNgtcp2(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	// gtlsserver lives in /usr/sbin, which not every PATH holds.
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		if p, err := exec.LookPath(filepath.Join(dir, name)); err == nil {
			return p
		}
	}
	t.Skipf("%s not found (apt-get install -y ngtcp2-client ngtcp2-server): %v", name, err)
	return ""
}

// bufferWriter is a goroutine-safe output sink for a process.
type bufferWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *bufferWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *bufferWriter) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// handshakeBytes collects the bytes of the Handshake-level CRYPTO data
// that gtlsclient dumps (in order) when it is not quiet: the server's
// EncryptedExtensions, Certificate, CertificateVerify and Finished. Each
// chunk is a hexdump -C style dump: "offset  16 bytes in hex  |ascii|",
// "*" for repeats of the previous line, and the length on the last line.
func handshakeBytes(t *testing.T, out string) []byte {
	t.Helper()
	var (
		data, chunk, last []byte
		in                bool
	)
	fill := func(off uint64) {
		for uint64(len(chunk)) < off && len(last) > 0 {
			chunk = append(chunk, last[:min(len(last), int(off)-len(chunk))]...)
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Ordered CRYPTO data in ") {
			in = strings.Contains(line, "Handshake")
			chunk, last = nil, nil
			continue
		}
		if !in || line == "*" {
			continue
		}
		// "00000010  2e 65 7d 57 52 62 87 8c  98 19 b1 45 b7 d4 fc f1  |.e}WRb.....E....|"
		offHex, rest, _ := strings.Cut(line, "  ")
		off, err := strconv.ParseUint(offHex, 16, 32)
		if err != nil || len(offHex) != 8 {
			in = false // not a dump line: the dump is over
			continue
		}
		fill(off)
		if rest == "" { // the closing length
			data = append(data, chunk...)
			in = false
			continue
		}
		hexPart, _, _ := strings.Cut(rest, "|")
		last = nil
		for _, f := range strings.Fields(hexPart) {
			b, err := hex.DecodeString(f)
			require.NoError(t, err, "dump line %q", line)
			last = append(last, b...)
		}
		chunk = append(chunk, last...)
	}
	require.NoError(t, sc.Err())
	return data
}

// (a) ngtcp2's client fetches from our attested HTTP/3 server.
func TestNgtcp2ClientFetchesFromAttestedServer(t *testing.T) {
	client := lookNgtcp2(t, "gtlsclient")
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), ngtcp2Timeout)
	defer cancel()

	// Nonce freshness for clients that send a nonce, static evidence for
	// the others, such as ngtcp2.
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, StaticFallback: true})
	var served atomic.Int64
	var userAgent atomic.Value
	url := serveHTTP3(t, atlsquic.NewHTTP3Server(srv, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		userAgent.Store(r.UserAgent())
		_, _ = w.Write([]byte("attested hello\n"))
	})))
	host, port, err := net.SplitHostPort(strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "/"))
	require.NoError(t, err)

	dir := t.TempDir()
	out := &bufferWriter{}
	cmd := exec.CommandContext(ctx, client, "--exit-on-all-streams-close", "--timeout=10s",
		"--download="+dir, host, port, url+"index.html")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	require.NoError(t, err, "gtlsclient:\n%s", tail(out.String()))

	body, err := os.ReadFile(filepath.Join(dir, "index.html"))
	require.NoError(t, err, "gtlsclient:\n%s", tail(out.String()))
	require.Equal(t, "attested hello\n", string(body))
	require.Equal(t, int64(1), served.Load())
	require.Contains(t, userAgent.Load(), "ngtcp2", "the request came from ngtcp2")
	require.Contains(t, out.String(), "Negotiated ALPN is h3")

	// What a client without a nonce receives is the server's static
	// attested certificate; ngtcp2 received exactly that certificate,
	// with its id-pe-cmw extension.
	plain := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer plain.Close()
	resp, _, err := get(ctx, &http.Client{Transport: plain}, url)
	require.NoError(t, err)
	leaf := resp.TLS.PeerCertificates[0]
	require.True(t, hasCMW(leaf))
	atlstest.RequireBindingMode(t, leaf, attest.ModeStatic)

	hs := handshakeBytes(t, out.String())
	require.NotEmpty(t, hs, "gtlsclient dumped its handshake data")
	oid, err := asn1.Marshal(attest.OIDCMW)
	require.NoError(t, err)
	require.True(t, bytes.Contains(hs, oid), "the certificate ngtcp2 received carries id-pe-cmw")
	require.True(t, bytes.Contains(hs, leaf.Raw), "ngtcp2 received the server's static attested certificate")
}

// (b) Our verifying client fetches from ngtcp2's server, which serves a
// static attested certificate made by certgen.
func TestClientVerifiesNgtcp2Server(t *testing.T) {
	server := lookNgtcp2(t, "gtlsserver")
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), ngtcp2Timeout)
	defer cancel()

	dir := t.TempDir()
	cert, err := certgen.Issue(ctx, certgen.Request{Attester: f.ServerAttester, Role: attest.RoleServer, Mode: attest.ModeStatic, CommonName: "ngtcp2"})
	require.NoError(t, err)
	certPEM, keyPEM, err := certgen.EncodePEM(cert)
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	htdocs := filepath.Join(dir, "htdocs")
	require.NoError(t, os.Mkdir(htdocs, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(htdocs, "index.html"), []byte("hello from ngtcp2\n"), 0o600))

	addr := freeUDPAddr(t)
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	out := &bufferWriter{}
	cmd := exec.CommandContext(ctx, server, "--quiet", "--htdocs="+htdocs, host, port, keyFile, certFile)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()

	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true})
	tr := atlsquic.HTTP3Transport(cli, nil)
	defer tr.Close()
	var (
		resp *http.Response
		body string
	)
	// The server binds its socket asynchronously: retry until it answers.
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		resp, body, err = get(actx, &http.Client{Transport: tr}, "https://"+addr+"/index.html")
		acancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err, "gtlsserver:\n%s", tail(out.String()))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "hello from ngtcp2\n", body)
	require.Equal(t, http3.NextProtoH3, resp.TLS.NegotiatedProtocol, "GnuTLS picked h3 and ignored the nonce entry")
	require.Equal(t, cert.Leaf.Raw, resp.TLS.PeerCertificates[0].Raw)
	claims, ok := cli.ResponseClaims(resp)
	require.True(t, ok, "the client verified ngtcp2's certificate")
	require.Equal(t, attest.RoleServer, claims.Role)
	require.Equal(t, attest.ModeStatic, claims.Mode)
	require.Equal(t, f.ServerMeasurement[:], []byte(claims.SNP.Measurement))

	// A client that insists on a nonce refuses the same server.
	strict := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	st := atlsquic.HTTP3Transport(strict, nil)
	defer st.Close()
	_, _, err = get(ctx, &http.Client{Transport: st}, "https://"+addr+"/index.html")
	atlstest.RequireCheck(t, err, attest.ErrBinding, "binding.freshness")
}

// tail keeps the end of a process's output for failure messages.
func tail(s string) string {
	const n = 4000
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
