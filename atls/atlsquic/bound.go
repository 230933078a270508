package atlsquic

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/quic-go/quic-go"
)

// Session-bound attestation over QUIC (interop/SPEC.md section 9): the
// client opens the connection's first bidirectional stream, the
// attestation stream, and both sides exchange their frames on it before the
// connection is handed to the application. The stream stays open for
// re-attestation: either side may send a request carrying a fresh nonce,
// and the other answers with evidence bound to the connection's exporter
// and that nonce. A failed exchange or re-attestation closes the
// connection with BoundErrorCode.

// BoundErrorCode is the QUIC application error code of a connection closed
// because a bound exchange or a re-attestation failed; the reason string
// names the check.
const BoundErrorCode quic.ApplicationErrorCode = 0xa75b

// ReattestOptions configure re-attestation of the peer of a BoundConn.
type ReattestOptions struct {
	// Interval is the time between re-attestations of the peer. 0: only
	// on demand (BoundConn.Reattest).
	Interval time.Duration
	// Timeout bounds one re-attestation, from the request to the verdict.
	// 0 means atls.DefaultBoundTimeout.
	Timeout time.Duration
	// OnFailure, when set, hears why a re-attestation failed, just before
	// the connection is closed. Nil: nothing is told but the peer.
	OnFailure func(err error)
}

// BoundListenerOptions configure ListenBound.
type BoundListenerOptions struct {
	// TLS must name the application protocol (NextProtos). It may hold one
	// certificate, or none (an ephemeral self-signed one is made);
	// GetCertificate and GetConfigForClient are refused, because the
	// evidence binds the certificate served. TLS 1.3 only, no tickets.
	TLS *tls.Config
	// QUIC may be nil; 0-RTT is always off.
	QUIC *quic.Config
	// Bound configures the exchange: Attester for the server's evidence,
	// Verifier to require attested clients.
	Bound atls.BoundOptions
	// Reattest configures re-attestation of clients (with a Verifier).
	Reattest ReattestOptions
	// OnReject, when set, is called with each connection refused and why.
	OnReject func(remote net.Addr, err error)
	// Logger receives one line per refused connection (Warn). Nil: none.
	Logger *slog.Logger
}

// BoundListener accepts QUIC connections whose bound exchange succeeded.
type BoundListener struct {
	ln    *Listener
	opts  BoundListenerOptions
	leaf  []byte
	ready chan *BoundConn
	done  chan struct{}
	once  sync.Once
}

// ListenBound listens on conn (validating source addresses first, as
// Listen does). It fails with ErrConfig (check "bound.options").
func ListenBound(conn net.PacketConn, opts BoundListenerOptions) (*BoundListener, error) {
	if err := checkBoundListener(&opts); err != nil {
		return nil, err
	}
	cfg, err := atls.BoundTLSConfig(opts.TLS, true)
	if err != nil {
		return nil, err
	}
	tr := NewTransport(conn)
	ln, err := tr.Listen(cfg, QUICConfig(opts.QUIC))
	if err != nil {
		tr.Close()
		return nil, err
	}
	l := &BoundListener{ln: &Listener{Listener: ln, tr: tr}, opts: opts, leaf: cfg.Certificates[0].Certificate[0],
		ready: make(chan *BoundConn), done: make(chan struct{})}
	go l.acceptLoop()
	return l, nil
}

func checkBoundListener(opts *BoundListenerOptions) error {
	bad := func(format string, args ...any) error {
		return attest.Fail(attest.ErrConfig, "bound.options", format, args...)
	}
	switch {
	case opts.TLS == nil || len(opts.TLS.NextProtos) == 0:
		return bad("QUIC needs an application protocol in TLS.NextProtos")
	case opts.TLS.GetCertificate != nil || opts.TLS.GetConfigForClient != nil:
		return bad("GetCertificate and GetConfigForClient are not supported in bound mode over QUIC")
	case len(opts.TLS.Certificates) > 1:
		return bad("at most one certificate in bound mode over QUIC")
	case opts.Bound.Attester == nil && opts.Bound.Verifier == nil:
		return bad("neither an Attester nor a Verifier: nothing to attest or verify")
	case opts.Reattest.Interval < 0 || opts.Reattest.Timeout < 0 || opts.Bound.Timeout < 0:
		return bad("negative duration")
	}
	return nil
}

