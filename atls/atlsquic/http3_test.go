package atlsquic_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
	"github.com/confidential-go/atls/internal/atlstest"
)

// h3Server is what serveHTTP3 needs of an *http3.Server or an
// *atlsquic.HTTP3Server.
type h3Server interface {
	Serve(net.PacketConn) error
	Close() error
}

// serveHTTP3 serves s on a loopback UDP socket and returns its URL.
func serveHTTP3(t *testing.T, s h3Server) string {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(pc)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		_ = pc.Close()
		<-done
	})
	return "https://" + pc.LocalAddr().String() + "/"
}

func get(ctx context.Context, hc *http.Client, url string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// claimsHandler answers with the measurement of the verified client, or
// "anonymous" for a server that verifies no client.
func claimsHandler(srv *atls.Server, calls *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if c, ok := srv.RequestClaims(r); ok {
			_, _ = io.WriteString(w, c.SNP.Measurement.String())
			return
		}
		_, _ = io.WriteString(w, "anonymous")
	})
}

func TestHTTP3(t *testing.T) {
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("mutual", func(t *testing.T) {
		srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
		var calls atomic.Int64
		url := serveHTTP3(t, atlsquic.NewHTTP3Server(srv, nil, claimsHandler(srv, &calls)))
		cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
		tr := atlsquic.HTTP3Transport(cli, nil)
		defer tr.Close()
		hc := &http.Client{Transport: tr}
		for i := range 3 {
			if i == 2 {
				// A new connection, so a new configuration and nonce.
				tr.CloseIdleConnections()
			}
			resp, body, err := get(ctx, hc, url)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			require.Equal(t, "HTTP/3.0", resp.Proto)
			require.Equal(t, attest.HexBytes(f.ClientMeasurement[:]).String(), body, "the handler read the client's claims with RequestClaims")
			claims, ok := cli.ResponseClaims(resp)
			require.True(t, ok)
			require.Equal(t, f.ServerMeasurement[:], []byte(claims.SNP.Measurement))
			require.Equal(t, attest.ModeBatch, claims.Mode, "servers batch nonce-bound certificates by default")
			require.Equal(t, http3.NextProtoH3, resp.TLS.NegotiatedProtocol)
		}
		require.Equal(t, int64(3), calls.Load())
	})

	t.Run("one-way-with-ListenAndServe", func(t *testing.T) {
		// The recommended start: Addr, then ListenAndServe (which keeps
		// TLSConfig and QUICConfig).
		srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
		var calls atomic.Int64
		h3 := atlsquic.NewHTTP3Server(srv, nil, claimsHandler(srv, &calls))
		h3.Addr = freeUDPAddr(t)
		done := make(chan error, 1)
		go func() { done <- h3.ListenAndServe() }()
		defer func() {
			_ = h3.Close()
			<-done
		}()
		cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
		tr := atlsquic.HTTP3Transport(cli, nil)
		defer tr.Close()
		var (
			resp *http.Response
			body string
			err  error
		)
		// ListenAndServe binds asynchronously: retry until it is up.
		for range 50 {
			if resp, body, err = get(ctx, &http.Client{Transport: tr}, "https://"+h3.Addr+"/"); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		require.NoError(t, err)
		require.Equal(t, "anonymous", body)
		claims, ok := cli.ResponseClaims(resp)
		require.True(t, ok, "the server was attested and verified")
		require.Equal(t, f.ServerMeasurement[:], []byte(claims.SNP.Measurement))
	})

	t.Run("ServeListener-with-Listen", func(t *testing.T) {
		srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
		var calls atomic.Int64
		h3 := atlsquic.NewHTTP3Server(srv, nil, claimsHandler(srv, &calls))
		ln, err := atlsquic.ListenAddr("127.0.0.1:0", srv, &tls.Config{NextProtos: []string{http3.NextProtoH3}}, nil)
		require.NoError(t, err)
		defer ln.Close()
		done := make(chan error, 1)
		go func() { done <- h3.ServeListener(ln) }()
		defer func() {
			_ = h3.Close()
			<-done
		}()
		cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
		tr := atlsquic.HTTP3Transport(cli, nil)
		defer tr.Close()
		resp, body, err := get(ctx, &http.Client{Transport: tr}, "https://"+ln.Addr().String()+"/")
		require.NoError(t, err)
		require.Equal(t, attest.HexBytes(f.ClientMeasurement[:]).String(), body)
		_, ok := cli.ResponseClaims(resp)
		require.True(t, ok)
	})

	t.Run("recipe-with-a-plain-http3.Server", func(t *testing.T) {
		// Without NewHTTP3Server: the hooked configuration as TLSConfig
		// (http3 sets NextProtos to h3, per connection too) and, above
		// all, a QUICConfig without 0-RTT.
		srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
		var calls atomic.Int64
		url := serveHTTP3(t, &http3.Server{
			TLSConfig:  srv.TLSConfig(),
			QUICConfig: atlsquic.QUICConfig(nil),
			Handler:    atlsquic.RequireHandshake(claimsHandler(srv, &calls)),
		})
		cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
		tr := atlsquic.HTTP3Transport(cli, nil)
		defer tr.Close()
		resp, body, err := get(ctx, &http.Client{Transport: tr}, url)
		require.NoError(t, err)
		require.Equal(t, attest.HexBytes(f.ClientMeasurement[:]).String(), body)
		_, ok := cli.ResponseClaims(resp)
		require.True(t, ok)
	})

	t.Run("static-fallback-plain-http3-client", func(t *testing.T) {
		srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, StaticFallback: true})
		var calls atomic.Int64
		url := serveHTTP3(t, atlsquic.NewHTTP3Server(srv, nil, claimsHandler(srv, &calls)))
		plain := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		defer plain.Close()
		resp, body, err := get(ctx, &http.Client{Transport: plain}, url)
		require.NoError(t, err)
		require.Equal(t, "anonymous", body)
		require.True(t, hasCMW(resp.TLS.PeerCertificates[0]), "even a client without a nonce gets evidence")

		// A verifying client that accepts static evidence could check it
		// offline; a nonce client gets a nonce-bound (batched) certificate.
		cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
		tr := atlsquic.HTTP3Transport(cli, nil)
		defer tr.Close()
		resp, _, err = get(ctx, &http.Client{Transport: tr}, url)
		require.NoError(t, err)
		claims, ok := cli.ResponseClaims(resp)
		require.True(t, ok)
		require.Equal(t, attest.ModeBatch, claims.Mode, "servers batch nonce-bound certificates by default")
	})
}

func freeUDPAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	addr := pc.LocalAddr().String()
	require.NoError(t, pc.Close())
	return addr
}

// With mutual attestation, a client that fails attestation never reaches
// the handler: not without evidence, not with the wrong image, not without
// ALPN nonce.
func TestHTTP3MutualRefusedClientsNeverReachHandler(t *testing.T) {
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, StaticFallback: true, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
	var calls atomic.Int64
	url := serveHTTP3(t, atlsquic.NewHTTP3Server(srv, nil, claimsHandler(srv, &calls)))

	// Evidence of another image (the server's), honestly bound to this
	// server's nonce.
	wrongImage := func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return atlstest.IssueForServerNonce(cri, f.ServerAttester, attest.RoleClient)
	}
	plainCert := atlstest.NewCA(t).Issue(t, "plain", x509.ExtKeyUsageClientAuth)
	clients := map[string]http.RoundTripper{
		"verifying but not attesting": atlsquic.HTTP3Transport(atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)}), nil),
		"attested, wrong image": atlsquic.HTTP3Transport(atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)}),
			&tls.Config{GetClientCertificate: wrongImage}),
		"plain http3 client": &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		"plain client with a certificate": &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &plainCert, nil }}},
	}
	for name, rt := range clients {
		t.Run(name, func(t *testing.T) {
			defer rt.(io.Closer).Close()
			resp, body, err := get(ctx, &http.Client{Transport: rt}, url)
			if err == nil {
				t.Fatalf("request served: %d %q", resp.StatusCode, body)
			}
		})
	}
	require.Zero(t, calls.Load(), "the handler was never invoked")

	// The same server serves an attested client.
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
	tr := atlsquic.HTTP3Transport(cli, nil)
	defer tr.Close()
	_, body, err := get(ctx, &http.Client{Transport: tr}, url)
	require.NoError(t, err)
	require.Equal(t, attest.HexBytes(f.ClientMeasurement[:]).String(), body)
}

