package atls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/confidential-go/atls/atls/attest"
)

// BoundConn is a TLS connection whose bound exchange succeeded: the peer's
// evidence (when required) was verified before the connection was handed
// over, and no application byte was read before that.
type BoundConn struct {
	*tls.Conn
	sess *BoundSession
	mu   sync.Mutex
	// claims are from the latest successful attestation of the peer.
	claims *attest.Claims
	// lastReattest is when this side last answered a re-attestation
	// request over HTTP; zero before the first.
	lastReattest time.Time
}

// allowReattest reports whether a re-attestation request arriving at now
// may be answered under the connection's MinReattestInterval, and records
// it if so; otherwise it returns how long the requester should wait.
func (c *BoundConn) allowReattest(now time.Time) (bool, time.Duration) {
	least := c.sess.Options.minReattestInterval()
	c.mu.Lock()
	defer c.mu.Unlock()
	if least > 0 && !c.lastReattest.IsZero() {
		if since := now.Sub(c.lastReattest); since < least {
			return false, least - since
		}
	}
	c.lastReattest = now
	return true, 0
}

// PeerClaims returns the peer's verified claims, or nil when this side
// did not require the peer to attest.
func (c *BoundConn) PeerClaims() *attest.Claims {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.claims.Clone()
}

// Session returns the bound protocol state of the connection, for
// re-attestation over an application protocol (ReattestHTTP,
// BoundReattestHandler).
func (c *BoundConn) Session() *BoundSession { return c.sess }

// BoundClaims returns the verified claims of the peer of conn, when conn is
// (or wraps, through a NetConn method) a *BoundConn whose peer attested.
func BoundClaims(conn net.Conn) (*attest.Claims, bool) {
	if bc := asBoundConn(conn); bc != nil {
		c := bc.PeerClaims()
		return c, c != nil
	}
	return nil, false
}

// boundRawConn is the connection under a bound *tls.Conn. It records the
// connection's *BoundConn once the exchange succeeded, so that the
// *tls.Conn itself (handed to net/http for HTTP/2, whose protocol
// negotiation needs a *tls.Conn) leads back to the claims through its
// NetConn method, for the life of the connection.
type boundRawConn struct {
	net.Conn
	// bc is set once, before the *tls.Conn is handed over.
	bc *BoundConn
}

// asBoundConn returns conn, or the connection it wraps, as a *BoundConn;
// nil if it is none.
func asBoundConn(conn net.Conn) *BoundConn {
	for conn != nil {
		switch c := conn.(type) {
		case *BoundConn:
			return c
		case *boundRawConn:
			return c.bc
		}
		u, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		conn = u.NetConn()
	}
	return nil
}

