package atls_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
	"github.com/stretchr/testify/require"
)

// boundPair is a BoundListener serving an echo, and what it refused.
type boundPair struct {
	ln       *atls.BoundListener
	mu       sync.Mutex
	rejected []error
	accepted chan *atls.BoundConn
}

func newBoundServer(t *testing.T, opts atls.BoundListenerOptions) *boundPair {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &boundPair{accepted: make(chan *atls.BoundConn, 16)}
	opts.OnReject = func(_ net.Addr, err error) {
		p.mu.Lock()
		p.rejected = append(p.rejected, err)
		p.mu.Unlock()
	}
	p.ln, err = atls.NewBoundListener(inner, opts)
	require.NoError(t, err)
	t.Cleanup(func() { p.ln.Close() })
	go func() {
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			bc := c.(*atls.BoundConn)
			p.accepted <- bc
			go func() {
				defer bc.Close()
				_, _ = io.Copy(bc, bc)
			}()
		}
	}()
	return p
}

// waitRejected waits for the server to refuse n connections and returns
// the refusals.
func (p *boundPair) waitRejected(t *testing.T, n int) []error {
	t.Helper()
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.rejected) >= n
	}, 20*time.Second, 10*time.Millisecond)
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]error(nil), p.rejected...)
}

func boundDialer(t *testing.T, opts atls.BoundDialerOptions) *atls.BoundDialer {
	t.Helper()
	if opts.TLS == nil {
		opts.TLS = &tls.Config{InsecureSkipVerify: true}
	}
	d, err := atls.NewBoundDialer(opts)
	require.NoError(t, err)
	return d
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, msg, string(buf))
}

func TestBoundOneWayReusableDialer(t *testing.T) {
	f := atlstest.Get(t)
	srv := newBoundServer(t, atls.BoundListenerOptions{Bound: atls.BoundOptions{Attester: f.ServerAttester}})
	d := boundDialer(t, atls.BoundDialerOptions{Bound: atls.BoundOptions{Verifier: f.Verifier(t, f.ServerMeasurement)}})
	var digests [][]byte
	for i := 0; i < 3; i++ { // one dialer, one tls.Config, several connections
		c, err := d.DialContext(context.Background(), "tcp", srv.ln.Addr().String())
		require.NoError(t, err)
		claims, ok := atls.BoundClaims(c)
		require.True(t, ok)
		require.Equal(t, attest.ModeBound, claims.Mode)
		require.Equal(t, attest.RoleServer, claims.Role)
		require.Equal(t, f.ServerMeasurement[:], []byte(claims.SNP.Measurement))
		digests = append(digests, claims.EvidenceDigest)
		echo(t, c, "hello")
		c.Close()
		sc := <-srv.accepted
		require.Nil(t, sc.PeerClaims(), "the server requires no client evidence")
	}
	require.NotEqual(t, digests[0], digests[1], "each connection has its own evidence")
}

