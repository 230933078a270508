// Package atlsgrpc runs gRPC over attested TLS: transport credentials
// made from an atls.Server or atls.Client, the peer's verified claims in
// each RPC's context, and interceptors that authorize RPCs by them.
//
// Server, with mutual attestation (the atls.Server has a ClientVerifier):
//
//	creds, err := atlsgrpc.NewServerCredentials(srv, nil)
//	gs := grpc.NewServer(grpc.Creds(creds),
//		grpc.UnaryInterceptor(atlsgrpc.UnaryServerInterceptor(authorize)),
//		grpc.StreamInterceptor(atlsgrpc.StreamServerInterceptor(authorize)))
//	// in a handler:
//	claims, ok := atlsgrpc.ClaimsFromContext(ctx)
//
// Client:
//
//	creds, err := atlsgrpc.NewClientCredentials(cli, nil)
//	conn, err := grpc.NewClient("service.internal:8443", grpc.WithTransportCredentials(creds))
//
// What it adds to package atls, and the traps it avoids:
//
//   - A client configuration from atls.Client.TLSConfig or Hook carries the
//     nonce of one handshake. credentials.NewTLS(cfg) with such a
//     configuration serves the first connection and fails every reconnect
//     (check "nonce.reuse"). The client credentials here make a fresh
//     configuration, and nonce, for every handshake, so reconnects work.
//   - The claims of the peer are kept in the connection's AuthInfo for the
//     life of the connection (not in a store that expires with the peer's
//     certificate), and are gone once the connection has closed.
//   - Both sides negotiate ALPN "h2", as gRPC requires; a server that does
//     not is refused (check "grpc.alpn").
//
// The claims of a client are known only when the server verifies clients
// (ServerOptions.ClientVerifier): with one-way attestation the server's
// handlers see no claims, and the interceptors refuse every RPC.
package atlsgrpc

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
)

// AuthType is the AuthType of the AuthInfo of attested connections.
const AuthType = "atls"

const alpnH2 = "h2"

// AuthInfo is the credentials.AuthInfo of a connection made with this
// package's credentials: the TLS state and the peer's verified claims.
type AuthInfo struct {
	credentials.CommonAuthInfo
	// State is the TLS state of the connection.
	State tls.ConnectionState
	// claims reads the peer's claims while the connection lives.
	claims func() (*atls.Claims, bool)
}

// AuthType returns AuthType.
func (AuthInfo) AuthType() string { return AuthType }

// Claims returns the verified claims of the peer of the connection: the
// server's on a client, the client's on a server that verifies clients.
// ok is false when the peer was not verified by attestation, and once the
// connection has closed. The result is a copy the caller may modify.
func (a AuthInfo) Claims() (*atls.Claims, bool) {
	if a.claims == nil {
		return nil, false
	}
	return a.claims()
}

// ClaimsFromPeer returns the verified claims of p, the peer of an RPC on a
// connection made with this package's credentials (see AuthInfo.Claims).
func ClaimsFromPeer(p *peer.Peer) (*atls.Claims, bool) {
	if p == nil {
		return nil, false
	}
	switch a := p.AuthInfo.(type) {
	case AuthInfo:
		return a.Claims()
	case *AuthInfo:
		if a != nil {
			return a.Claims()
		}
	}
	return nil, false
}

// ClaimsFromContext returns the verified claims of the peer of the RPC
// whose context is ctx (a server handler's, or an interceptor's): see
// ClaimsFromPeer.
func ClaimsFromContext(ctx context.Context) (*atls.Claims, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, false
	}
	return ClaimsFromPeer(p)
}

// serverCreds are the credentials of NewServerCredentials.
type serverCreds struct {
	cfg *tls.Config // from Server.Hook: reusable across connections
}

// NewServerCredentials returns gRPC server credentials whose connections
// are attested by srv (and whose clients srv verifies, with a
// ClientVerifier): srv's configuration hooked onto base (which may be nil)
// with NextProtos ["h2"]. Set them with grpc.Creds.
func NewServerCredentials(srv *atls.Server, base *tls.Config) (credentials.TransportCredentials, error) {
	if srv == nil {
		return nil, attest.Fail(attest.ErrConfig, "grpc.config", "no atls.Server")
	}
	b := &tls.Config{}
	if base != nil {
		b = base.Clone()
	}
	b.NextProtos = []string{alpnH2}
	return &serverCreds{cfg: srv.Hook(b)}, nil
}