// boundTLS prepares a tls.Config for bound mode: TLS 1.3 only, no session
// resumption in either direction.
func boundTLS(base *tls.Config, server bool) (*tls.Config, error) {
	var cfg *tls.Config
	if base == nil {
		cfg = &tls.Config{}
	} else {
		cfg = base.Clone()
	}
	if cfg.MaxVersion != 0 && cfg.MaxVersion < tls.VersionTLS13 {
		return nil, attest.Fail(attest.ErrConfig, "bound.options", "bound mode needs TLS 1.3, MaxVersion forbids it")
	}
	cfg.MinVersion = tls.VersionTLS13
	cfg.SessionTicketsDisabled = true
	cfg.ClientSessionCache = nil
	if server && len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		c, err := ephemeralCertificate("atls-bound")
		if err != nil {
			return nil, attest.Wrap(attest.ErrConfig, "bound.options", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

// ephemeralCertificate makes a self-signed ECDSA P-256 certificate valid
// for a day. In bound mode a peer may trust it through the evidence alone,
// which binds the connection's exporter and this certificate.
func ephemeralCertificate(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// ownLeafRecorder wraps a config so that the leaf this side presents is
// known after the handshake (crypto/tls does not report it).
type ownLeafRecorder struct {
	mu   sync.Mutex
	leaf []byte
}

func (r *ownLeafRecorder) set(c *tls.Certificate) {
	if c != nil && len(c.Certificate) > 0 {
		r.mu.Lock()
		r.leaf = c.Certificate[0]
		r.mu.Unlock()
	}
}

func (r *ownLeafRecorder) get() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaf
}

// recordServerLeaf returns a per-connection config that records the
// certificate served.
func recordServerLeaf(cfg *tls.Config, rec *ownLeafRecorder) *tls.Config {
	c := cfg.Clone()
	if c.GetConfigForClient != nil {
		// The application's per-client configs choose the certificate:
		// wrap each of them.
		get := c.GetConfigForClient
		c.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sub, err := get(h)
			if err != nil || sub == nil {
				return sub, err
			}
			sub = sub.Clone()
			sub.MinVersion, sub.SessionTicketsDisabled = tls.VersionTLS13, true
			return recordServerLeaf(sub, rec), nil
		}
	}
	pick := func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if cfg.GetCertificate != nil {
			return cfg.GetCertificate(h)
		}
		if len(cfg.Certificates) == 1 {
			return &cfg.Certificates[0], nil
		}
		for i := range cfg.Certificates {
			if h.SupportsCertificate(&cfg.Certificates[i]) == nil {
				return &cfg.Certificates[i], nil
			}
		}
		if len(cfg.Certificates) > 0 {
			return &cfg.Certificates[0], nil
		}
		return nil, errors.New("atls: no server certificate")
	}
	// crypto/tls skips GetCertificate when Certificates is set and the
	// client sent no server name: clear it so that every pick is seen.
	c.Certificates = nil
	c.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		crt, err := pick(h)
		rec.set(crt)
		return crt, err
	}
	return c
}

// recordClientLeaf returns a per-connection config that records the
// certificate sent (if any).
func recordClientLeaf(cfg *tls.Config, rec *ownLeafRecorder) *tls.Config {
	c := cfg.Clone()
	get := cfg.GetClientCertificate
	certs := cfg.Certificates
	c.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if get != nil {
			crt, err := get(cri)
			rec.set(crt)
			return crt, err
		}
		for i := range certs {
			if cri.SupportsCertificate(&certs[i]) == nil {
				rec.set(&certs[i])
				return &certs[i], nil
			}
		}
		return &tls.Certificate{}, nil
	}
	return c
}

// BoundListenerOptions configure a BoundListener.
type BoundListenerOptions struct {
	// TLS is the server's TLS configuration (certificates, client
	// authentication, ALPN). Nil, or one without certificates: an
	// ephemeral self-signed certificate, which clients trust through the
	// evidence alone. TLS 1.3 is enforced and session tickets are off.
	TLS *tls.Config
	// Bound configures the exchange: Attester for the server's evidence,
	// Verifier to require attested clients.
	Bound BoundOptions
	// MaxPending bounds the connections in their handshake or exchange at
	// once; further connections wait in the kernel's accept queue. 0
	// means 256.
	MaxPending int
	// OnReject, when set, is called with each connection refused and the
	// reason (an *attest.CheckError naming the check). Nil: only Logger
	// hears of them.
	OnReject func(remote net.Addr, err error)
	// Logger receives one line per refused connection (Warn). Nil: none.
	Logger *slog.Logger
}

// BoundListener is a net.Listener whose Accept returns *BoundConn values
// only: TLS 1.3 connections on which the bound exchange succeeded. Each
// handshake and exchange runs in its own goroutine, so a slow or hostile
// client does not hold up others.
type BoundListener struct {
	inner net.Listener
	tls   *tls.Config
	opts  BoundListenerOptions
	ready chan *BoundConn
	done  chan struct{}
	once  sync.Once
	sem   chan struct{}
	wg    sync.WaitGroup
}

