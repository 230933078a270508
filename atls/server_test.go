package atls_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
)

// heldAttester counts its calls, can hold every call until released, and
// can fail.
type heldAttester struct {
	inner   attest.Attester
	calls   atomic.Int64
	started chan struct{} // one send per call, when buffered room allows

	mu   sync.Mutex
	hold chan struct{} // when set, calls wait until it is closed
	err  error         // when set, calls fail with it
}

func newHeldAttester(inner attest.Attester) *heldAttester {
	return &heldAttester{inner: inner, started: make(chan struct{}, 1024)}
}

func (h *heldAttester) Attest(ctx context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	h.calls.Add(1)
	select {
	case h.started <- struct{}{}:
	default:
	}
	h.mu.Lock()
	hold, err := h.hold, h.err
	h.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	return h.inner.Attest(ctx, rd)
}

// holdCalls makes later calls wait; the returned function releases them.
func (h *heldAttester) holdCalls() (release func()) {
	ch := make(chan struct{})
	h.mu.Lock()
	h.hold = ch
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			h.hold = nil
			h.mu.Unlock()
			close(ch)
		})
	}
}

func (h *heldAttester) setErr(err error) {
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
}

// tcpServer runs handshakes of cfg on a loopback listener and reports
// each server-side result.
type tcpServer struct {
	addr    string
	results chan error
	// readHello, when set, is signalled once a connection has read at
	// least helloLen bytes (its ClientHello).
	helloLen  int
	helloRead chan struct{}
}

func startTCPServer(t *testing.T, cfg *tls.Config, helloLen int) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &tcpServer{addr: ln.Addr().String(), results: make(chan error, 256), helloLen: helloLen, helloRead: make(chan struct{}, 256)}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				rc := &readSignal{TCPConn: c.(*net.TCPConn), want: s.helloLen, signal: s.helloRead}
				sc := tls.Server(rc, cfg)
				_ = sc.SetDeadline(time.Now().Add(30 * time.Second))
				err := sc.Handshake()
				if err == nil {
					_, _ = sc.Write([]byte("x"))
				}
				s.results <- err
			}()
		}
	}()
	return s
}

// readSignal signals once want bytes have been read. It keeps the
// *net.TCPConn's SyscallConn, which the server's liveness check uses.
type readSignal struct {
	*net.TCPConn
	want, got int
	signal    chan struct{}
}

func (r *readSignal) Read(p []byte) (int, error) {
	n, err := r.TCPConn.Read(p)
	if r.want > 0 && r.got < r.want && r.got+n >= r.want {
		r.signal <- struct{}{}
	}
	r.got += n
	return n, err
}

// dialFrom makes one attested handshake from the local IP address from.
func dialFrom(t *testing.T, cli *atls.Client, from, addr string) error {
	cfg, err := cli.Hook(nil)
	if err != nil {
		return err
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	tc := tls.Client(c, cfg)
	_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		return err
	}
	_, err = io.ReadFull(tc, make([]byte, 1))
	return err
}

// waitErrors collects n server-side results, failing the test after a
// generous bound.
func waitErrors(t *testing.T, results chan error, n int) []error {
	t.Helper()
	var out []error
	for len(out) < n {
		select {
		case err := <-results:
			out = append(out, err)
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d handshakes ended: %v", len(out), n, out)
		}
	}
	return out
}

