// Package atlsquic runs attested TLS over QUIC and HTTP/3 with quic-go.
//
// The configurations of package atls work over QUIC unchanged: a QUIC
// handshake is a TLS 1.3 handshake, the client's nonce still travels as an
// extra ALPN entry next to the application protocol ("h3" for HTTP/3), and
// every check still runs in VerifyConnection. This package adds what QUIC
// needs on top, so that a program gets it right in one or two lines:
//
//   - ALPN is mandatory in QUIC (RFC 9001, section 8.1). The helpers refuse
//     a configuration without an application protocol, and an atls server
//     refuses a QUIC client that offers only the nonce (check "tls.alpn")
//     rather than negotiate no protocol.
//   - 0-RTT is off. Early data rides with the ClientHello of a resumed
//     session: it is served before the handshake completes, before the
//     client has appraised the server on this connection (a nonce-mode
//     client refuses every resumed connection, but only after its early
//     request was served), without the freshness of a nonce, and it can
//     be replayed by anyone who recorded it; and a handler sees an
//     incomplete handshake, so RequestClaims has nothing to return. Every
//     quic.Config that passes through this package has Allow0RTT false
//     (also the ones its GetConfigForClient returns), the client helpers
//     never send early data, and NewHTTP3Server's handler answers 425 Too
//     Early to a request whose handshake is not complete, should 0-RTT be
//     turned back on.
//   - One client configuration per connection: the nonce is for exactly
//     one handshake. DialAddr, Dial and HTTP3Transport make one per dial.
//   - Source addresses are validated before the handshake. A QUIC first
//     flight needs no prior round trip, so without validation a flood of
//     recorded first flights from spoofed or closed sockets would cost one
//     attestation each. Listen, ListenAddr and the server NewHTTP3Server
//     returns answer every new connection attempt with a Retry (RFC 9000,
//     section 8.1.2) and start the handshake, and so the attestation, only
//     once the client has shown that it receives at its address: one extra
//     round trip per connection. NewTransport gives such a transport;
//     HTTP3Server.VerifySourceAddress chooses per attempt.
//   - The handshake idle timeout is DefaultHandshakeIdleTimeout (10 s)
//     on both ends unless the quic.Config sets one, above the time an
//     atls server lets a handshake wait for its attestation (2 s by
//     default) before it serves the static certificate or refuses: a
//     silent server is not taken for a dead one.
//
// Server, in a few lines:
//
//	srv, _ := atls.NewServer(atls.ServerOptions{Attester: att})
//	h3 := atlsquic.NewHTTP3Server(srv, nil, handler)
//	h3.Addr = ":8443"
//	err := h3.ListenAndServe() // NOT ListenAndServeTLS: see below
//
// Client:
//
//	cli, _ := atls.NewClient(atls.ClientOptions{Verifier: ver})
//	hc := &http.Client{Transport: atlsquic.HTTP3Transport(cli, nil)}
//	resp, _ := hc.Get("https://service.internal:8443/")
//	claims, ok := cli.ResponseClaims(resp)
//
// Raw QUIC, with the application protocol in the base configuration:
//
//	ln, _ := atlsquic.ListenAddr(":4433", srv, &tls.Config{NextProtos: []string{"my-proto"}}, nil)
//	conn, _ := ln.Accept(ctx) // handshake and appraisal complete
//	claims, ok := srv.PeerClaims(conn.ConnectionState().TLS) // with a ClientVerifier
//
//	conn, _ := atlsquic.DialAddr(ctx, "service.internal:4433", cli, &tls.Config{NextProtos: []string{"my-proto"}}, nil)
//	claims, ok := cli.PeerClaims(conn.ConnectionState().TLS)
//
// Dial does the same over a shared quic.Transport; ServerConfig and
// QUICConfig give the two configurations for a quic.Transport of one's
// own. In an HTTP/3 handler, atls.ClaimsFromContext(r.Context()) returns
// the client's claims for the whole life of the connection, and
// ConnClaims(conn) those of a raw QUIC connection (srv.RequestClaims(r)
// and srv.PeerClaims work as over TCP, until the client's certificate
// expires).
//
// WARNING: http3.Server.ListenAndServeTLS(certFile, keyFile) and the
// package-level http3.ListenAndServeQUIC and http3.ListenAndServeTLS
// ignore Server.TLSConfig: they build a configuration from the two files
// alone, so no attested certificate is served and no client is verified,
// silently. Start the server that NewHTTP3Server returns with
// ListenAndServe or Serve, or hand ServeListener a listener from Listen
// (base NextProtos ["h3"]). Likewise do not set its QUICConfig to nil:
// http3.Server then turns 0-RTT on.
package atlsquic

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
)