// http3.Server.ListenAndServeTLS builds its TLS configuration from the two
// files and ignores TLSConfig: the attestation hooks do not run at all.
// This test pins that pitfall down (see the package documentation): a
// server configured for mutual attestation serves an unattested client.
func TestListenAndServeTLSBypassesAttestation(t *testing.T) {
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
	var calls atomic.Int64
	h3 := atlsquic.NewHTTP3Server(srv, nil, claimsHandler(srv, &calls))
	h3.Addr = freeUDPAddr(t)
	// The server NewHTTP3Server returns refuses it; the http3.Server
	// inside shows what it would do.
	atlstest.RequireCheck(t, h3.ListenAndServeTLS("cert.pem", "key.pem"), attest.ErrConfig, "quic.config")

	dir := t.TempDir()
	cert := atlstest.NewCA(t).Issue(t, "localhost", x509.ExtKeyUsageServerAuth)
	certPEM, keyPEM, err := certgen.EncodePEM(&cert)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600))
	done := make(chan error, 1)
	go func() {
		done <- h3.Server.ListenAndServeTLS(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	}()
	defer func() {
		_ = h3.Close()
		<-done
	}()

	plain := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer plain.Close()
	var body string
	for range 50 {
		if _, body, err = get(ctx, &http.Client{Transport: plain}, "https://"+h3.Addr+"/"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, err, "the unattested client was served")
	require.Equal(t, "anonymous", body)
	require.Equal(t, int64(1), calls.Load())

	// And a verifying client sees no evidence.
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	tr := atlsquic.HTTP3Transport(cli, nil)
	defer tr.Close()
	_, _, err = get(ctx, &http.Client{Transport: tr}, "https://"+h3.Addr+"/")
	atlstest.RequireCheck(t, err, attest.ErrNotAttested, "evidence.extension")
}

// zeroRTTCounter is a qlog trace that counts the 0-RTT packets a client
// sends.
type zeroRTTCounter struct{ sent atomic.Int64 }

func (z *zeroRTTCounter) AddProducer() qlogwriter.Recorder { return z }
func (z *zeroRTTCounter) Close() error                     { return nil }
func (z *zeroRTTCounter) RecordEvent(ev qlogwriter.Event) {
	if ps, ok := ev.(qlog.PacketSent); ok && ps.Header.PacketType == qlog.PacketType0RTT {
		z.sent.Add(1)
	}
}

func (z *zeroRTTCounter) config() *quic.Config {
	return &quic.Config{Tracer: func(context.Context, bool, quic.ConnectionID) qlogwriter.Trace { return z }}
}

// storeSignal is a session cache that says when a ticket was stored.
type storeSignal struct {
	tls.ClientSessionCache
	stored chan struct{}
}

func (s *storeSignal) Put(key string, cs *tls.ClientSessionState) {
	s.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case s.stored <- struct{}{}:
		default:
		}
	}
}