func (s *serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	// The context lives as long as the connection: the claims the
	// handshake records in it are emptied when the connection closes.
	ctx, cancel := context.WithCancel(context.Background())
	tc := tls.Server(raw, s.cfg)
	ctx = atls.ConnContext(ctx, tc)
	// gRPC bounds the handshake with a deadline on raw.
	if err := tc.HandshakeContext(ctx); err != nil {
		cancel()
		tc.Close()
		return nil, nil, err
	}
	info := AuthInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		State:          tc.ConnectionState(),
		claims:         func() (*atls.Claims, bool) { return atls.ClaimsFromContext(ctx) },
	}
	return &conn{Conn: tc, end: cancel}, info, nil
}

func (s *serverCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, attest.Fail(attest.ErrConfig, "grpc.config", "server credentials used by a client; use NewClientCredentials")
}

func (s *serverCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: AuthType}
}

func (s *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{cfg: s.cfg}
}

// OverrideServerName does nothing: a server has no server name to
// override. It is part of credentials.TransportCredentials.
func (s *serverCreds) OverrideServerName(string) error { return nil }

// clientCreds are the credentials of NewClientCredentials.
type clientCreds struct {
	cli  *atls.Client
	base *tls.Config // NextProtos ["h2"]; never handed to a handshake itself
}

// NewClientCredentials returns gRPC client credentials that attest every
// connection with cli: each handshake, reconnects included, gets a fresh
// configuration (and nonce) hooked onto base, which may be nil (cli's
// ClientOptions.Base is not used), with NextProtos ["h2"]. When base has
// no ServerName it is taken from the target's authority. Set them with
// grpc.WithTransportCredentials.
func NewClientCredentials(cli *atls.Client, base *tls.Config) (credentials.TransportCredentials, error) {
	if cli == nil {
		return nil, attest.Fail(attest.ErrConfig, "grpc.config", "no atls.Client")
	}
	b := &tls.Config{}
	if base != nil {
		b = base.Clone()
	}
	b.NextProtos = []string{alpnH2}
	return &clientCreds{cli: cli, base: b}, nil
}

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	b := c.base.Clone()
	if b.ServerName == "" {
		host, _, err := net.SplitHostPort(authority)
		if err != nil {
			host = authority
		}
		b.ServerName = host
	}
	tc, claims, err := c.cli.Handshake(ctx, raw, b)
	if err != nil {
		return nil, nil, err
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != alpnH2 {
		tc.Close()
		return nil, nil, attest.Fail(attest.ErrConfig, "grpc.alpn", "the server negotiated ALPN %q, not %q as gRPC requires", cs.NegotiatedProtocol, alpnH2)
	}
	cc := &conn{Conn: tc}
	info := AuthInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		State:          cs,
		claims: func() (*atls.Claims, bool) {
			if claims == nil || cc.ended() {
				return nil, false
			}
			return claims.Clone(), true
		},
	}
	return cc, info, nil
}

func (c *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, attest.Fail(attest.ErrConfig, "grpc.config", "client credentials used by a server; use NewServerCredentials")
}

func (c *clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: AuthType}
}

func (c *clientCreds) Clone() credentials.TransportCredentials {
	return &clientCreds{cli: c.cli, base: c.base.Clone()}
}

// OverrideServerName sets the server name (SNI) sent in later
// handshakes; call it before the credentials are in use. It is part of
// credentials.TransportCredentials, where it is deprecated: prefer
// base.ServerName, or grpc.WithAuthority, whose host is sent when
// base.ServerName is empty.
func (c *clientCreds) OverrideServerName(name string) error {
	c.base.ServerName = name
	return nil
}

// conn is an attested connection; closing it ends the claims of its peer.
type conn struct {
	*tls.Conn
	end    context.CancelFunc // nil on the client
	closed atomic.Bool
}

// Close closes the connection and drops the claims of its peer.
func (c *conn) Close() error {
	if !c.closed.Swap(true) && c.end != nil {
		c.end()
	}
	return c.Conn.Close()
}

// ended reports whether Close was called.
func (c *conn) ended() bool { return c.closed.Load() }