// ServerConfig returns srv's configuration for a QUIC listener, hooked
// onto base (see atls.Server.Hook). base must name the application
// protocol in NextProtos: QUIC requires ALPN.
func ServerConfig(srv *atls.Server, base *tls.Config) (*tls.Config, error) {
	if srv == nil {
		return nil, attest.Fail(attest.ErrConfig, "quic.config", "no atls.Server")
	}
	if err := needALPN(base); err != nil {
		return nil, err
	}
	return srv.Hook(base), nil
}

// DefaultHandshakeIdleTimeout is the handshake idle timeout this package
// sets where a quic.Config leaves it zero (quic-go's own default is 5 s).
const DefaultHandshakeIdleTimeout = 10 * time.Second

// QUICConfig returns a copy of qc (which may be nil) with 0-RTT refused,
// including in the configurations its GetConfigForClient returns, and
// HandshakeIdleTimeout DefaultHandshakeIdleTimeout if it was zero.
func QUICConfig(qc *quic.Config) *quic.Config {
	var c *quic.Config
	if qc == nil {
		c = &quic.Config{}
	} else {
		c = qc.Clone()
	}
	c.Allow0RTT = false
	if c.HandshakeIdleTimeout == 0 {
		c.HandshakeIdleTimeout = DefaultHandshakeIdleTimeout
	}
	if get := c.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(info *quic.ClientInfo) (*quic.Config, error) {
			conf, err := get(info)
			if conf == nil || err != nil {
				return conf, err
			}
			conf = conf.Clone()
			conf.Allow0RTT = false
			if conf.HandshakeIdleTimeout == 0 {
				conf.HandshakeIdleTimeout = DefaultHandshakeIdleTimeout
			}
			conf.GetConfigForClient = nil
			return conf, nil
		}
	}
	return c
}

// clientQUICConfig returns a copy of qc (which may be nil) with the
// handshake idle timeout DefaultHandshakeIdleTimeout if it was zero.
func clientQUICConfig(qc *quic.Config) *quic.Config {
	var c *quic.Config
	if qc == nil {
		c = &quic.Config{}
	} else {
		c = qc.Clone()
	}
	if c.HandshakeIdleTimeout == 0 {
		c.HandshakeIdleTimeout = DefaultHandshakeIdleTimeout
	}
	return c
}

// NewTransport returns a quic.Transport on conn that validates the source
// address of every new connection attempt with a Retry before it starts
// the handshake (see the package documentation), and gives each
// connection a record for its client's claims (ConnContext). Closing the
// transport does not close conn.
func NewTransport(conn net.PacketConn) *quic.Transport {
	return &quic.Transport{Conn: conn, VerifySourceAddress: validateAlways, ConnContext: ConnContext}
}

func validateAlways(net.Addr) bool { return true }

// Listener is a quic.Listener on a transport of its own (NewTransport):
// Close closes the listener and that transport, and the UDP socket when
// ListenAddr opened it.
type Listener struct {
	*quic.Listener
	tr   *quic.Transport
	conn net.PacketConn // closed by Close; nil when the caller owns it
}

// Close closes the listener, its transport (and so every connection it
// accepted) and, for ListenAddr, its socket.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	err = errors.Join(err, l.tr.Close())
	if l.conn != nil {
		err = errors.Join(err, l.conn.Close())
	}
	return err
}

// Listen listens for attested QUIC connections on conn, validating source
// addresses first (NewTransport). base names the application protocol
// (NextProtos) and may carry the server's other TLS settings; qc may be
// nil. Accept returns connections whose handshake, attestation checks
// included, is complete. Closing the listener does not close conn. For
// another address-validation policy, listen on a quic.Transport of your
// own with ServerConfig and QUICConfig.
func Listen(conn net.PacketConn, srv *atls.Server, base *tls.Config, qc *quic.Config) (*Listener, error) {
	return listen(conn, false, srv, base, qc)
}

