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
// own. In an HTTP/3 handler, srv.RequestClaims(r) works as over TCP.
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
	"net"
	"net/http"
	"strings"

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

// QUICConfig returns a copy of qc (which may be nil) with 0-RTT refused,
// including in the configurations its GetConfigForClient returns.
func QUICConfig(qc *quic.Config) *quic.Config {
	var c *quic.Config
	if qc == nil {
		c = &quic.Config{}
	} else {
		c = qc.Clone()
	}
	c.Allow0RTT = false
	if get := c.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(info *quic.ClientInfo) (*quic.Config, error) {
			conf, err := get(info)
			if conf == nil || err != nil {
				return conf, err
			}
			conf = conf.Clone()
			conf.Allow0RTT = false
			conf.GetConfigForClient = nil
			return conf, nil
		}
	}
	return c
}

// Listen listens for attested QUIC connections on conn. base names the
// application protocol (NextProtos) and may carry the server's other TLS
// settings; qc may be nil. Accept returns connections whose handshake,
// attestation checks included, is complete.
func Listen(conn net.PacketConn, srv *atls.Server, base *tls.Config, qc *quic.Config) (*quic.Listener, error) {
	cfg, err := ServerConfig(srv, base)
	if err != nil {
		return nil, err
	}
	return quic.Listen(conn, cfg, QUICConfig(qc))
}

// ListenAddr is Listen on a new UDP socket bound to addr.
func ListenAddr(addr string, srv *atls.Server, base *tls.Config, qc *quic.Config) (*quic.Listener, error) {
	cfg, err := ServerConfig(srv, base)
	if err != nil {
		return nil, err
	}
	return quic.ListenAddr(addr, cfg, QUICConfig(qc))
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
	return quic.DialAddr(ctx, addr, cfg, qc)
}

// Dial is DialAddr over an existing quic.Transport, which can carry many
// connections on one UDP socket.
func Dial(ctx context.Context, tr *quic.Transport, addr net.Addr, cli *atls.Client, base *tls.Config, qc *quic.Config) (*quic.Conn, error) {
	cfg, err := clientConfigFor(cli, base, addr.String())
	if err != nil {
		return nil, err
	}
	return tr.Dial(ctx, addr, cfg, qc)
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
		Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			// http3 hands a clone of TLSClientConfig with NextProtos
			// ["h3"] and ServerName set.
			return DialAddr(ctx, addr, cli, tlsCfg, qc)
		},
	}
}

// NewHTTP3Server returns an HTTP/3 server for h whose connections are
// attested by srv: TLSConfig is srv's configuration hooked onto base
// (NextProtos become ["h3"]), QUICConfig refuses 0-RTT, and h runs behind
// RequireHandshake. Start it with ListenAndServe (after setting Addr),
// Serve or ServeListener, never with ListenAndServeTLS, which ignores
// TLSConfig (see the package documentation).
func NewHTTP3Server(srv *atls.Server, base *tls.Config, h http.Handler) *http3.Server {
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
	return &http3.Server{
		TLSConfig:  srv.Hook(b),
		QUICConfig: QUICConfig(nil),
		Handler:    RequireHandshake(h),
	}
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