// NewBoundListener wraps inner. It fails with ErrConfig (check
// "bound.options") for unusable options. Close closes inner.
func NewBoundListener(inner net.Listener, opts BoundListenerOptions) (*BoundListener, error) {
	if err := opts.Bound.check("BoundListener"); err != nil {
		return nil, err
	}
	if opts.MaxPending < 0 {
		return nil, attest.Fail(attest.ErrConfig, "bound.options", "negative MaxPending")
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = 256
	}
	cfg, err := boundTLS(opts.TLS, true)
	if err != nil {
		return nil, err
	}
	l := &BoundListener{inner: inner, tls: cfg, opts: opts, ready: make(chan *BoundConn),
		done: make(chan struct{}), sem: make(chan struct{}, opts.MaxPending)}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

func (l *BoundListener) acceptLoop() {
	defer l.wg.Done()
	for {
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return
		}
		raw, err := l.inner.Accept()
		if err != nil {
			<-l.sem
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-l.sem }()
			l.serve(raw)
		}()
	}
}

func (l *BoundListener) serve(raw net.Conn) {
	bc, err := l.establish(raw)
	if err != nil {
		raw.Close()
		if l.opts.OnReject != nil {
			l.opts.OnReject(raw.RemoteAddr(), err)
		}
		if l.opts.Logger != nil {
			l.opts.Logger.Warn("atls: bound exchange failed", slog.String("remote", raw.RemoteAddr().String()), slog.String("error", err.Error()))
		}
		return
	}
	select {
	case l.ready <- bc:
	case <-l.done:
		bc.Close()
	}
}

func (l *BoundListener) establish(raw net.Conn) (*BoundConn, error) {
	return BoundServerHandshake(context.Background(), raw, l.tls, &l.opts.Bound)
}

// BoundServerHandshake runs the server side over raw: the TLS handshake
// with cfg (prepared by BoundTLSConfig) and the bound exchange, bounded by
// ctx and opts.Timeout. On failure the caller closes raw. BoundListener
// uses it; so can other servers (gRPC credentials, for one).
func BoundServerHandshake(ctx context.Context, raw net.Conn, cfg *tls.Config, opts *BoundOptions) (*BoundConn, error) {
	timeout := opts.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, err
	}
	rec := &ownLeafRecorder{}
	wrapped := &boundRawConn{Conn: raw}
	tc := tls.Server(wrapped, recordServerLeaf(cfg, rec))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, attest.Wrap(attest.ErrNotAttested, "bound.handshake", err)
	}
	sess := &BoundSession{Options: opts, Role: attest.RoleServer, State: tc.ConnectionState(), OwnLeaf: rec.get()}
	// The exchange reads the frame from tc with io.ReadFull, through no
	// buffer of its own: application bytes that follow the frame stay in
	// tc, so that tc itself can be handed to the application.
	claims, err := sess.Exchange(ctx, tc)
	if err != nil {
		return nil, err
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	bc := &BoundConn{Conn: tc, sess: sess, claims: claims}
	wrapped.bc = bc
	return bc, nil
}