// ListenAddr is Listen on a new UDP socket bound to addr, closed with the
// listener.
func ListenAddr(addr string, srv *atls.Server, base *tls.Config, qc *quic.Config) (*Listener, error) {
	if _, err := ServerConfig(srv, base); err != nil {
		return nil, err
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	return listen(conn, true, srv, base, qc)
}

func listen(conn net.PacketConn, own bool, srv *atls.Server, base *tls.Config, qc *quic.Config) (*Listener, error) {
	cfg, err := ServerConfig(srv, base)
	if err != nil {
		if own {
			conn.Close()
		}
		return nil, err
	}
	tr := NewTransport(conn)
	ln, err := tr.Listen(cfg, QUICConfig(qc))
	if err != nil {
		tr.Close()
		if own {
			conn.Close()
		}
		return nil, err
	}
	l := &Listener{Listener: ln, tr: tr}
	if own {
		l.conn = conn
	}
	return l, nil
}

// ClientConfig returns a configuration for one attested QUIC connection,
// hooked onto base (see atls.Client.Hook): base.NextProtos, which must name
// the application protocol, followed by a fresh nonce. Make one per
// connection.
func ClientConfig(cli *atls.Client, base *tls.Config) (*tls.Config, error) {
	if cli == nil {
		return nil, attest.Fail(attest.ErrConfig, "quic.config", "no atls.Client")
	}
	if err := needALPN(base); err != nil {
		return nil, err
	}
	return cli.Hook(base)
}

// DialAddr connects to addr over a new UDP socket (closed with the
// connection) and completes an attested handshake with a configuration
// made for this connection from base. When base has no ServerName it is
// taken from addr. The connection is returned once the handshake, and so
// the server's appraisal, is complete; no 0-RTT data is sent.
func DialAddr(ctx context.Context, addr string, cli *atls.Client, base *tls.Config, qc *quic.Config) (*quic.Conn, error) {
	cfg, err := clientConfigFor(cli, base, addr)
	if err != nil {
		return nil, err
	}
	return quic.DialAddr(ctx, addr, cfg, clientQUICConfig(qc))
}

// Dial is DialAddr over an existing quic.Transport, which can carry many
// connections on one UDP socket.
func Dial(ctx context.Context, tr *quic.Transport, addr net.Addr, cli *atls.Client, base *tls.Config, qc *quic.Config) (*quic.Conn, error) {
	cfg, err := clientConfigFor(cli, base, addr.String())
	if err != nil {
		return nil, err
	}
	return tr.Dial(ctx, addr, cfg, clientQUICConfig(qc))
}

func clientConfigFor(cli *atls.Client, base *tls.Config, addr string) (*tls.Config, error) {
	cfg, err := ClientConfig(cli, base)
	if err != nil {
		return nil, err
	}
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	return cfg, nil
}

// HTTP3Transport returns an http3.Transport that attests every connection
// it opens: each dial hooks a fresh configuration (and nonce) onto base,
// whose NextProtos http3 replaces with "h3". Connections are dialled
// without 0-RTT, each on its own UDP socket. base may be nil.
func HTTP3Transport(cli *atls.Client, base *tls.Config) *http3.Transport {
	var tc *tls.Config
	if base != nil {
		tc = base.Clone()
	}
	return &http3.Transport{
		TLSClientConfig: tc,
		QUICConfig:      clientQUICConfig(nil),
		Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			// http3 hands a clone of TLSClientConfig with NextProtos
			// ["h3"] and ServerName set.
			return DialAddr(ctx, addr, cli, tlsCfg, qc)
		},
	}
}

// HTTP3Server is an http3.Server that validates source addresses before
// handshakes (see the package documentation) when it listens itself, with
// ListenAndServe or Serve. ListenAndServeTLS is refused: it would ignore
// TLSConfig and serve no attested certificate.
type HTTP3Server struct {
	*http3.Server
	// VerifySourceAddress decides, per new connection attempt, whether the
	// client must first prove its address with a Retry (an extra round
	// trip; quic-go's Transport.VerifySourceAddress). Nil means always:
	// every handshake, and so every attestation, is for a client that
	// receives at its address.
	VerifySourceAddress func(net.Addr) bool
}