func TestBoundMutual(t *testing.T) {
	f := atlstest.Get(t)
	srv := newBoundServer(t, atls.BoundListenerOptions{Bound: atls.BoundOptions{
		Attester: f.ServerAttester, Verifier: f.Verifier(t, f.ClientMeasurement)}})
	d := boundDialer(t, atls.BoundDialerOptions{Bound: atls.BoundOptions{
		Attester: f.ClientAttester, Verifier: f.Verifier(t, f.ServerMeasurement)}})
	c, err := d.DialContext(context.Background(), "tcp", srv.ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	echo(t, c, "ping")
	sc := <-srv.accepted
	claims := sc.PeerClaims()
	require.NotNil(t, claims)
	require.Equal(t, attest.RoleClient, claims.Role)
	require.Equal(t, f.ClientMeasurement[:], []byte(claims.SNP.Measurement))
}

// An attested session on top of a CA-issued name: the client checks the
// certificate chain and the evidence.
func TestBoundOrdinaryPKI(t *testing.T) {
	f := atlstest.Get(t)
	ca := atlstest.NewCA(t)
	cert := ca.Issue(t, "service.test", x509.ExtKeyUsageServerAuth)
	srv := newBoundServer(t, atls.BoundListenerOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		Bound: atls.BoundOptions{Attester: f.ServerAttester}})
	d := boundDialer(t, atls.BoundDialerOptions{TLS: &tls.Config{RootCAs: ca.Pool, ServerName: "service.test"},
		Bound: atls.BoundOptions{Verifier: f.Verifier(t, f.ServerMeasurement)}})
	c, err := d.DialContext(context.Background(), "tcp", srv.ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	echo(t, c, "pki")
}

func TestBoundClientWithoutEvidenceRefused(t *testing.T) {
	f := atlstest.Get(t)
	srv := newBoundServer(t, atls.BoundListenerOptions{Bound: atls.BoundOptions{
		Attester: f.ServerAttester, Verifier: f.Verifier(t, f.ClientMeasurement)}})
	d := boundDialer(t, atls.BoundDialerOptions{Bound: atls.BoundOptions{Verifier: f.Verifier(t, f.ServerMeasurement)}})
	c, err := d.DialContext(context.Background(), "tcp", srv.ln.Addr().String())
	if err == nil {
		// The client's side may finish first; the server then closes.
		_, rerr := c.Read(make([]byte, 1))
		require.Error(t, rerr)
		c.Close()
	}
	errs := srv.waitRejected(t, 1)
	atlstest.RequireCheck(t, errs[0], attest.ErrNotAttested, "bound.missing")
	require.Empty(t, srv.accepted, "the application never saw the connection")
}

// rogueServer runs handle on each TLS connection it accepts, with a
// self-signed certificate: the tests' hostile peers.
func rogueServer(t *testing.T, cert tls.Certificate, handle func(tc *tls.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(raw, cfg)
				defer tc.Close()
				if tc.Handshake() == nil {
					handle(tc)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// boundFrame builds a frame as SPEC.md section 9 defines it.
func boundFrame(typ byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{typ, byte(n >> 16), byte(n >> 8), byte(n)}, payload...)
}

// evidenceFor makes the server attester's evidence for binding b, with a
// binding record claiming role and mode.
func evidenceFor(t *testing.T, att attest.Attester, b attest.BoundBinding, role attest.Role, mode attest.Mode) []byte {
	rd, err := b.ReportData()
	require.NoError(t, err)
	ev, err := att.Attest(context.Background(), rd)
	require.NoError(t, err)
	require.NoError(t, ev.SetBinding(role, mode))
	js, err := ev.MarshalJSON()
	require.NoError(t, err)
	return boundFrame(atls.BoundFrameEvidence, js)
}

func exporterOf(t *testing.T, tc *tls.Conn, role attest.Role) [32]byte {
	cs := tc.ConnectionState()
	ekm, err := cs.ExportKeyingMaterial(attest.ExporterLabel(role), nil, 32)
	require.NoError(t, err)
	return [32]byte(ekm)
}

func TestBoundAttacksTCP(t *testing.T) {
	f := atlstest.Get(t)
	genuine := newBoundServer(t, atls.BoundListenerOptions{Bound: atls.BoundOptions{Attester: f.ServerAttester}})
	verifier := f.Verifier(t, f.ServerMeasurement)

	// A relay: terminates the client's TLS, opens its own connection to a
	// genuine server and forwards the evidence frame it gets there.
	relay := func(tc *tls.Conn) {
		up, err := tls.Dial("tcp", genuine.ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if err != nil {
			return
		}
		defer up.Close()
		go func() { _, _ = io.Copy(up, tc) }()
		_, _ = io.Copy(tc, up)
	}
	// A recorded frame from an earlier connection between the same peers.
	var recorded []byte
	{
		up, err := tls.Dial("tcp", genuine.ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		require.NoError(t, err)
		hdr := make([]byte, 4)
		_, err = io.ReadFull(up, hdr)
		require.NoError(t, err)
		body := make([]byte, int(hdr[1])<<16|int(hdr[2])<<8|int(hdr[3]))
		_, err = io.ReadFull(up, body)
		require.NoError(t, err)
		recorded = append(hdr, body...)
		up.Close()
	}
	send := func(frame func(tc *tls.Conn) []byte) func(tc *tls.Conn) {
		return func(tc *tls.Conn) {
			_, _ = tc.Write(frame(tc))
			_, _ = io.Copy(io.Discard, tc)
		}
	}
	rogue := atlstest.NewCA(t).Issue(t, "rogue", x509.ExtKeyUsageServerAuth)
	withBinding := func(edit func(tc *tls.Conn, b *attest.BoundBinding), role attest.Role, mode attest.Mode) func(tc *tls.Conn) {
		return send(func(tc *tls.Conn) []byte {
			b := attest.BoundBinding{Role: attest.RoleServer, Exporter: exporterOf(t, tc, attest.RoleServer), LeafHash: sha256.Sum256(rogue.Certificate[0])}
			edit(tc, &b)
			return evidenceFor(t, f.ServerAttester, b, role, mode)
		})
	}
	keep := func(*tls.Conn, *attest.BoundBinding) {}
	var random [32]byte
	_, _ = rand.Read(random[:])

	cases := []struct {
		name   string
		handle func(tc *tls.Conn)
		kind   error
		check  string
	}{
		{"control: correct evidence", withBinding(keep, attest.RoleServer, attest.ModeBound), nil, ""},
		{"relay between two connections", relay, attest.ErrBinding, "snp.report_data"},
		{"replay of an earlier connection's evidence", send(func(*tls.Conn) []byte { return recorded }), attest.ErrBinding, "snp.report_data"},
		{"another exporter", withBinding(func(_ *tls.Conn, b *attest.BoundBinding) { b.Exporter = random }, attest.RoleServer, attest.ModeBound), attest.ErrBinding, "snp.report_data"},
		{"another leaf", withBinding(func(_ *tls.Conn, b *attest.BoundBinding) { b.LeafHash = random }, attest.RoleServer, attest.ModeBound), attest.ErrBinding, "snp.report_data"},
		{"client-role exporter label", withBinding(func(tc *tls.Conn, b *attest.BoundBinding) { b.Exporter = exporterOf(t, tc, attest.RoleClient) }, attest.RoleServer, attest.ModeBound), attest.ErrBinding, "snp.report_data"},
		{"another role in the report", withBinding(func(_ *tls.Conn, b *attest.BoundBinding) { b.Role = attest.RoleClient }, attest.RoleServer, attest.ModeBound), attest.ErrBinding, "snp.report_data"},
		{"another role in the binding record", withBinding(keep, attest.RoleClient, attest.ModeBound), attest.ErrBinding, "binding.role"},
		{"nonce-mode binding record", withBinding(keep, attest.RoleServer, attest.ModeNonce), attest.ErrBinding, "bound.mode"},
		{"no evidence", send(func(*tls.Conn) []byte { return boundFrame(atls.BoundFrameNoEvidence, nil) }), attest.ErrNotAttested, "bound.missing"},
		{"closed without a frame", func(*tls.Conn) {}, attest.ErrNotAttested, "bound.missing"},
		{"application data first (late evidence)", send(func(*tls.Conn) []byte { return []byte("HTTP/1.1 200 OK\r\n\r\n") }), attest.ErrMalformedEvidence, "bound.frame"},
		{"unknown frame type", send(func(*tls.Conn) []byte { return boundFrame(0x7f, []byte("x")) }), attest.ErrMalformedEvidence, "bound.frame"},
		{"truncated frame", func(tc *tls.Conn) { _, _ = tc.Write(boundFrame(atls.BoundFrameEvidence, make([]byte, 100))[:50]) }, attest.ErrMalformedEvidence, "bound.frame"},
		{"oversized frame", send(func(*tls.Conn) []byte { return []byte{atls.BoundFrameEvidence, 0xff, 0xff, 0xff} }), attest.ErrMalformedEvidence, "bound.frame_size"},
		{"not JSON", send(func(*tls.Conn) []byte { return boundFrame(atls.BoundFrameEvidence, []byte("{")) }), attest.ErrMalformedEvidence, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := rogueServer(t, rogue, tc.handle)
			d := boundDialer(t, atls.BoundDialerOptions{Bound: atls.BoundOptions{Verifier: verifier, Timeout: 20 * time.Second}})
			c, err := d.DialContext(context.Background(), "tcp", addr)
			if tc.kind == nil {
				require.NoError(t, err)
				c.Close()
				return
			}
			require.Nil(t, c, "no connection is handed over")
			require.ErrorIs(t, err, tc.kind, "error: %v", err)
			if tc.check != "" {
				atlstest.RequireCheck(t, err, tc.kind, tc.check)
			} else {
				require.NotEmpty(t, attest.FailedCheck(err), "error: %v", err)
			}
		})
	}
}

// A server that echoes the client's own evidence back: both the binding
// record (role) and, with that record rewritten, the report (role byte and
// exporter label) refuse it.
func TestBoundReflectionRejected(t *testing.T) {
	f := atlstest.Get(t)
	rogue := atlstest.NewCA(t).Issue(t, "rogue", x509.ExtKeyUsageServerAuth)
	reflect := func(rewrite bool) func(tc *tls.Conn) {
		return func(tc *tls.Conn) {
			hdr := make([]byte, 4)
			if _, err := io.ReadFull(tc, hdr); err != nil {
				return
			}
			body := make([]byte, int(hdr[1])<<16|int(hdr[2])<<8|int(hdr[3]))
			if _, err := io.ReadFull(tc, body); err != nil {
				return
			}
			if rewrite {
				ev, err := attest.ParseCollection(body)
				if err != nil {
					return
				}
				_ = ev.SetBinding(attest.RoleServer, attest.ModeBound)
				body, _ = ev.MarshalJSON()
			}
			_, _ = tc.Write(boundFrame(hdr[0], body))
			_, _ = io.Copy(io.Discard, tc)
		}
	}
	// The client's verifier accepts the client's own measurement, so only
	// the binding can refuse the reflected evidence.
	v := f.Verifier(t, f.ClientMeasurement)
	for _, tc := range []struct {
		rewrite bool
		check   string
	}{{false, "binding.role"}, {true, "snp.report_data"}} {
		addr := rogueServer(t, rogue, reflect(tc.rewrite))
		d := boundDialer(t, atls.BoundDialerOptions{Bound: atls.BoundOptions{Attester: f.ClientAttester, Verifier: v}})
		c, err := d.DialContext(context.Background(), "tcp", addr)
		require.Nil(t, c)
		atlstest.RequireCheck(t, err, attest.ErrBinding, tc.check)
	}
}

// Client-side attacks against a BoundListener: the application's Accept
// never returns the connection.
func TestBoundServerRefusesUnverifiedClients(t *testing.T) {
	f := atlstest.Get(t)
	srv := newBoundServer(t, atls.BoundListenerOptions{Bound: atls.BoundOptions{
		Attester: f.ServerAttester, Verifier: f.Verifier(t, f.ClientMeasurement), Timeout: 2 * time.Second}})
	dial := func(t *testing.T, first []byte) {
		tc, err := tls.Dial("tcp", srv.ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		require.NoError(t, err)
		defer tc.Close()
		if first != nil {
			_, _ = tc.Write(first)
		}
		// The server closes the connection after refusing it.
		_, _ = io.Copy(io.Discard, tc)
	}
	cases := []struct {
		name  string
		first []byte
		kind  error
		check string
	}{
		{"application data first", []byte("GET / HTTP/1.1\r\n\r\n"), attest.ErrMalformedEvidence, "bound.frame"},
		{"oversized frame", []byte{atls.BoundFrameEvidence, 0x10, 0, 0}, attest.ErrMalformedEvidence, "bound.frame_size"},
		{"no evidence", boundFrame(atls.BoundFrameNoEvidence, nil), attest.ErrNotAttested, "bound.missing"},
		{"silence", nil, attest.ErrNotAttested, "bound.timeout"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dial(t, tc.first)
			errs := srv.waitRejected(t, i+1)
			atlstest.RequireCheck(t, errs[i], tc.kind, tc.check)
			require.Empty(t, srv.accepted)
		})
	}
}

func TestBoundOptionsRefused(t *testing.T) {
	f := atlstest.Get(t)
	_, err := atls.NewBoundDialer(atls.BoundDialerOptions{})
	atlstest.RequireCheck(t, err, attest.ErrConfig, "bound.options")
	_, err = atls.NewBoundDialer(atls.BoundDialerOptions{TLS: &tls.Config{InsecureSkipVerify: true},
		Bound: atls.BoundOptions{Attester: f.ClientAttester}})
	atlstest.RequireCheck(t, err, attest.ErrConfig, "bound.options")
	_, err = atls.NewBoundDialer(atls.BoundDialerOptions{TLS: &tls.Config{MaxVersion: tls.VersionTLS12},
		Bound: atls.BoundOptions{Verifier: f.Verifier(t, f.ServerMeasurement)}})
	atlstest.RequireCheck(t, err, attest.ErrConfig, "bound.options")
}