func (l *BoundListener) acceptLoop() {
	for {
		qc, err := l.ln.Accept(context.Background())
		if err != nil {
			l.Close()
			return
		}
		go l.serve(qc)
	}
}

func (l *BoundListener) serve(qc *quic.Conn) {
	bc, err := l.establish(qc)
	if err != nil {
		_ = qc.CloseWithError(BoundErrorCode, attest.FailedCheck(err))
		if l.opts.OnReject != nil {
			l.opts.OnReject(qc.RemoteAddr(), err)
		}
		if l.opts.Logger != nil {
			l.opts.Logger.Warn("atls: bound exchange failed", slog.String("remote", qc.RemoteAddr().String()), slog.String("error", err.Error()))
		}
		return
	}
	select {
	case l.ready <- bc:
	case <-l.done:
		_ = qc.CloseWithError(BoundErrorCode, "listener closed")
	}
}

func (l *BoundListener) establish(qc *quic.Conn) (*BoundConn, error) {
	ctx, cancel := context.WithTimeout(qc.Context(), boundTimeout(&l.opts.Bound))
	defer cancel()
	if err := checkEarlyData(qc); err != nil {
		return nil, err
	}
	st, err := qc.AcceptStream(ctx)
	if err != nil {
		return nil, attest.Wrap(attest.ErrNotAttested, "bound.missing", err)
	}
	sess := &atls.BoundSession{Options: &l.opts.Bound, Role: attest.RoleServer, State: qc.ConnectionState().TLS, OwnLeaf: l.leaf}
	return startBound(ctx, qc, st, sess, l.opts.Reattest)
}

// Accept returns the next connection whose bound exchange succeeded.
func (l *BoundListener) Accept(ctx context.Context) (*BoundConn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close closes the listener, its transport and every connection on it.
func (l *BoundListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
	})
	return err
}

// Addr is the listener's address.
func (l *BoundListener) Addr() net.Addr { return l.ln.Addr() }

// BoundDialOptions configure DialBound.
type BoundDialOptions struct {
	// TLS must name the application protocol (NextProtos); it is
	// reusable across connections. To accept a self-signed server
	// certificate on the strength of the evidence alone, set
	// InsecureSkipVerify (refused without a Verifier).
	TLS *tls.Config
	// QUIC may be nil; 0-RTT is always off.
	QUIC *quic.Config
	// Bound configures the exchange: Verifier for the server's evidence,
	// Attester to attest this client.
	Bound atls.BoundOptions
	// Reattest configures re-attestation of the server (with a Verifier).
	Reattest ReattestOptions
}

