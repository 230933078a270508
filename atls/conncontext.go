package atls

import (
	"context"
	"net"
	"sync"

	"github.com/confidential-go/atls/atls/attest"
)

// Claims for the life of a connection.
//
// PeerClaims, RequestClaims and ResponseClaims look claims up in a
// bounded store keyed by the peer's certificate, whose entries expire with
// that certificate (NotAfter, about ten minutes after a nonce handshake):
// on a connection that outlives its certificate (HTTP/2, HTTP/3, gRPC)
// they stop answering. A connection record does not expire: ConnContext
// puts one in the context of a connection before its handshake, the
// handshake fills it once the peer's evidence is verified, and it answers
// for as long as the context it is read from is not done: the context of
// a connection is cancelled when the connection closes (net/http, quic-go,
// package atlsgrpc), and those derived from it (a request's) with it.

// connRecordKey is the context key of a *connRecord.
type connRecordKey struct{}

// connRecord holds the verified claims of the peer of one connection.
type connRecord struct {
	mu     sync.Mutex
	claims *attest.Claims // shared: handed out as clones
	shared bool           // filled by two handshakes: answers nothing
}

// ConnContext returns a copy of ctx carrying an empty record for the
// verified claims of the peer of one connection. Set it as
// http.Server.ConnContext (c is unused; the signature is that field's):
//
//	hs := &http.Server{TLSConfig: srv.TLSConfig(), ConnContext: atls.ConnContext, Handler: h}
//
// and handlers read the claims of the connection's client with
// ClaimsFromContext(r.Context()), for as long as the connection lives.
//
// The record is filled when the handshake is made with that context
// (tls.Conn.HandshakeContext, which net/http calls with the connection's
// context) and a Server configuration that verifies clients
// (ServerOptions.ClientVerifier) accepts the client's evidence. Packages
// atlsquic and atlsgrpc do the same for QUIC connections and gRPC
// transports. When handshaking yourself, use one such context per
// connection, cancelled when the connection closes: a record filled by
// two handshakes answers nothing.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connRecordKey{}, &connRecord{})
}

// ClaimsFromContext returns the verified claims of the peer of the
// connection whose context ctx is or derives from (see ConnContext): in an
// HTTP handler, ClaimsFromContext(r.Context()) gives the claims of the
// client that sent r. ok is false when ctx carries no connection record,
// when the peer was not verified by this library (one-way attestation:
// a server does not verify its clients), and once ctx is done: a
// connection's context is cancelled when the connection closes, a
// request's when the request ends or its connection closes. Unlike
// RequestClaims, the claims do not expire with the peer's certificate:
// they are the claims the connection was accepted with, for its whole
// life. The result is a copy the caller may modify.
//
// The record is filled by the handshake before it completes (while the
// peer's proof of possession of its key is still pending); code that runs
// only on connections whose handshake completed, as handlers do, sees
// exactly the claims of accepted peers.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	if ctx == nil || ctx.Err() != nil {
		return nil, false
	}
	rec, _ := ctx.Value(connRecordKey{}).(*connRecord)
	if rec == nil {
		return nil, false
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.shared || rec.claims == nil {
		return nil, false
	}
	return rec.claims.Clone(), true
}

// recordClaims fills the connection record carried by hctx, the context
// of the handshake that verified claims (crypto/tls cancels it when the
// handshake ends; the record is read through the connection's context).
// A record is filled once: a second verification on the same record
// (a context shared by mistake between connections) leaves it empty
// rather than let one connection read another's claims.
func recordClaims(hctx context.Context, claims *attest.Claims) {
	if hctx == nil || claims == nil {
		return
	}
	rec, _ := hctx.Value(connRecordKey{}).(*connRecord)
	if rec == nil {
		return
	}
	rec.mu.Lock()
	switch {
	case rec.shared:
	case rec.claims != nil:
		rec.claims, rec.shared = nil, true
	default:
		rec.claims = claims
	}
	rec.mu.Unlock()
}