// Finding 2 (issue 13): the handshakes waiting for an attestation slot are
// bounded. Beyond the bound a handshake is refused at once with ErrBusy
// ("server.busy"), not parked for seconds.
func TestWaitersBoundedFinding2(t *testing.T) {
	f := atlstest.Get(t)
	h := newHeldAttester(f.ServerAttester)
	srv := atlstest.NewServer(t, atls.ServerOptions{
		Attester: h, DisableBatching: true,
		MaxConcurrentAttestations: 1, MaxWaitingAttestations: 2, MaxAttestationsPerSource: -1,
		MaxAttestationWait: time.Minute,
	})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	ts := startTCPServer(t, srv.TLSConfig(), 0)
	release := h.holdCalls()
	defer release()

	clientErrs := make(chan error, 6)
	go func() { clientErrs <- dialFrom(t, cli, "127.0.0.1", ts.addr) }()
	<-h.started // the one slot is taken
	for range 5 {
		go func() { clientErrs <- dialFrom(t, cli, "127.0.0.1", ts.addr) }()
	}
	// Two wait for the slot; three are refused while the attester is
	// still held.
	for _, err := range waitErrors(t, ts.results, 3) {
		atlstest.RequireCheck(t, err, attest.ErrBusy, "server.busy")
	}
	release()
	for _, err := range waitErrors(t, ts.results, 3) {
		require.NoError(t, err)
	}
	var failed int
	for range 6 {
		if <-clientErrs != nil {
			failed++
		}
	}
	require.Equal(t, 3, failed)
	require.Equal(t, int64(3), h.calls.Load())
}

// Finding 2 (issue 13): one source cannot fill the queue that every
// client shares.
func TestPerSourceBoundFinding2(t *testing.T) {
	f := atlstest.Get(t)
	h := newHeldAttester(f.ServerAttester)
	srv := atlstest.NewServer(t, atls.ServerOptions{
		Attester: h, DisableBatching: true,
		MaxConcurrentAttestations: 1, MaxWaitingAttestations: 8, MaxAttestationsPerSource: 2,
		MaxAttestationWait: time.Minute,
	})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	ts := startTCPServer(t, srv.TLSConfig(), 0)
	release := h.holdCalls()
	defer release()

	clientErrs := make(chan error, 4)
	go func() { clientErrs <- dialFrom(t, cli, "127.0.0.1", ts.addr) }()
	<-h.started
	for range 2 {
		go func() { clientErrs <- dialFrom(t, cli, "127.0.0.1", ts.addr) }()
	}
	// 127.0.0.1 has one handshake attesting and one waiting: the third is
	// refused at once.
	atlstest.RequireCheck(t, waitErrors(t, ts.results, 1)[0], attest.ErrBusy, "server.busy_source")
	// Another source still gets in line.
	go func() { clientErrs <- dialFrom(t, cli, "127.0.0.2", ts.addr) }()
	release()
	for _, err := range waitErrors(t, ts.results, 3) {
		require.NoError(t, err)
	}
	var failed int
	for range 4 {
		if <-clientErrs != nil {
			failed++
		}
	}
	require.Equal(t, 1, failed)
}

// recordClientHello returns the first TLS record a client configuration
// sends: its ClientHello, nonce included.
func recordClientHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		_ = tls.Client(a, cfg).Handshake()
	}()
	defer a.Close()
	defer b.Close()
	hdr := make([]byte, 5)
	_, err := io.ReadFull(b, hdr)
	require.NoError(t, err)
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	_, err = io.ReadFull(b, body)
	require.NoError(t, err)
	return append(hdr, body...)
}

// Finding 2 (issue 13): a replayed ClientHello whose connection is reset
// at once costs no attestation, even after waiting for a slot.
func TestDeadConnectionsCostNoAttestationFinding2(t *testing.T) {
	f := atlstest.Get(t)
	h := newHeldAttester(f.ServerAttester)
	srv := atlstest.NewServer(t, atls.ServerOptions{
		Attester: h, DisableBatching: true, MaxConcurrentAttestations: 1, MaxAttestationsPerSource: -1,
		MaxAttestationWait: time.Minute,
	})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	ccfg, err := cli.Hook(nil)
	require.NoError(t, err)
	hello := recordClientHello(t, ccfg)
	ts := startTCPServer(t, srv.TLSConfig(), len(hello))

	release := h.holdCalls()
	defer release()
	genuine := make(chan error, 1)
	go func() { genuine <- dialFrom(t, cli, "127.0.0.1", ts.addr) }()
	<-h.started
	<-ts.helloRead // the genuine client's

	const dead = 5
	for range dead {
		c, err := net.Dial("tcp", ts.addr)
		require.NoError(t, err)
		_, err = c.Write(hello)
		require.NoError(t, err)
		<-ts.helloRead // the server has read it and waits for a slot
		require.NoError(t, c.(*net.TCPConn).SetLinger(0))
		require.NoError(t, c.Close()) // reset
	}
	time.Sleep(50 * time.Millisecond) // let the resets land (not a bound)
	release()
	var gone int
	for _, err := range waitErrors(t, ts.results, dead+1) {
		if err != nil {
			atlstest.RequireCheck(t, err, attest.ErrBusy, "server.peer_gone")
			gone++
		}
	}
	require.Equal(t, dead, gone)
	require.NoError(t, <-genuine)
	require.Equal(t, int64(1), h.calls.Load(), "only the genuine handshake was attested")
}

