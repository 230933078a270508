package atls

import (
	"context"
	"crypto/tls"
	"net"
)

// Handshake runs an attested client handshake over conn, a connection
// made by someone else (a framework's dialer, a proxy tunnel), with a
// configuration made for this handshake alone from base (nil means
// ClientOptions.Base), and returns the TLS connection and the verified
// claims of its server (nil when the server is verified by ordinary PKI,
// without a Verifier). It is what DialContext does after dialling, and
// what transports that bring their own connections need (package
// atlsgrpc uses it).
//
// The claims are this connection's for its whole life: keep them with
// the connection rather than asking PeerClaims later, whose entries
// expire with the server's certificate.
//
// On failure conn is closed. When the configuration has no ServerName,
// none is sent: set base.ServerName for servers that need SNI.
func (c *Client) Handshake(ctx context.Context, conn net.Conn, base *tls.Config) (*tls.Conn, *Claims, error) {
	if base == nil {
		base = c.opts.Base
	}
	cfg, verified, err := c.hookVerdict(ctx, base)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	addr := ""
	if ra := conn.RemoteAddr(); ra != nil {
		addr = ra.String()
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.logHandshake(ctx, addr, verified.Load(), err)
		tc.Close()
		return nil, nil, err
	}
	claims := verified.Load()
	c.logHandshake(ctx, addr, claims, nil)
	if claims != nil {
		claims = claims.Clone()
	}
	return tc, claims, nil
}