// NewHTTP3Server returns an HTTP/3 server for h whose connections are
// attested by srv: TLSConfig is srv's configuration hooked onto base
// (NextProtos become ["h3"]), QUICConfig refuses 0-RTT, h runs behind
// RequireHandshake, and source addresses are validated. Start it with
// ListenAndServe (after setting Addr) or Serve; ServeListener with a
// listener from Listen also validates; ListenAndServeTLS is refused (see
// the package documentation).
func NewHTTP3Server(srv *atls.Server, base *tls.Config, h http.Handler) *HTTP3Server {
	var b *tls.Config
	if base == nil {
		b = &tls.Config{}
	} else {
		b = base.Clone()
	}
	b.NextProtos = []string{http3.NextProtoH3}
	if h == nil {
		h = http.DefaultServeMux
	}
	return &HTTP3Server{Server: &http3.Server{
		TLSConfig:  srv.Hook(b),
		QUICConfig: QUICConfig(nil),
		Handler:    RequireHandshake(h),
	}}
}

// ListenAndServe listens on the UDP address Addr (":https" if empty) and
// serves HTTP/3 on it, validating source addresses.
func (s *HTTP3Server) ListenAndServe() error {
	addr := s.Addr
	if addr == "" {
		addr = ":https"
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return err
	}
	defer conn.Close()
	return s.Serve(conn)
}

// Serve serves HTTP/3 on conn, validating source addresses. It returns
// once the server is closed; it does not close conn.
func (s *HTTP3Server) Serve(conn net.PacketConn) error {
	if s.TLSConfig == nil {
		return attest.Fail(attest.ErrConfig, "quic.config", "HTTP3Server without TLSConfig")
	}
	verify := s.VerifySourceAddress
	if verify == nil {
		verify = validateAlways
	}
	tr := &quic.Transport{Conn: conn, VerifySourceAddress: verify, ConnContext: ConnContext}
	defer tr.Close()
	tc := http3.ConfigureTLSConfig(s.TLSConfig)
	qc := s.QUICConfig
	if qc == nil {
		// http3.Server would turn 0-RTT on for a nil QUICConfig.
		qc = QUICConfig(nil)
	} else {
		qc = qc.Clone()
	}
	if s.EnableDatagrams {
		qc.EnableDatagrams = true
	}
	ln, err := tr.ListenEarly(tc, qc)
	if err != nil {
		return err
	}
	defer ln.Close()
	return s.ServeListener(ln)
}

// ListenAndServeTLS is refused: http3.Server.ListenAndServeTLS builds its
// configuration from the two files alone and would serve no attested
// certificate. Use ListenAndServe.
func (s *HTTP3Server) ListenAndServeTLS(certFile, keyFile string) error {
	return attest.Fail(attest.ErrConfig, "quic.config", "ListenAndServeTLS would ignore the attested TLSConfig; use ListenAndServe or Serve")
}

// RequireHandshake answers 425 Too Early (RFC 8470) to requests that
// arrive before their connection's handshake is complete (0-RTT early
// data), so that h only sees requests on connections whose handshake,
// VerifyConnection included, is complete. NewHTTP3Server applies it; it
// matters when 0-RTT has been turned back on, and costs nothing otherwise.
func RequireHandshake(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || !r.TLS.HandshakeComplete {
			http.Error(w, "atls: request received before the handshake completed (0-RTT); retry", http.StatusTooEarly)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func needALPN(base *tls.Config) error {
	if base == nil || len(base.NextProtos) == 0 {
		return attest.Fail(attest.ErrConfig, "quic.alpn", "QUIC requires an application protocol: set NextProtos in the base tls.Config (for example []string{\"h3\"})")
	}
	for _, p := range base.NextProtos {
		if strings.HasPrefix(p, atls.NoncePrefix) {
			return attest.Fail(attest.ErrConfig, "quic.alpn", "base NextProtos already hold an atls nonce entry; pass the application's own protocols")
		}
	}
	return nil
}
