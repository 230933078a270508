package atls

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
)

// ClientOptions configure the verifying side of a client, the attested
// side, or both (mutual attestation).
type ClientOptions struct {
	// Verifier appraises the server's evidence. When nil the server is
	// verified the ordinary way (the base configuration's RootCAs and
	// ServerName), and Attester must be set.
	Verifier attest.Verifier
	// AcceptStatic accepts static-mode server evidence no older than
	// MaxAge (default DefaultMaxAge). Off by default: the client's nonce
	// is then the only accepted freshness.
	AcceptStatic bool
	MaxAge       time.Duration

	// Attester, when set, makes the client present attested certificates
	// when the server asks for one, bound to the nonce the server sends.
	Attester attest.Attester
	// StaticFallback presents a static-mode certificate to servers that
	// ask for a client certificate but send no nonce (servers that are
	// not this library). Off by default: such requests fail.
	StaticFallback bool
	// KeyType and Validity of the client's certificates (see certgen).
	KeyType    certgen.KeyType
	Validity   time.Duration
	CommonName string

	// Base is the configuration TLSConfig, DialContext and Transport
	// start from (nil for none); Hook takes its base explicitly.
	Base *tls.Config
	// EnableResumption keeps the base's ClientSessionCache. Resumed
	// sessions are checked again in VerifyConnection and, with nonce
	// freshness, refused; leave it off unless you accept that.
	EnableResumption bool
	// CacheSize bounds the verification cache (default DefaultCacheSize;
	// negative disables it).
	CacheSize int
	// ClaimsSize bounds how many servers' claims are kept for PeerClaims
	// and ResponseClaims: zero means DefaultClientClaimsSize, negative
	// keeps none. Every handshake stores one entry (about 0.5 KiB) until
	// the certificate expires or the entry is evicted, the least
	// recently read first; size it above the number of connections the
	// application keeps open and reads claims for.
	ClaimsSize int
	// Logger receives one line per rejected server (Warn). DialContext
	// and Transport also log each server attested once its handshake has
	// completed (Debug), and each handshake that fails after the
	// server's evidence was verified (Warn): a peer presenting a
	// genuine certificate without its private key fails there.
	// Configurations from TLSConfig and Hook complete their handshakes
	// outside the Client; they log verified evidence as "proof of
	// possession pending" (Debug). Nil means silent.
	Logger *slog.Logger
	// Now returns the current time (default time.Now).
	Now func() time.Time

	// Authorize, when set with a Verifier, decides inside the handshake
	// whether a server whose evidence was verified may be used (see
	// AuthorizeFunc); nil accepts every verified server.
	Authorize AuthorizeFunc
	// Trace receives the client's attestation, verification and cache
	// events (see Trace); nil reports nothing.
	Trace *Trace
}

// Client makes client-side tls.Configs. Create it with NewClient.
//
// A client configuration carries the nonce of exactly one handshake, so
// every connection needs its own: use DialContext, Transport, Handshake
// (over a connection you already have), atlsquic.DialAddr or
// atlsgrpc.NewClientCredentials, or call TLSConfig/Hook once per
// connection. A configuration used for a second handshake fails that
// handshake (check "nonce.reuse") rather than reuse its nonce. This is
// the trap of http.Transport{TLSClientConfig: cfg} and gRPC's
// credentials.NewTLS(cfg): both keep one configuration for every
// connection they open, so the first connection works and every later
// one (a second idle connection, a reconnect) fails.
type Client struct {
	opts   ClientOptions
	peer   *peerCheck // nil when the server is verified by PKI
	static *certgen.Static
}

// NewClient checks opts and returns a Client. The Client may be used for
// any number of connections; the configurations it makes (TLSConfig, Hook)
// serve one handshake each: see Client.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Verifier == nil && opts.Attester == nil {
		return nil, attest.Fail(attest.ErrConfig, "client.options", "neither a Verifier nor an Attester: nothing to verify or attest")
	}
	if opts.Verifier == nil && opts.Base != nil && opts.Base.InsecureSkipVerify {
		return nil, attest.Fail(attest.ErrConfig, "client.options", "no Verifier and InsecureSkipVerify: the server would not be verified at all")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Client{opts: opts}
	if opts.Verifier != nil {
		c.peer = &peerCheck{
			verifier:     opts.Verifier,
			role:         attest.RoleServer,
			acceptStatic: opts.AcceptStatic,
			maxAge:       opts.MaxAge,
			now:          opts.Now,
			certs:        newCache(opts.CacheSize),
			cache:        newCache(opts.CacheSize),
			claims:       newClaims(opts.ClaimsSize, DefaultClientClaimsSize),
			logger:       opts.Logger,
			hooks:        newPeerHooks(opts.Authorize, opts.Trace),
		}
	}
	if opts.Attester != nil && opts.StaticFallback {
		st, err := certgen.NewStatic(c.request(attest.ModeStatic, [attest.NonceSize]byte{}))
		if err != nil {
			return nil, err
		}
		c.static = st
	}
	return c, nil
}

