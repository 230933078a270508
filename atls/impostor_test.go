package atls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
	"github.com/confidential-go/atls/internal/atlstest"
)

// logRecorder is a slog.Handler that keeps every record, at every level.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// messages returns "LEVEL message" for every record so far.
func (l *logRecorder) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		out = append(out, r.Level.String()+" "+r.Message)
	}
	return out
}

func (l *logRecorder) has(level slog.Level, substr string) bool {
	for _, m := range l.messages() {
		if strings.HasPrefix(m, level.String()+" ") && strings.Contains(m, substr) {
			return true
		}
	}
	return false
}

// captured returns a genuine attested certificate with its key replaced
// by an unrelated key of the same type: what an impostor that recorded
// the certificate (but cannot read the key) presents.
func captured(t *testing.T, genuine *tls.Certificate) *tls.Certificate {
	t.Helper()
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	_, ok := genuine.PrivateKey.(*ecdsa.PrivateKey)
	require.True(t, ok, "the fixture issues ECDSA P-256 keys")
	return &tls.Certificate{Certificate: genuine.Certificate, PrivateKey: other, Leaf: genuine.Leaf}
}

// An impostor presenting a captured genuine certificate without its key
// passes the evidence check (which crypto/tls runs before it checks the
// CertificateVerify) and then fails the handshake: nothing may log it as
// attested or hand out its claims, and the failure is logged (issue 13,
// finding 5: impostor logged as attested).
func TestImpostorNotLoggedAsAttested(t *testing.T) {
	f := atlstest.Get(t)
	genuine, err := certgen.Issue(context.Background(), certgen.Request{
		Attester: f.ServerAttester, Role: attest.RoleServer, Mode: attest.ModeStatic, Validity: time.Hour,
	})
	require.NoError(t, err)
	impostor := captured(t, genuine)
	serve := func(t *testing.T, cert *tls.Certificate) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					s := tls.Server(c, maliciousServer(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }))
					_ = s.SetDeadline(time.Now().Add(20 * time.Second))
					_ = s.Handshake()
				}()
			}
		}()
		return ln.Addr().String()
	}

	t.Run("DialContext", func(t *testing.T) {
		var rec logRecorder
		cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true, Logger: slog.New(&rec)})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()

		_, err := cli.DialContext(ctx, "tcp", serve(t, impostor))
		require.Error(t, err, "the impostor cannot sign the CertificateVerify")
		msgs := rec.messages()
		for _, m := range msgs {
			require.NotContains(t, m, "peer attested", "logged: %q", msgs)
		}
		require.True(t, rec.has(slog.LevelDebug, "evidence verified, proof of possession pending"), "logged: %q", msgs)
		require.True(t, rec.has(slog.LevelWarn, "handshake failed after the server's evidence was verified"), "logged: %q", msgs)

		// The genuine holder of the same certificate is logged as attested.
		conn, err := cli.DialContext(ctx, "tcp", serve(t, genuine))
		require.NoError(t, err)
		defer conn.Close()
		require.True(t, rec.has(slog.LevelDebug, "atls: peer attested"), "logged: %q", rec.messages())
		_, ok := cli.PeerClaims(conn.ConnectionState())
		require.True(t, ok)
	})

	t.Run("PeerClaims", func(t *testing.T) {
		var rec logRecorder
		cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true, Logger: slog.New(&rec)})
		res := atlstest.Handshake(t, maliciousServer(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return impostor, nil }), clientConfig(t, cli, nil))
		require.Error(t, res.Client)
		require.False(t, res.ClientCS.HandshakeComplete)
		require.Equal(t, genuine.Certificate[0], res.ClientCS.PeerCertificates[0].Raw, "the impostor presented the genuine certificate")
		_, ok := cli.PeerClaims(res.ClientCS)
		require.False(t, ok, "claims of a failed handshake")
		for _, m := range rec.messages() {
			require.NotContains(t, m, "peer attested")
		}
		// What keeps them out is the completed handshake, which only the
		// key holder reaches: the verdict on the certificate itself stands.
		done := res.ClientCS
		done.HandshakeComplete = true
		_, ok = cli.PeerClaims(done)
		require.True(t, ok)
	})

	t.Run("mutual", func(t *testing.T) {
		// The same against a server: a client presenting a captured client
		// certificate.
		gc, err := certgen.Issue(context.Background(), certgen.Request{
			Attester: f.ClientAttester, Role: attest.RoleClient, Mode: attest.ModeStatic, Validity: time.Hour,
		})
		require.NoError(t, err)
		fake := captured(t, gc)
		var rec logRecorder
		srv := atlstest.NewServer(t, atls.ServerOptions{
			Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement),
			AcceptStaticClients: true, Logger: slog.New(&rec),
		})
		cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
		ccfg := clientConfig(t, cli, nil)
		ccfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return fake, nil }
		res := atlstest.Handshake(t, srv.TLSConfig(), ccfg)
		require.Error(t, res.Server)
		_, ok := srv.PeerClaims(res.ServerCS)
		require.False(t, ok)
		for _, m := range rec.messages() {
			require.NotContains(t, m, "peer attested")
		}
		require.True(t, rec.has(slog.LevelDebug, "evidence verified, proof of possession pending"), "logged: %q", rec.messages())
	})
}