// TestZeroRTTNeverReachesHandler shows why 0-RTT is off, and that it is.
//
// Early data is sent with the ClientHello of a resumed session, so it is
// served before the client has appraised the server on this connection.
// A nonce-mode client refuses every resumed connection (the certificate
// in the session is bound to an old nonce), but by then its early request
// has been served. The test shows this against an http3.Server left with
// its default QUICConfig (0-RTT on): the client's verifier waits for the
// server's handler, and it comes. Against NewHTTP3Server, with the very
// same ticket (shared ticket key), the early data is refused and nothing
// reaches the handler. With 0-RTT forced back on (and static evidence, so
// that the resumed session is accepted), RequireHandshake answers 425
// instead of calling the handler.
//
// (On the server side crypto/tls runs VerifyConnection for a resumed
// session before quic-go reads any early data, so an attested client's
// early data never precedes the server's appraisal; with mutual nonce
// freshness resumed sessions are refused before that.)
func TestZeroRTTNeverReachesHandler(t *testing.T) {
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		handlerCalls atomic.Int64
		earlyCalls   atomic.Int64
		handlerIn    = make(chan struct{}, 16)
	)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlerCalls.Add(1)
		if r.TLS == nil || !r.TLS.HandshakeComplete {
			earlyCalls.Add(1)
		}
		select {
		case handlerIn <- struct{}{}:
		default:
		}
		_, _ = io.WriteString(w, "served")
	})

	// The client's verifier: before each appraisal, optionally wait for
	// the server's handler to be invoked, and record whether it was.
	var (
		hookMu           sync.Mutex
		waitForHandler   time.Duration
		handlerWasFirst  atomic.Int64
		verifierFailures atomic.Int64
	)
	cv := f.Verifier(t, f.ServerMeasurement)
	cv.Before = func() {
		hookMu.Lock()
		d := waitForHandler
		hookMu.Unlock()
		if d == 0 {
			return
		}
		select {
		case <-handlerIn:
			handlerWasFirst.Add(1)
		case <-time.After(d):
		}
	}
	setWait := func(d time.Duration) {
		hookMu.Lock()
		waitForHandler = d
		hookMu.Unlock()
		for len(handlerIn) > 0 {
			<-handlerIn
		}
	}
	// No verification cache: every appraisal, a resumed one too, reaches
	// the verifier and its hook.
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: &failureCounter{v: cv, failures: &verifierFailures},
		AcceptStatic: true, EnableResumption: true, CacheSize: -1})

	base := withTicketKey([32]byte{'0', 'r', 't', 't'})
	nonceSrv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, EnableResumption: true})
	// The hazard: an http3.Server with the hooked TLSConfig but the
	// default QUICConfig, that is 0-RTT on.
	unsafeBase := base.Clone()
	unsafeBase.NextProtos = []string{http3.NextProtoH3}
	unsafeURL := serveHTTP3(t, &http3.Server{TLSConfig: nonceSrv.Hook(unsafeBase), Handler: handler})
	safe := atlsquic.NewHTTP3Server(nonceSrv, base, handler)
	require.False(t, safe.QUICConfig.Allow0RTT)
	safeURL := serveHTTP3(t, safe)
	staticSrv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Freshness: atls.FreshnessStatic, EnableResumption: true})
	forced := atlsquic.NewHTTP3Server(staticSrv, base, handler)
	forced.QUICConfig = &quic.Config{Allow0RTT: true} // a mistake that RequireHandshake still catches
	forcedURL := serveHTTP3(t, forced)

	h3 := &http3.Transport{}
	hostOf := func(url string) string { return url[len("https://") : len(url)-1] }
	// dial dials with a fresh configuration using cache: with a ticket
	// in it, quic-go resumes and sends early data.
	dial := func(url string, cache tls.ClientSessionCache, qc *quic.Config) *quic.Conn {
		cfg, err := atlsquic.ClientConfig(cli, &tls.Config{NextProtos: []string{http3.NextProtoH3}, ServerName: "attested", ClientSessionCache: cache})
		require.NoError(t, err)
		conn, err := quic.DialAddrEarly(ctx, hostOf(url), cfg, qc)
		require.NoError(t, err)
		return conn
	}
	// ticket gets a session ticket that allows 0-RTT from the server at
	// url, with a full (successful) handshake.
	ticket := func(url string) *storeSignal {
		cache := &storeSignal{ClientSessionCache: tls.NewLRUClientSessionCache(4), stored: make(chan struct{}, 1)}
		setWait(0)
		conn := dial(url, cache, nil)
		defer conn.CloseWithError(0, "")
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		require.NoError(t, err)
		resp, err := h3.NewClientConn(conn).RoundTrip(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		select {
		case <-cache.stored:
		case <-ctx.Done():
			t.Fatal("no session ticket")
		}
		return cache
	}
	// early sends one GET in 0-RTT with cache's ticket.
	early := func(url string, cache tls.ClientSessionCache) (conn *quic.Conn, sent int64, status int) {
		var counter zeroRTTCounter
		conn = dial(url, cache, counter.config())
		req, err := http.NewRequestWithContext(ctx, http3.MethodGet0RTT, url, nil)
		require.NoError(t, err)
		if resp, err := h3.NewClientConn(conn).RoundTrip(req); err == nil {
			status = resp.StatusCode
			_ = resp.Body.Close()
		}
		return conn, counter.sent.Load(), status
	}
	refused := func(conn *quic.Conn) {
		t.Helper()
		select {
		case <-conn.Context().Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the resumed connection was not refused")
		}
		var ce *attest.CheckError
		require.ErrorAs(t, context.Cause(conn.Context()), &ce)
		require.Equal(t, "snp.report_data", ce.Check, "the session's certificate is bound to an old nonce")
	}

	// 1. The hazard is real.
	cache := ticket(unsafeURL)
	failures0 := verifierFailures.Load()
	setWait(5 * time.Second)
	conn, sent, _ := early(unsafeURL, cache)
	refused(conn)
	require.Positive(t, sent, "the client sent 0-RTT packets")
	require.Equal(t, int64(1), earlyCalls.Load(), "0-RTT on: the early request reached the handler before the handshake completed")
	require.Equal(t, int64(1), handlerWasFirst.Load(), "... and before the client had appraised the server")
	require.Equal(t, failures0+1, verifierFailures.Load(), "... which it then refused")

	// 2. NewHTTP3Server: the same attempt delivers nothing.
	cache = ticket(unsafeURL)
	calls0, failures0 := handlerCalls.Load(), verifierFailures.Load()
	setWait(time.Second)
	conn, sent, status := early(safeURL, cache)
	refused(conn)
	require.Positive(t, sent, "the client sent 0-RTT packets")
	require.Zero(t, status, "no response")
	require.Equal(t, calls0, handlerCalls.Load(), "nothing reached the handler")
	require.Equal(t, int64(1), handlerWasFirst.Load(), "nothing reached the handler before the appraisal")
	require.Equal(t, failures0+1, verifierFailures.Load(), "the resumed connection was appraised and refused")

	// 3. 0-RTT forced back on, with a resumed session the client accepts:
	// RequireHandshake answers 425 instead of calling the handler.
	cache = ticket(forcedURL)
	calls0 = handlerCalls.Load()
	// Hold the client's appraisal (and so its Finished) for a second, so
	// that the early request is certainly served before the handshake
	// completes; nothing reaches the handler, so the wait runs out.
	setWait(time.Second)
	conn, sent, status = early(forcedURL, cache)
	defer conn.CloseWithError(0, "")
	require.Positive(t, sent)
	require.True(t, conn.ConnectionState().Used0RTT, "the server accepted early data")
	require.True(t, conn.ConnectionState().TLS.DidResume)
	require.Equal(t, http.StatusTooEarly, status)
	require.Equal(t, calls0, handlerCalls.Load(), "nothing reached the handler")
	require.Equal(t, int64(1), earlyCalls.Load())
}

