package atls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"time"

	"github.com/confidential-go/atls/atls/attest"
)

// VerifyCertificateOptions configure VerifyCertificate.
type VerifyCertificateOptions struct {
	// Verifier appraises the evidence (for SEV-SNP, an *snp.Verifier with
	// its roots and policy). Required.
	Verifier attest.Verifier
	// Role is the role the certificate must have been made for:
	// attest.RoleServer (the zero value selects it) or attest.RoleClient.
	Role attest.Role
	// Nonce is the nonce the evidence must be bound to, for nonce-mode
	// and batch-mode certificates: the one the verifier sent to the
	// attester. Nil means none was sent, and such evidence is refused.
	Nonce *[attest.NonceSize]byte
	// AcceptStatic accepts static-mode evidence no older than MaxAge
	// (default DefaultMaxAge).
	AcceptStatic bool
	MaxAge       time.Duration
	// Now returns the current time (default time.Now). It decides the
	// certificate's validity and the age of static evidence; the
	// Verifier has its own clock for the AMD certificates.
	Now func() time.Time
}

// VerifyCertificate appraises an attested certificate outside a TLS
// handshake, for example one written by `atls certgen` or saved from a
// connection. It runs exactly the checks a Client or Server runs on a
// peer's certificate in VerifyConnection (validity, evidence extension,
// role, freshness, REPORT_DATA binding, through the inclusion proof for
// batched evidence, then the Verifier's chain, signature and policy) and
// returns the verified claims or an error naming the failed check.
//
// What a handshake adds and this cannot: proof that the party presenting
// the certificate holds its private key (the TLS CertificateVerify). A
// verified certificate shows that its key was made inside the attested
// VM; whoever uses it must still prove possession of that key.
//
// Nothing is cached between calls.
func VerifyCertificate(ctx context.Context, cert *x509.Certificate, opts VerifyCertificateOptions) (*Claims, error) {
	if opts.Verifier == nil {
		return nil, attest.Fail(attest.ErrConfig, "verifier", "no verifier configured")
	}
	role := opts.Role
	switch role {
	case 0:
		role = attest.RoleServer
	case attest.RoleServer, attest.RoleClient:
	default:
		return nil, attest.Fail(attest.ErrConfig, "verify.options", "invalid role %v", role)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	p := &peerCheck{
		verifier:     opts.Verifier,
		role:         role,
		acceptStatic: opts.AcceptStatic,
		maxAge:       opts.MaxAge,
		now:          now,
	}
	// No caches (nil ones keep nothing). The state of a completed TLS 1.3
	// handshake that received cert and negotiated no application protocol.
	cs := tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true}
	if cert != nil {
		cs.PeerCertificates = []*x509.Certificate{cert}
	}
	claims, err := p.verifyState(ctx, cs, opts.Nonce)
	if err != nil {
		return nil, err
	}
	return claims.Clone(), nil
}