// DialBound dials addr and returns the connection once the bound exchange
// on its attestation stream succeeded.
func DialBound(ctx context.Context, addr string, opts BoundDialOptions) (*BoundConn, error) {
	bad := func(format string, args ...any) (*BoundConn, error) {
		return nil, attest.Fail(attest.ErrConfig, "bound.options", format, args...)
	}
	switch {
	case opts.TLS == nil || len(opts.TLS.NextProtos) == 0:
		return bad("QUIC needs an application protocol in TLS.NextProtos")
	case opts.Bound.Attester == nil && opts.Bound.Verifier == nil:
		return bad("neither an Attester nor a Verifier: nothing to attest or verify")
	case opts.TLS.InsecureSkipVerify && opts.Bound.Verifier == nil:
		return bad("InsecureSkipVerify without a Verifier: the server would not be verified at all")
	}
	base, err := atls.BoundTLSConfig(opts.TLS, false)
	if err != nil {
		return nil, err
	}
	if base.ServerName == "" && !base.InsecureSkipVerify {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			base.ServerName = host
		}
	}
	cfg, ownLeaf := atls.TrackClientLeaf(base)
	ctx, cancel := context.WithTimeout(ctx, boundTimeout(&opts.Bound))
	defer cancel()
	qc, err := quic.DialAddr(ctx, addr, cfg, clientQUICConfig(QUICConfig(opts.QUIC)))
	if err != nil {
		return nil, attest.Wrap(attest.ErrNotAttested, "bound.handshake", err)
	}
	bc, err := dialExchange(ctx, qc, &opts, ownLeaf())
	if err != nil {
		_ = qc.CloseWithError(BoundErrorCode, attest.FailedCheck(err))
		return nil, err
	}
	return bc, nil
}

func dialExchange(ctx context.Context, qc *quic.Conn, opts *BoundDialOptions, leaf []byte) (*BoundConn, error) {
	if err := checkEarlyData(qc); err != nil {
		return nil, err
	}
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, attest.Wrap(attest.ErrNotAttested, "bound.missing", err)
	}
	sess := &atls.BoundSession{Options: &opts.Bound, Role: attest.RoleClient, State: qc.ConnectionState().TLS, OwnLeaf: leaf}
	return startBound(ctx, qc, st, sess, opts.Reattest)
}

func checkEarlyData(qc *quic.Conn) error {
	if qc.ConnectionState().Used0RTT {
		return attest.Fail(attest.ErrBinding, "bound.early_data", "bound mode refuses 0-RTT connections")
	}
	return nil
}

func boundTimeout(o *atls.BoundOptions) time.Duration {
	if o.Timeout == 0 {
		return atls.DefaultBoundTimeout
	}
	return o.Timeout
}

// startBound runs the exchange on st and starts serving the stream.
func startBound(ctx context.Context, qc *quic.Conn, st *quic.Stream, sess *atls.BoundSession, ro ReattestOptions) (*BoundConn, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	claims, err := sess.Exchange(ctx, st)
	if err != nil {
		return nil, err
	}
	_ = st.SetDeadline(time.Time{})
	c := &BoundConn{Conn: qc, sess: sess, st: st, ro: ro, claims: claims}
	go c.readLoop()
	if ro.Interval > 0 && sess.Options.Verifier != nil {
		go c.periodic()
	}
	return c, nil
}

// BoundConn is a QUIC connection whose bound exchange succeeded. Its first
// bidirectional stream belongs to the exchange: the application's streams
// are the others (AcceptStream and OpenStream work as usual).
type BoundConn struct {
	*quic.Conn
	sess *atls.BoundSession
	st   *quic.Stream
	ro   ReattestOptions

	wmu       sync.Mutex  // serializes frames written on st
	answering atomic.Bool // a request of the peer is being answered

	rmu     sync.Mutex // one re-attestation of the peer at a time
	mu      sync.Mutex
	claims  *attest.Claims
	pending chan frame // the answer to our request, when one is out
	count   int
}

type frame struct {
	typ     byte
	payload []byte
}

// PeerClaims returns the peer's claims from its latest successful
// attestation, or nil when this side does not verify the peer.
func (c *BoundConn) PeerClaims() *attest.Claims {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.claims.Clone()
}

// Reattestations is the number of successful re-attestations of the peer
// on this connection.
func (c *BoundConn) Reattestations() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