func (c *Client) request(mode attest.Mode, nonce [attest.NonceSize]byte) certgen.Request {
	return certgen.Request{
		Attester:   traceAttester(c.opts.Attester, c.opts.Trace, attest.RoleClient, mode),
		Role:       attest.RoleClient,
		Mode:       mode,
		Nonce:      nonce,
		KeyType:    c.opts.KeyType,
		Validity:   c.opts.Validity,
		CommonName: c.opts.CommonName,
		Now:        c.opts.Now,
	}
}

// TLSConfig returns a configuration for one connection, made from
// ClientOptions.Base. It carries that connection's nonce: a second
// handshake with it fails (check "nonce.reuse"). Do not hand it to
// something that opens several connections (http.Transport's
// TLSClientConfig, gRPC's credentials.NewTLS): use Transport,
// atlsgrpc.NewClientCredentials or DialContext instead.
func (c *Client) TLSConfig() (*tls.Config, error) {
	return c.hook(context.Background(), c.opts.Base)
}

// Hook returns a copy of base (which may be nil) patched for one attested
// connection: TLS 1.3 only, a fresh nonce appended to base.NextProtos
// (which are kept), the server's evidence checked in VerifyConnection
// (before base.VerifyConnection, which still runs), and, with an
// Attester, an attested client certificate. base is not modified.
//
// Like TLSConfig, the result serves one handshake: http.Transport{
// TLSClientConfig: hooked} or credentials.NewTLS(hooked) fail from their
// second connection on (check "nonce.reuse"). Use Transport (or set
// http.Transport.DialTLSContext to DialContext), atlsgrpc or Handshake.
func (c *Client) Hook(base *tls.Config) (*tls.Config, error) {
	return c.hook(context.Background(), base)
}

func (c *Client) hook(ctx context.Context, base *tls.Config) (*tls.Config, error) {
	cfg, _, err := c.hookVerdict(ctx, base)
	return cfg, err
}

// verdict is what the check of the server concluded in one handshake:
// nil until its evidence was verified.
type verdict = atomic.Pointer[attest.Claims]

// hookVerdict is hook, also returning where the configuration's
// VerifyConnection records the server's verified claims.
func (c *Client) hookVerdict(ctx context.Context, base *tls.Config) (*tls.Config, *verdict, error) {
	if c.peer == nil && base != nil && base.InsecureSkipVerify {
		return nil, nil, attest.Fail(attest.ErrConfig, "client.options", "no Verifier and InsecureSkipVerify: the server would not be verified at all")
	}
	verified := new(verdict)
	var cfg *tls.Config
	if base == nil {
		cfg = &tls.Config{}
	} else {
		cfg = base.Clone()
	}
	cfg.MinVersion = tls.VersionTLS13
	cfg.MaxVersion = 0
	if !c.opts.EnableResumption {
		cfg.ClientSessionCache = nil
	}

	if c.peer != nil {
		nonce, err := newNonce()
		if err != nil {
			return nil, nil, err
		}
		cfg.NextProtos = append(slices.Clone(cfg.NextProtos), encodeNonce(nonce))
		// Chain and name checks of the PKI do not apply to attested
		// certificates; VerifyConnection below does the whole appraisal.
		cfg.InsecureSkipVerify = true
		peer := c.peer
		userVerify := peer.scope(cfg.VerifyConnection)
		var used atomic.Bool
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if used.Swap(true) {
				return attest.Fail(attest.ErrConfig, "nonce.reuse", "this client configuration carries the nonce of one handshake and was already used: make one per connection (Client.DialContext, Client.Transport instead of http.Transport{TLSClientConfig: ...}, Client.Handshake, atlsgrpc.NewClientCredentials instead of credentials.NewTLS, atlsquic.DialAddr)")
			}
			claims, err := peer.verify(ctx, cs, &nonce)
			if err != nil {
				return err
			}
			verified.Store(claims)
			if userVerify != nil {
				return userVerify(cs)
			}
			return nil
		}
	}

	if c.opts.Attester != nil {
		cfg.Certificates = nil
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			rctx := cri.Context()
			n, found, err := nonceFromCAs(cri.AcceptableCAs)
			var cert *tls.Certificate
			switch {
			case err != nil:
			case found:
				cert, err = certgen.Issue(rctx, c.request(attest.ModeNonce, n))
			case c.static != nil:
				cert, err = c.static.Certificate(rctx)
			default:
				err = attest.Fail(attest.ErrBinding, "nonce.missing", "the server asked for a client certificate but sent no nonce (enable StaticFallback to present a static one)")
			}
			if err != nil && c.opts.Logger != nil {
				c.opts.Logger.LogAttrs(rctx, slog.LevelWarn, "atls: cannot present an attested client certificate", slog.String("error", err.Error()))
			}
			return cert, err
		}
	}
	return cfg, verified, nil
}

