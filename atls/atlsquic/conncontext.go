package atlsquic

import (
	"context"

	"github.com/quic-go/quic-go"

	"github.com/confidential-go/atls/atls"
)

// ConnContext gives every connection a quic.Transport accepts a record for
// the verified claims of its client (see atls.ConnContext): set it as
// quic.Transport.ConnContext on a transport of your own. NewTransport,
// Listen, ListenAddr and the server of NewHTTP3Server set it. It never
// refuses a connection.
func ConnContext(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	return atls.ConnContext(ctx, nil), nil
}

// ConnClaims returns the verified claims of the client of conn, a
// connection accepted by an atls.Server with a ClientVerifier on a
// transport with ConnContext, for the whole life of the connection:
// unlike Server.PeerClaims they do not expire with the client's
// certificate, and ok is false once the connection is closed. In an
// HTTP/3 handler, atls.ClaimsFromContext(r.Context()) returns the same.
func ConnClaims(conn *quic.Conn) (*atls.Claims, bool) {
	if conn == nil {
		return nil, false
	}
	return atls.ClaimsFromContext(conn.Context())
}
