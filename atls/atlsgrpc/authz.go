package atlsgrpc

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/confidential-go/atls/atls"
)

// AuthorizeFunc decides whether the attested peer with claims may make
// the RPC whose context is ctx (grpc.Method(ctx) names it). A nil error
// admits it. An error that is a gRPC status (from status.Error) is
// returned to the peer as it is; any other error refuses the RPC with
// codes.PermissionDenied and the error's text.
type AuthorizeFunc func(ctx context.Context, claims *atls.Claims) error

// authorize runs authz on the peer of the RPC of ctx. A peer without
// verified claims is refused with codes.Unauthenticated, before authz runs.
func authorize(ctx context.Context, authz AuthorizeFunc) error {
	claims, ok := ClaimsFromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "atls: the peer of this connection is not attested (no verified claims)")
	}
	if authz == nil {
		return nil
	}
	err := authz(ctx, claims)
	if err == nil {
		return nil
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Err()
	}
	return status.Error(codes.PermissionDenied, "atls: not authorized: "+err.Error())
}

// UnaryServerInterceptor returns an interceptor that admits a unary RPC
// only from an attested peer (codes.Unauthenticated otherwise) that authz
// accepts (see AuthorizeFunc). A nil authz admits every attested peer.
// The server's credentials must verify clients: NewServerCredentials with
// an atls.Server that has a ClientVerifier.
func UnaryServerInterceptor(authz AuthorizeFunc) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := authorize(ctx, authz); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming RPCs:
// the stream is refused before the handler runs.
func StreamServerInterceptor(authz AuthorizeFunc) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := authorize(ss.Context(), authz); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}