// DialContext connects to addr and completes an attested TLS handshake,
// with a configuration made for this connection from ClientOptions.Base.
// When Base has no ServerName it is taken from addr.
func (c *Client) DialContext(ctx context.Context, network, addr string) (*tls.Conn, error) {
	return c.dial(ctx, network, addr, c.opts.Base)
}

func (c *Client) dial(ctx context.Context, network, addr string, base *tls.Config) (*tls.Conn, error) {
	cfg, verified, err := c.hookVerdict(ctx, base)
	if err != nil {
		return nil, err
	}
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	d := &tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		c.logHandshake(ctx, addr, verified.Load(), err)
		return nil, err
	}
	c.logHandshake(ctx, addr, verified.Load(), nil)
	return conn.(*tls.Conn), nil
}

// logHandshake logs the outcome of a handshake whose server's evidence
// was verified (claims not nil): attested when it completed (err nil),
// and otherwise the failure that followed the verification, which
// nothing else would report as such.
func (c *Client) logHandshake(ctx context.Context, addr string, claims *attest.Claims, err error) {
	l := c.opts.Logger
	if l == nil || claims == nil {
		return
	}
	if err != nil {
		l.LogAttrs(ctx, slog.LevelWarn, "atls: handshake failed after the server's evidence was verified",
			slog.String("addr", addr),
			slog.String("evidence", claims.EvidenceDigest.String()),
			slog.String("error", err.Error()))
		return
	}
	l.LogAttrs(ctx, slog.LevelDebug, "atls: peer attested",
		slog.String("addr", addr),
		slog.String("peer_role", attest.RoleServer.String()),
		slog.String("mode", claims.Mode.String()),
		slog.Bool("simulated", claims.Simulated),
		slog.String("evidence", claims.EvidenceDigest.String()))
}

// Transport returns an http.Transport that attests every connection it
// opens (a fresh configuration, and nonce, per connection, made in its
// DialTLSContext). Use it rather than an http.Transport whose
// TLSClientConfig is a configuration from TLSConfig or Hook, which would
// serve one connection only. To customize a transport of your own, set
// its DialTLSContext to this Client's DialContext. It starts
// from a clone of http.DefaultTransport. When ClientOptions.Base has no
// NextProtos, it offers "h2" and "http/1.1", as http.DefaultTransport
// does, so that HTTP/2 is used where the server speaks it and ordinary
// HTTPS servers negotiate a protocol (and are then found not attested,
// rather than failing on ALPN). Base.NextProtos, when set, are offered
// as they are: []string{"http/1.1"} for HTTP/1.1 only. With mutual
// attestation, a server refusing the client's evidence does so after the
// client's side of the handshake: the request then fails with the
// server's alert, which HTTP/1.1 reports more directly than HTTP/2.
//
// Every path around the attested dialer fails closed: proxies are not
// used (through a proxy, net/http would make the TLS connection to the
// target itself, unattested), plain http:// connections are refused, and
// the transport's own TLS configuration rejects every handshake.
func (c *Client) Transport() *http.Transport {
	base := c.opts.Base
	if base == nil || len(base.NextProtos) == 0 {
		b := &tls.Config{}
		if base != nil {
			b = base.Clone()
		}
		b.NextProtos = []string{"h2", "http/1.1"}
		base = b
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, attest.Fail(attest.ErrConfig, "transport.plaintext", "refusing a connection to %s without TLS: an attested transport only speaks https", addr)
	}
	t.TLSClientConfig = &tls.Config{
		MinVersion: tls.VersionTLS13,
		VerifyConnection: func(tls.ConnectionState) error {
			return attest.Fail(attest.ErrConfig, "transport.bypass", "a TLS connection was made around the attested dialer")
		},
	}
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return c.dial(ctx, network, addr, base)
	}
	return t
}

// PeerClaims returns the verified claims of the server of a connection
// made with this Client. ok is false when this Client did not verify it,
// when the handshake did not complete (the evidence is checked before
// the server proves it holds the certificate's key; a server that cannot
// never completes the handshake), or when the claims were evicted (see
// ClientOptions.ClaimsSize) or have expired: they are kept until the
// server's certificate expires (NotAfter; for static evidence, also its
// maximum age), not for the life of the connection, so on a connection
// that outlives its certificate (HTTP/2, HTTP/3, gRPC) ok turns false.
// Keep the claims when the connection is made instead: Handshake returns
// them, and atlsgrpc keeps them in the connection's AuthInfo.
func (c *Client) PeerClaims(cs tls.ConnectionState) (*attest.Claims, bool) {
	if c.peer == nil || !cs.HandshakeComplete {
		return nil, false
	}
	return c.peer.peerClaims(cs)
}