// failureCounter counts failed appraisals.
type failureCounter struct {
	v        attest.Verifier
	failures *atomic.Int64
}

func (c *failureCounter) Verify(ctx context.Context, ev *attest.Evidence, rd [64]byte) (*attest.Claims, error) {
	claims, err := c.v.Verify(ctx, ev, rd)
	if err != nil {
		c.failures.Add(1)
	}
	return claims, err
}

func TestConfigs(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})

	t.Run("0-RTT is refused", func(t *testing.T) {
		require.False(t, atlsquic.QUICConfig(nil).Allow0RTT)
		user := &quic.Config{Allow0RTT: true, GetConfigForClient: func(*quic.ClientInfo) (*quic.Config, error) {
			return &quic.Config{Allow0RTT: true}, nil
		}}
		qc := atlsquic.QUICConfig(user)
		require.False(t, qc.Allow0RTT)
		require.True(t, user.Allow0RTT, "the caller's configuration is not modified")
		per, err := qc.GetConfigForClient(&quic.ClientInfo{})
		require.NoError(t, err)
		require.False(t, per.Allow0RTT, "nor in per-client configurations")

		h3 := atlsquic.NewHTTP3Server(srv, nil, nil)
		require.NotNil(t, h3.QUICConfig, "http3.Server turns 0-RTT on when QUICConfig is nil")
		require.False(t, h3.QUICConfig.Allow0RTT)
		require.Equal(t, []string{http3.NextProtoH3}, h3.TLSConfig.NextProtos)
		require.Equal(t, uint16(tls.VersionTLS13), h3.TLSConfig.MinVersion)
		require.NotNil(t, h3.TLSConfig.GetConfigForClient)
	})

	t.Run("ALPN is required", func(t *testing.T) {
		for _, base := range []*tls.Config{nil, {}, {NextProtos: []string{atls.NoncePrefix + "00"}}} {
			_, err := atlsquic.ServerConfig(srv, base)
			atlstest.RequireCheck(t, err, attest.ErrConfig, "quic.alpn")
			_, err = atlsquic.ClientConfig(cli, base)
			atlstest.RequireCheck(t, err, attest.ErrConfig, "quic.alpn")
			_, err = atlsquic.ListenAddr("127.0.0.1:0", srv, base, nil)
			atlstest.RequireCheck(t, err, attest.ErrConfig, "quic.alpn")
			_, err = atlsquic.DialAddr(context.Background(), "127.0.0.1:1", cli, base, nil)
			atlstest.RequireCheck(t, err, attest.ErrConfig, "quic.alpn")
		}
		base := &tls.Config{NextProtos: []string{"p"}}
		cfg, err := atlsquic.ClientConfig(cli, base)
		require.NoError(t, err)
		require.Len(t, cfg.NextProtos, 2, "the application protocol, then the nonce")
		require.Equal(t, "p", cfg.NextProtos[0])
		require.Equal(t, []string{"p"}, base.NextProtos, "base is not modified")
	})

	t.Run("one nonce per connection", func(t *testing.T) {
		a, err := atlsquic.ClientConfig(cli, &tls.Config{NextProtos: []string{"p"}})
		require.NoError(t, err)
		b, err := atlsquic.ClientConfig(cli, &tls.Config{NextProtos: []string{"p"}})
		require.NoError(t, err)
		require.NotEqual(t, a.NextProtos[1], b.NextProtos[1])
	})
}