// Reattest asks the peer for new evidence bound to this connection and a
// fresh nonce, and verifies it. On failure (a refusal, bad evidence, the
// peer's silence past ReattestOptions.Timeout) it closes the connection and
// returns the error naming the check.
func (c *BoundConn) Reattest(ctx context.Context) (*attest.Claims, error) {
	if c.sess.Options.Verifier == nil {
		return nil, attest.Fail(attest.ErrConfig, "bound.options", "re-attestation without a Verifier")
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	claims, err := c.reattest(ctx)
	if err != nil {
		c.fail(err)
		return nil, err
	}
	c.mu.Lock()
	c.claims, c.count = claims, c.count+1
	c.mu.Unlock()
	return claims.Clone(), nil
}

func (c *BoundConn) reattest(ctx context.Context) (*attest.Claims, error) {
	timeout := c.ro.Timeout
	if timeout == 0 {
		timeout = atls.DefaultBoundTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nonce [attest.NonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, attest.Wrap(attest.ErrConfig, "bound.reattest", err)
	}
	answer := make(chan frame, 1)
	c.mu.Lock()
	c.pending = answer
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.pending = nil
		c.mu.Unlock()
	}()
	req, err := atls.AppendBoundFrame(nil, atls.BoundFrameReattest, nonce[:])
	if err != nil {
		return nil, err
	}
	if err := c.write(req); err != nil {
		return nil, attest.Wrap(attest.ErrNotAttested, "bound.send", err)
	}
	select {
	case f := <-answer:
		return c.sess.Verify(ctx, f.typ, f.payload, nonce)
	case <-ctx.Done():
		return nil, attest.Wrap(attest.ErrNotAttested, "bound.timeout", errors.New("no answer to the re-attestation request in time"))
	case <-c.Context().Done():
		return nil, attest.Wrap(attest.ErrNotAttested, "bound.reattest", context.Cause(c.Context()))
	}
}

func (c *BoundConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.st.SetWriteDeadline(time.Now().Add(atls.DefaultBoundTimeout))
	_, err := c.st.Write(b)
	return err
}

func (c *BoundConn) fail(err error) {
	if c.ro.OnFailure != nil {
		c.ro.OnFailure(err)
	}
	_ = c.CloseWithError(BoundErrorCode, attest.FailedCheck(err))
}

// readLoop serves the attestation stream: it answers the peer's requests
// and hands answers to our own request to Reattest. Anything else closes
// the connection.
func (c *BoundConn) readLoop() {
	for {
		typ, payload, err := atls.ReadBoundFrame(c.st)
		if err != nil {
			if c.Context().Err() == nil {
				c.fail(err)
			}
			return
		}
		switch typ {
		case atls.BoundFrameReattest:
			// One answer at a time: each costs the attester a report.
			if !c.answering.CompareAndSwap(false, true) {
				c.fail(attest.Fail(attest.ErrMalformedEvidence, "bound.frame", "a re-attestation request while the previous one is being answered"))
				return
			}
			go c.answer([attest.NonceSize]byte(payload))
		default:
			c.mu.Lock()
			ch := c.pending
			c.pending = nil
			c.mu.Unlock()
			if ch == nil {
				c.fail(attest.Fail(attest.ErrMalformedEvidence, "bound.frame", "unsolicited frame of type 0x%02x on the attestation stream", typ))
				return
			}
			ch <- frame{typ, payload}
		}
	}
}

func (c *BoundConn) answer(nonce [attest.NonceSize]byte) {
	timeout := boundTimeout(c.sess.Options)
	ctx, cancel := context.WithTimeout(c.Context(), timeout)
	defer cancel()
	f, err := c.sess.Evidence(ctx, nonce)
	if err != nil {
		// The peer learns nothing but that we have no evidence for it.
		f = []byte{atls.BoundFrameNoEvidence, 0, 0, 0}
	}
	// Cleared before the answer leaves: a peer may ask again as soon as
	// it has the answer.
	c.answering.Store(false)
	_ = c.write(f)
}

func (c *BoundConn) periodic() {
	t := time.NewTicker(c.ro.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if _, err := c.Reattest(c.Context()); err != nil {
				return
			}
		case <-c.Context().Done():
			return
		}
	}
}
