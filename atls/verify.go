package atls

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/lru"
)

// newCache returns the verification cache for size: DefaultCacheSize
// entries when size is 0, none when it is negative.
func newCache(size int) *lru.Cache[[sha256.Size]byte, *attest.Claims] {
	if size == 0 {
		size = DefaultCacheSize
	}
	return lru.New[[sha256.Size]byte, *attest.Claims](size)
}

// DefaultMaxAge bounds the age of static-mode evidence when a verifier
// accepts it and sets no MaxAge of its own.
const DefaultMaxAge = 2 * time.Hour

// DefaultCacheSize is the number of verification results kept per Server
// or Client.
const DefaultCacheSize = 1024

// DefaultClaimsSize is the number of verified peers whose claims a Server
// or Client keeps for PeerClaims, independently of the verification cache.
// Claims of a peer evicted from it are no longer available (ok is false):
// read them when the connection is accepted.
const DefaultClaimsSize = 16384

// cacheTTL bounds how long a verification result is reused, so that
// changes in time-dependent checks (certificate expiry, revocation) are
// noticed.
const cacheTTL = 10 * time.Minute

// peerCheck is everything needed to appraise one peer certificate.
type peerCheck struct {
	verifier     attest.Verifier
	role         attest.Role // the role the peer must have attested as
	acceptStatic bool
	maxAge       time.Duration
	now          func() time.Time
	cache        *lru.Cache[[sha256.Size]byte, *attest.Claims]
	claims       *lru.Cache[[sha256.Size]byte, *attest.Claims]
	logger       *slog.Logger
}

// verify appraises the leaf certificate of cs. nonce is the nonce this
// side sent (nil if it sent none).
func (p *peerCheck) verify(ctx context.Context, cs tls.ConnectionState, nonce *[attest.NonceSize]byte) (*attest.Claims, error) {
	claims, err := p.verifyState(ctx, cs, nonce)
	if err != nil {
		if p.logger != nil {
			p.logger.LogAttrs(ctx, slog.LevelWarn, "atls: peer attestation rejected",
				slog.String("peer_role", p.role.String()),
				slog.String("check", attest.FailedCheck(err)),
				slog.String("error", err.Error()))
		}
		return nil, err
	}
	if p.logger != nil {
		p.logger.LogAttrs(ctx, slog.LevelDebug, "atls: peer attested",
			slog.String("peer_role", p.role.String()),
			slog.String("mode", claims.Mode.String()),
			slog.Bool("simulated", claims.Simulated),
			slog.String("evidence", claims.EvidenceDigest.String()))
	}
	return claims, nil
}