// Accept returns the next connection whose bound exchange succeeded.
func (l *BoundListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes the wrapped listener. Connections in
// their exchange are dropped when it ends.
func (l *BoundListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

// Addr is the wrapped listener's address.
func (l *BoundListener) Addr() net.Addr { return l.inner.Addr() }

// BoundDialerOptions configure a BoundDialer.
type BoundDialerOptions struct {
	// TLS is the client's TLS configuration. It is reusable: bound mode
	// puts nothing per connection in it. Nil: an empty one, which verifies
	// the server's certificate against the system roots; to accept a
	// server's self-signed certificate on the strength of its evidence
	// alone, set InsecureSkipVerify (refused without a Verifier). TLS 1.3
	// is enforced and resumption is off.
	TLS *tls.Config
	// Bound configures the exchange: Verifier for the server's evidence,
	// Attester to attest this client.
	Bound BoundOptions
	// Dialer dials the TCP connection. Nil: a zero net.Dialer.
	Dialer *net.Dialer
}

// BoundDialer dials TLS connections and returns them only after the bound
// exchange succeeded. It is safe for concurrent use and for any number of
// connections.
type BoundDialer struct {
	tls  *tls.Config
	opts BoundDialerOptions
}

// NewBoundDialer checks opts. It fails with ErrConfig (check
// "bound.options").
func NewBoundDialer(opts BoundDialerOptions) (*BoundDialer, error) {
	if err := opts.Bound.check("BoundDialer"); err != nil {
		return nil, err
	}
	if opts.TLS != nil && opts.TLS.InsecureSkipVerify && opts.Bound.Verifier == nil {
		return nil, attest.Fail(attest.ErrConfig, "bound.options", "InsecureSkipVerify without a Verifier: the server would not be verified at all")
	}
	cfg, err := boundTLS(opts.TLS, false)
	if err != nil {
		return nil, err
	}
	return &BoundDialer{tls: cfg, opts: opts}, nil
}

// DialContext dials addr and runs the handshake and the bound exchange,
// bounded by ctx and BoundOptions.Timeout. The net.Conn is a *BoundConn.
func (d *BoundDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := d.opts.Dialer
	if nd == nil {
		nd = &net.Dialer{}
	}
	raw, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	bc, err := d.Client(ctx, raw, addr)
	if err != nil {
		raw.Close()
		return nil, err
	}
	return bc, nil
}

// Client runs the client side over an established connection raw to addr
// (host:port, or a host, for the server name when the TLS configuration has
// none). On failure the caller closes raw.
func (d *BoundDialer) Client(ctx context.Context, raw net.Conn, addr string) (*BoundConn, error) {
	timeout := d.opts.Bound.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, err
	}
	cfg := d.tls
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg = cfg.Clone()
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg.ServerName = host
	}
	rec := &ownLeafRecorder{}
	wrapped := &boundRawConn{Conn: raw}
	tc := tls.Client(wrapped, recordClientLeaf(cfg, rec))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, attest.Wrap(attest.ErrNotAttested, "bound.handshake", err)
	}
	sess := &BoundSession{Options: &d.opts.Bound, Role: attest.RoleClient, State: tc.ConnectionState(), OwnLeaf: rec.get()}
	claims, err := sess.Exchange(ctx, tc)
	if err != nil {
		return nil, err
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	bc := &BoundConn{Conn: tc, sess: sess, claims: claims}
	wrapped.bc = bc
	return bc, nil
}

// withHTTPNextProtos returns cfg, or a clone offering HTTP/2 and HTTP/1.1
// when cfg offers no application protocol.
func withHTTPNextProtos(cfg *tls.Config) *tls.Config {
	if len(cfg.NextProtos) > 0 {
		return cfg
	}
	c := cfg.Clone()
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}

// Transport returns a transport whose every connection is dialed by d
// (https URLs only; proxies are not used). It speaks HTTP/2 when the server
// agrees (ALPN "h2"), else HTTP/1.1; a TLS configuration without
// NextProtos offers both, one with NextProtos offers what it lists. Each
// connection is handed to net/http as the *tls.Conn under the *BoundConn,
// after the bound exchange succeeded, so resp.TLS is set; BoundClaims
// still finds the server's claims from that *tls.Conn (ReattestHTTP uses
// it).
func (d *BoundDialer) Transport() *http.Transport {
	hd := &BoundDialer{tls: withHTTPNextProtos(d.tls), opts: d.opts}
	return &http.Transport{
		Proxy: nil,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := hd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// net/http negotiates HTTP/2 only on a *tls.Conn.
			return c.(*BoundConn).Conn, nil
		},
		DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
			return nil, attest.Fail(attest.ErrConfig, "transport.plaintext", "refusing a connection to %s without TLS: a bound transport only speaks https", addr)
		},
		ForceAttemptHTTP2: true,
	}
}