// Finding 10 (issue 13): an attester failure on the nonce path falls back
// to the static certificate when the server has one (and says so in its
// log); without one, the server's log names the cause.
func TestAttesterFailureFallsBackFinding10(t *testing.T) {
	f := atlstest.Get(t)
	boom := errors.New("secure processor unavailable")
	for _, fallback := range []bool{true, false} {
		h := newHeldAttester(f.ServerAttester)
		var logBuf syncBuffer
		srv := atlstest.NewServer(t, atls.ServerOptions{
			Attester: h, StaticFallback: fallback,
			Logger: slog.New(slog.NewTextHandler(&logBuf, nil)),
		})
		h.setErr(boom)
		cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true})
		res := atlstest.Handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
		if fallback {
			require.NoError(t, res.Client)
			require.NoError(t, res.Server)
			atlstest.RequireBindingMode(t, res.ClientCS.PeerCertificates[0], attest.ModeStatic)
			require.Contains(t, logBuf.String(), "static certificate instead")
		} else {
			require.Error(t, res.Client)
			require.ErrorIs(t, res.Server, boom)
			require.Contains(t, logBuf.String(), "cannot serve an attested certificate")
		}
		require.Contains(t, logBuf.String(), boom.Error())
		require.Contains(t, logBuf.String(), "remote=127.0.0.1:")
	}
}

// Finding 11 (issue 13): the static certificate is issued by NewServer,
// so that a fallback never waits behind a saturated attester.
func TestStaticIssuedAtStartFinding11(t *testing.T) {
	f := atlstest.Get(t)
	h := newHeldAttester(f.ServerAttester)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: h, StaticFallback: true, DisableBatching: true, MaxConcurrentAttestations: 1})
	defer srv.Close()
	require.Equal(t, int64(1), h.calls.Load(), "NewServer issues the static certificate")
	<-h.started

	release := h.holdCalls()
	defer release()
	ts := startTCPServer(t, srv.TLSConfig(), 0)
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true})
	go func() { _ = dialFrom(t, cli, "127.0.0.1", ts.addr) }()
	<-h.started // the attester is now held by a nonce handshake

	// A client without a nonce gets the static certificate while the
	// attester stays held.
	res := atlstest.Handshake(t, srv.TLSConfig(), &tls.Config{InsecureSkipVerify: true})
	require.NoError(t, res.Client)
	atlstest.RequireBindingMode(t, res.ClientCS.PeerCertificates[0], attest.ModeStatic)
	require.Equal(t, int64(2), h.calls.Load())

	// A server whose attester fails cannot start with a static certificate.
	bad := newHeldAttester(f.ServerAttester)
	bad.setErr(errors.New("no device"))
	_, err := atls.NewServer(atls.ServerOptions{Attester: bad, Freshness: atls.FreshnessStatic})
	atlstest.RequireCheck(t, err, attest.ErrConfig, "server.static")
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Clone(s.b.String())
}