// A QUIC client that offers only the nonce cannot agree on an application
// protocol: the server refuses it by name, where over TCP the same client
// is served with no protocol (the behaviour of package atls).
func TestNonceOnlyALPN(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	nonceOnly := func(t *testing.T) clientSide {
		cfg, err := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)}).Hook(nil)
		require.NoError(t, err)
		require.Len(t, cfg.NextProtos, 1)
		return clientSide{raw: cfg}
	}
	base := &tls.Config{NextProtos: []string{"h3"}}

	o := tcpHandshake(t, serverSide{srv: srv, base: base}, nonceOnly(t))
	require.NoError(t, o.Client)
	require.NoError(t, o.Server)
	require.Equal(t, "", o.ClientCS.NegotiatedProtocol)

	o = quicHandshake(t, serverSide{srv: srv, base: base}, nonceOnly(t))
	require.Error(t, o.Client)
	atlstest.RequireCheck(t, o.Server, attest.ErrConfig, "tls.alpn")
}

// Raw QUIC: Listen/ListenAddr and Dial/DialAddr, claims from the
// connection state.
func TestRawQUIC(t *testing.T) {
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
	base := &tls.Config{NextProtos: []string{"echo/1"}}
	ln, err := atlsquic.ListenAddr("127.0.0.1:0", srv, base, nil)
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				str, err := conn.AcceptStream(context.Background())
				if err != nil {
					return
				}
				claims, ok := srv.PeerClaims(conn.ConnectionState().TLS)
				if ok {
					_, _ = io.WriteString(str, claims.SNP.Measurement.String())
				}
				_ = str.Close()
			}()
		}
	}()

	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
	check := func(t *testing.T, conn *quic.Conn) {
		defer conn.CloseWithError(0, "")
		require.Equal(t, "echo/1", conn.ConnectionState().TLS.NegotiatedProtocol)
		claims, ok := cli.PeerClaims(conn.ConnectionState().TLS)
		require.True(t, ok)
		require.Equal(t, f.ServerMeasurement[:], []byte(claims.SNP.Measurement))
		str, err := conn.OpenStreamSync(ctx)
		require.NoError(t, err)
		_, err = str.Write([]byte("?"))
		require.NoError(t, err)
		got, err := io.ReadAll(str)
		require.NoError(t, err)
		require.Equal(t, attest.HexBytes(f.ClientMeasurement[:]).String(), string(got))
	}
	t.Run("DialAddr", func(t *testing.T) {
		conn, err := atlsquic.DialAddr(ctx, ln.Addr().String(), cli, base, nil)
		require.NoError(t, err)
		check(t, conn)
	})
	t.Run("a configuration is for one connection, even cloned by quic-go", func(t *testing.T) {
		cfg, err := atlsquic.ClientConfig(cli, base)
		require.NoError(t, err)
		conn, err := quic.DialAddr(ctx, ln.Addr().String(), cfg, nil)
		require.NoError(t, err)
		check(t, conn)
		_, err = quic.DialAddr(ctx, ln.Addr().String(), cfg, nil)
		atlstest.RequireCheck(t, err, attest.ErrConfig, "nonce.reuse")
	})
	t.Run("Dial on a shared transport", func(t *testing.T) {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		tr := &quic.Transport{Conn: pc}
		defer tr.Close()
		for range 2 {
			conn, err := atlsquic.Dial(ctx, tr, ln.Addr(), cli, base, nil)
			require.NoError(t, err)
			check(t, conn)
		}
	})
}