func (p *peerCheck) verifyState(ctx context.Context, cs tls.ConnectionState, nonce *[attest.NonceSize]byte) (*attest.Claims, error) {
	if cs.Version != tls.VersionTLS13 {
		return nil, attest.Fail(attest.ErrConfig, "tls.version", "attested TLS needs TLS 1.3, negotiated 0x%04x", cs.Version)
	}
	if len(cs.PeerCertificates) == 0 {
		return nil, attest.Fail(attest.ErrNotAttested, "tls.certificate", "peer sent no certificate")
	}
	if _, ok, _ := decodeNonce(cs.NegotiatedProtocol); ok {
		return nil, attest.Fail(attest.ErrBinding, "nonce.alpn", "peer selected the nonce entry as its application protocol")
	}
	leaf := cs.PeerCertificates[0]
	now := p.now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, attest.Fail(attest.ErrBinding, "certificate.validity", "certificate valid from %v to %v, now is %v",
			leaf.NotBefore.UTC(), leaf.NotAfter.UTC(), now.UTC())
	}
	ev, err := attest.FromCertificate(leaf)
	if err != nil {
		return nil, err
	}
	params, err := ev.Binding()
	if err != nil {
		return nil, err
	}
	if params.Role != p.role {
		return nil, attest.Fail(attest.ErrBinding, "binding.role", "evidence was made for a %v, expected a %v", params.Role, p.role)
	}
	var n [attest.NonceSize]byte
	switch params.Mode {
	case attest.ModeNonce:
		if nonce == nil {
			return nil, attest.Fail(attest.ErrBinding, "binding.nonce", "evidence is bound to a nonce, but this side sent none")
		}
		n = *nonce
	case attest.ModeStatic:
		if !p.acceptStatic {
			return nil, attest.Fail(attest.ErrBinding, "binding.freshness", "static evidence is not accepted; a fresh nonce-bound certificate is required")
		}
		maxAge := p.staticMaxAge()
		if age := now.Sub(leaf.NotBefore); age > maxAge {
			return nil, attest.Fail(attest.ErrBinding, "binding.max_age", "static evidence is %v old, more than the maximum %v", age.Round(time.Second), maxAge)
		}
	default:
		return nil, attest.Fail(attest.ErrBinding, "binding.freshness", "unsupported freshness mode %v", params.Mode)
	}
	b := attest.BindingForCertificate(leaf, params.Role, params.Mode, n)
	reportData, err := b.ReportData()
	if err != nil {
		return nil, attest.Wrap(attest.ErrBinding, "binding", err)
	}
	claims, err := p.appraise(ctx, ev, leaf, reportData)
	if err != nil {
		return nil, err
	}
	out := claims.Clone()
	out.Role, out.Mode = params.Role, params.Mode
	out.NotBefore, out.NotAfter = leaf.NotBefore, leaf.NotAfter
	keep := leaf.NotAfter
	if params.Mode == attest.ModeStatic {
		if end := leaf.NotBefore.Add(p.staticMaxAge()); end.Before(keep) {
			keep = end
		}
	}
	p.claims.Put(sha256.Sum256(leaf.Raw), out, time.Time{}, keep)
	return out.Clone(), nil
}

func (p *peerCheck) staticMaxAge() time.Duration {
	if p.maxAge <= 0 {
		return DefaultMaxAge
	}
	return p.maxAge
}

// appraise runs the verifier, through the cache: the key covers the
// evidence and the expected REPORT_DATA, so a hit means the very same
// question was answered yes before.
func (p *peerCheck) appraise(ctx context.Context, ev *attest.Evidence, leaf *x509.Certificate, reportData [attest.ReportDataSize]byte) (*attest.Claims, error) {
	enc, err := ev.MarshalJSON()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(enc)
	h.Write(reportData[:])
	var key [sha256.Size]byte
	h.Sum(key[:0])
	if c, ok := p.cache.Get(key, p.now()); ok {
		return c, nil
	}
	if p.verifier == nil {
		return nil, attest.Fail(attest.ErrConfig, "verifier", "no verifier configured")
	}
	claims, err := p.verifier.Verify(ctx, ev, reportData)
	if err != nil {
		return nil, err
	}
	if claims == nil {
		return nil, attest.Fail(attest.ErrVerification, "verifier", "verifier returned no claims")
	}
	exp := p.now().Add(cacheTTL)
	if leaf.NotAfter.Before(exp) {
		exp = leaf.NotAfter
	}
	if !claims.ValidUntil.IsZero() && claims.ValidUntil.Before(exp) {
		exp = claims.ValidUntil
	}
	p.cache.Put(key, claims, time.Time{}, exp)
	return claims, nil
}

// peerClaims returns the claims verified for the peer of cs, if this side
// verified that certificate.
func (p *peerCheck) peerClaims(cs tls.ConnectionState) (*attest.Claims, bool) {
	if len(cs.PeerCertificates) == 0 || p == nil {
		return nil, false
	}
	c, ok := p.claims.Get(sha256.Sum256(cs.PeerCertificates[0].Raw), p.now())
	if !ok {
		return nil, false
	}
	return c.Clone(), true
}