// dialMode makes one attested handshake and returns the freshness mode of
// the server's certificate.
func dialMode(cli *atls.Client, addr string) (attest.Mode, error) {
	cfg, err := cli.Hook(nil)
	if err != nil {
		return 0, err
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return 0, err
	}
	claims, ok := cli.PeerClaims(c.ConnectionState())
	if !ok {
		return 0, errors.New("no claims")
	}
	return claims.Mode, nil
}

// Issue 8: a nonce-mode server batches by default. Handshakes that arrive
// while a report is being made share the next one; each client still
// verifies its own nonce and key (mode batch). DisableBatching gives one
// report per handshake, mode nonce.
func TestServerBatchesByDefault(t *testing.T) {
	f := atlstest.Get(t)
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})

	h := newHeldAttester(f.ServerAttester)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: h})
	require.NotNil(t, srv.Batcher())
	ts := startTCPServer(t, srv.TLSConfig(), 0)
	release := h.holdCalls()
	defer release()
	const n = 9
	modes := make(chan attest.Mode, n)
	errs := make(chan error, n)
	dial := func() {
		m, err := dialMode(cli, ts.addr)
		modes <- m
		errs <- err
	}
	go dial()
	<-h.started // one report in flight
	for range n - 1 {
		go dial()
	}
	time.Sleep(300 * time.Millisecond) // let them queue (the count below allows stragglers)
	release()
	for range n {
		require.NoError(t, <-errs)
		require.Equal(t, attest.ModeBatch, <-modes)
	}
	require.Less(t, h.calls.Load(), int64(n), "handshakes shared reports")
	require.Equal(t, uint64(h.calls.Load()), srv.Batcher().Reports())

	// Unbatched: one report per handshake, mode nonce.
	u := newHeldAttester(f.ServerAttester)
	usrv := atlstest.NewServer(t, atls.ServerOptions{Attester: u, DisableBatching: true})
	require.Nil(t, usrv.Batcher())
	uts := startTCPServer(t, usrv.TLSConfig(), 0)
	for range 3 {
		m, err := dialMode(cli, uts.addr)
		require.NoError(t, err)
		require.Equal(t, attest.ModeNonce, m)
	}
	require.Equal(t, int64(3), u.calls.Load())
}

// Issue 8 with finding 2 (issue 13): a batching server bounds the
// handshakes waiting for a report by Batch.MaxPending; beyond it a
// handshake gets the static certificate at once (or fails with ErrBusy,
// check "batch.busy", without StaticFallback).
func TestBatchedServerBoundsPending(t *testing.T) {
	f := atlstest.Get(t)
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true})
	for _, fallback := range []bool{true, false} {
		h := newHeldAttester(f.ServerAttester)
		srv := atlstest.NewServer(t, atls.ServerOptions{Attester: h, StaticFallback: fallback,
			Batch: attest.BatcherOptions{MaxPending: 2}, MaxAttestationWait: time.Minute, MaxAttestationsPerSource: -1})
		if fallback {
			<-h.started // the static certificate, issued by NewServer
		}
		ts := startTCPServer(t, srv.TLSConfig(), 0)
		release := h.holdCalls()
		type result struct {
			mode attest.Mode
			err  error
		}
		results := make(chan result, 4)
		dial := func() {
			m, err := dialMode(cli, ts.addr)
			results <- result{m, err}
		}
		go dial()
		<-h.started // one report in flight, holding one of the two places
		for range 3 {
			go dial()
		}
		// One more waits; two are turned away while the report is held.
		for range 2 {
			r := <-results
			if fallback {
				require.NoError(t, r.err)
				require.Equal(t, attest.ModeStatic, r.mode)
			} else {
				require.Error(t, r.err)
			}
		}
		if !fallback {
			for _, err := range waitErrors(t, ts.results, 2) {
				atlstest.RequireCheck(t, err, attest.ErrBusy, "batch.busy")
			}
		}
		release()
		for range 2 {
			r := <-results
			require.NoError(t, r.err)
			require.Equal(t, attest.ModeBatch, r.mode, "fallback %v", fallback)
		}
	}
}
