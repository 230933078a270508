package atlsgrpc

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"google.golang.org/grpc/credentials"
)

// Session-bound credentials (interop/SPEC.md section 9): the TLS handshake
// uses ordinary certificates, then each attested side sends evidence bound
// to the connection's exporter before gRPC sees the connection. One
// client credential serves every connection and reconnect, with no
// per-connection configuration. Claims are read as with the other
// credentials (ClaimsFromContext, ClaimsFromPeer).

// boundServerCreds are the credentials of NewBoundServerCredentials.
type boundServerCreds struct {
	cfg  *tls.Config
	opts atls.BoundOptions
}

// NewBoundServerCredentials returns gRPC server credentials in bound mode:
// opts.Attester attests the server, opts.Verifier (optional) requires
// attested clients. base may be nil (an ephemeral self-signed
// certificate) or carry the server's certificates; its NextProtos become
// ["h2"]. It fails with ErrConfig (check "bound.options").
func NewBoundServerCredentials(opts atls.BoundOptions, base *tls.Config) (credentials.TransportCredentials, error) {
	if opts.Attester == nil && opts.Verifier == nil {
		return nil, attest.Fail(attest.ErrConfig, "bound.options", "neither an Attester nor a Verifier: nothing to attest or verify")
	}
	b := &tls.Config{}
	if base != nil {
		b = base.Clone()
	}
	b.NextProtos = []string{alpnH2}
	cfg, err := atls.BoundTLSConfig(b, true)
	if err != nil {
		return nil, err
	}
	return &boundServerCreds{cfg: cfg, opts: opts}, nil
}

func (s *boundServerCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	// gRPC bounds the handshake with a deadline on raw; the exchange has
	// its own (BoundOptions.Timeout) as well.
	bc, err := atls.BoundServerHandshake(context.Background(), raw, s.cfg, &s.opts)
	if err != nil {
		raw.Close()
		return nil, nil, err
	}
	return boundAuth(bc)
}

func (s *boundServerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, attest.Fail(attest.ErrConfig, "grpc.config", "server credentials used by a client; use NewBoundClientCredentials")
}

func (s *boundServerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: AuthType}
}

func (s *boundServerCreds) Clone() credentials.TransportCredentials {
	return &boundServerCreds{cfg: s.cfg, opts: s.opts}
}

// OverrideServerName does nothing (a server has no server name).
func (s *boundServerCreds) OverrideServerName(string) error { return nil }

// boundClientCreds are the credentials of NewBoundClientCredentials.
type boundClientCreds struct {
	opts atls.BoundDialerOptions
	d    *atls.BoundDialer
}

// NewBoundClientCredentials returns gRPC client credentials in bound mode:
// opts.Bound.Verifier verifies the server, opts.Bound.Attester (optional)
// attests this client. opts.TLS (NextProtos become ["h2"]) is used for
// every connection as is; when it has no ServerName, the target's
// authority is used. It fails with ErrConfig (check "bound.options").
func NewBoundClientCredentials(opts atls.BoundDialerOptions) (credentials.TransportCredentials, error) {
	b := &tls.Config{}
	if opts.TLS != nil {
		b = opts.TLS.Clone()
	}
	b.NextProtos = []string{alpnH2}
	opts.TLS = b
	d, err := atls.NewBoundDialer(opts)
	if err != nil {
		return nil, err
	}
	return &boundClientCreds{opts: opts, d: d}, nil
}

func (c *boundClientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	bc, err := c.d.Client(ctx, raw, authority)
	if err != nil {
		return nil, nil, err
	}
	if p := bc.ConnectionState().NegotiatedProtocol; p != alpnH2 {
		bc.Close()
		return nil, nil, attest.Fail(attest.ErrConfig, "grpc.alpn", "the server negotiated ALPN %q, not %q as gRPC requires", p, alpnH2)
	}
	return boundAuth(bc)
}

func (c *boundClientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, attest.Fail(attest.ErrConfig, "grpc.config", "client credentials used by a server; use NewBoundServerCredentials")
}

func (c *boundClientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: AuthType}
}

func (c *boundClientCreds) Clone() credentials.TransportCredentials {
	return &boundClientCreds{opts: c.opts, d: c.d}
}

// OverrideServerName is not supported in bound mode: set opts.TLS's
// ServerName, or use grpc.WithAuthority.
func (c *boundClientCreds) OverrideServerName(string) error {
	return attest.Fail(attest.ErrConfig, "grpc.config", "OverrideServerName is not supported by bound credentials; set ServerName in the TLS configuration")
}

// boundConn is a bound connection handed to gRPC; closing it ends the
// claims of its peer.
type boundConn struct {
	*atls.BoundConn
	closed atomic.Bool
}

func (c *boundConn) Close() error {
	c.closed.Store(true)
	return c.BoundConn.Close()
}

func boundAuth(bc *atls.BoundConn) (net.Conn, credentials.AuthInfo, error) {
	c := &boundConn{BoundConn: bc}
	info := AuthInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		State:          bc.ConnectionState(),
		claims: func() (*atls.Claims, bool) {
			if c.closed.Load() {
				return nil, false
			}
			claims := bc.PeerClaims()
			return claims, claims != nil
		},
	}
	return c, info, nil
}