// NewBoundHTTPListener returns a listener for an http.Server (one from
// NewBoundHTTPServer) that speaks HTTP/2 and HTTP/1.1: it runs a
// BoundListener over inner, and its Accept returns, of each connection
// whose bound exchange succeeded, the *tls.Conn itself (net/http
// negotiates HTTP/2 only on a *tls.Conn). The exchange reads exactly its
// frame from the connection, so no application byte is lost; BoundClaims
// and BoundConnContext find the client's claims from the *tls.Conn for
// the life of the connection. When opts.TLS sets no NextProtos, the
// server offers "h2" and "http/1.1". It fails as NewBoundListener does.
func NewBoundHTTPListener(inner net.Listener, opts BoundListenerOptions) (net.Listener, error) {
	base := opts.TLS
	if base == nil {
		base = &tls.Config{}
	}
	opts.TLS = withHTTPNextProtos(base)
	l, err := NewBoundListener(inner, opts)
	if err != nil {
		return nil, err
	}
	return boundHTTPListener{l}, nil
}

// boundHTTPListener returns the *tls.Conn of each *BoundConn accepted.
type boundHTTPListener struct{ *BoundListener }

func (l boundHTTPListener) Accept() (net.Conn, error) {
	c, err := l.BoundListener.Accept()
	if err != nil {
		return nil, err
	}
	return c.(*BoundConn).Conn, nil
}

type (
	boundClaimsKey struct{}
	boundConnKey   struct{}
)

// BoundConnContext is an http.Server ConnContext that puts the claims of a
// *BoundConn peer (or of the *tls.Conn under one, as NewBoundHTTPListener
// hands out) in the connection's context, for BoundRequestClaims. The
// context, and so the claims, lasts as long as the connection.
func BoundConnContext(ctx context.Context, c net.Conn) context.Context {
	bc := asBoundConn(c)
	if bc == nil {
		return ctx
	}
	ctx = context.WithValue(ctx, boundConnKey{}, bc)
	if claims := bc.PeerClaims(); claims != nil {
		ctx = context.WithValue(ctx, boundClaimsKey{}, claims)
	}
	return ctx
}

// BoundRequestClaims returns the claims that BoundConnContext attached to
// r's connection.
func BoundRequestClaims(r *http.Request) (*attest.Claims, bool) {
	c, ok := r.Context().Value(boundClaimsKey{}).(*attest.Claims)
	return c, ok
}

// NewBoundHTTPServer returns an http.Server to run with Serve(l): on a
// listener from NewBoundHTTPListener it serves HTTP/2 and HTTP/1.1; on a
// BoundListener, HTTP/1.1 only (its connections are not *tls.Conn values,
// so net/http does not negotiate HTTP/2; its TLS configuration must then
// not offer "h2"). Handlers read the client's claims with
// BoundRequestClaims. It answers re-attestation requests at ReattestPath
// (BoundReattestHandler).
func NewBoundHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: BoundReattestHandler(h), ConnContext: BoundConnContext, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
}

// BoundTLSConfig prepares base for bound mode, for transports that make
// their own connections (package atlsquic): a clone with TLS 1.3 only and
// resumption off in both directions; for a server (server true) without
// certificates, an ephemeral self-signed one. It fails with ErrConfig (check
// "bound.options") when base forbids TLS 1.3.
func BoundTLSConfig(base *tls.Config, server bool) (*tls.Config, error) {
	return boundTLS(base, server)
}

// TrackClientLeaf returns a clone of cfg for one client connection and a
// function that reports, after the handshake, the DER certificate the
// client presented (nil if none): the leaf its bound evidence must hash.
func TrackClientLeaf(cfg *tls.Config) (*tls.Config, func() []byte) {
	rec := &ownLeafRecorder{}
	return recordClientLeaf(cfg, rec), rec.get
}
