// Package atls makes attested TLS configurations: a service in a
// confidential VM proves what it is to the peer of every TLS 1.3
// connection, with hardware evidence bound to the certificate key.
//
// A Server presents, per connection, a fresh self-signed certificate whose
// id-pe-cmw extension carries an attestation report over the hash of the
// certificate key, its validity, the role and the client's nonce. A Client
// sends that nonce (as an extra ALPN entry) and appraises the certificate
// in VerifyConnection: hardware signature up to a pinned root, the binding
// to this certificate and this nonce, and a policy on the reported state.
// Checks run in VerifyConnection so that no handshake, resumed or not,
// skips them.
//
// The platform is behind two small interfaces, attest.Attester and
// attest.Verifier; package snp implements them for AMD SEV-SNP (with a
// simulator for development). Configurations come in two forms: built
// from scratch (Server.TLSConfig, Client.TLSConfig) or patched onto the
// application's own tls.Config (Server.Hook, Client.Hook), which keeps the
// application's NextProtos, certificates for the non-attested side and
// VerifyConnection.
//
// Supported combinations:
//   - attested server, verifying client: ServerOptions{Attester},
//     ClientOptions{Verifier};
//   - mutual attestation: ServerOptions{Attester, ClientVerifier},
//     ClientOptions{Verifier, Attester};
//   - attested server, ordinary client certificates: ServerOptions{Attester}
//     hooked onto a base with ClientAuth and ClientCAs; the client hooks
//     a base with Certificates;
//   - attested client, ordinary server PKI: ServerOptions{ClientVerifier}
//     hooked onto a base with Certificates; ClientOptions{Attester} with a
//     base holding RootCAs.
package atls

import (
	"net/http"

	"github.com/confidential-go/atls/atls/attest"
)

// Aliases of the platform-neutral types, so that most programs import
// only this package and a platform package.
type (
	// Claims are the verified claims of a peer.
	Claims = attest.Claims
	// CheckError names the check that failed.
	CheckError = attest.CheckError
	// Attester produces evidence; Verifier appraises it.
	Attester = attest.Attester
	Verifier = attest.Verifier
)

// Sentinel errors; see package attest.
var (
	ErrNotAttested       = attest.ErrNotAttested
	ErrMalformedEvidence = attest.ErrMalformedEvidence
	ErrVerification      = attest.ErrVerification
	ErrBinding           = attest.ErrBinding
	ErrPolicy            = attest.ErrPolicy
	ErrConfig            = attest.ErrConfig
	ErrUnsupported       = attest.ErrUnsupported
	ErrBusy              = attest.ErrBusy
)

// RequestClaims returns the verified claims of the client that sent r,
// for a server with a ClientVerifier, while they are kept (see
// Server.PeerClaims: until the client's certificate expires, which a
// long-lived HTTP/2 or HTTP/3 connection outlives). Prefer
// ClaimsFromContext(r.Context()) with http.Server.ConnContext set to
// ConnContext: it answers for the whole life of the connection.
func (s *Server) RequestClaims(r *http.Request) (*Claims, bool) {
	if r == nil || r.TLS == nil {
		return nil, false
	}
	return s.PeerClaims(*r.TLS)
}

// ResponseClaims returns the verified claims of the server that sent
// resp, for responses received through this Client's Transport, while
// they are kept (see Client.PeerClaims: until the server's certificate
// expires, which a long-lived HTTP/2 or HTTP/3 connection outlives).
func (c *Client) ResponseClaims(resp *http.Response) (*Claims, bool) {
	if resp == nil || resp.TLS == nil {
		return nil, false
	}
	return c.PeerClaims(*resp.TLS)
}
