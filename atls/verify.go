package atls

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"maps"
	"reflect"
	"sync"
	"sync/atomic"
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

// newClaims returns the store of verified claims for PeerClaims: def
// entries when size is 0, none when it is negative.
func newClaims(size, def int) *lru.Cache[[sha256.Size]byte, *attest.Claims] {
	if size == 0 {
		size = def
	}
	return lru.New[[sha256.Size]byte, *attest.Claims](size)
}

// DefaultMaxAge bounds the age of static-mode evidence when a verifier
// accepts it and sets no MaxAge of its own.
const DefaultMaxAge = 2 * time.Hour

// DefaultCacheSize is the number of verification results kept per Server
// or Client.
const DefaultCacheSize = 1024

// DefaultClaimsSize is the number of verified clients whose claims a
// Server with a ClientVerifier keeps for PeerClaims and RequestClaims,
// independently of the verification cache. A server reads them in its
// handlers for as long as a connection lives, so the store is sized for
// many open connections; one entry costs about 0.5 KiB (claims of one VM
// are stored once and shared, only the per-report fields are per entry),
// so 16384 entries take about 8 MiB. Claims of a peer evicted from it are
// no longer available (ok is false).
const DefaultClaimsSize = 16384

// DefaultClientClaimsSize is the number of verified servers whose claims
// a Client keeps for PeerClaims and ResponseClaims (see
// ClientOptions.ClaimsSize): enough for the open connections of a busy
// HTTP client (net/http keeps at most 100 idle connections by default),
// about 0.5 MiB.
const DefaultClientClaimsSize = 1024

// cacheTTL bounds how long a verification result is reused, so that
// changes in time-dependent checks (certificate expiry, revocation) are
// noticed.
const cacheTTL = 10 * time.Minute

// peerCheck is everything needed to appraise one peer certificate.
//
// Claims held in its caches are shared and never modified: callers get
// clones (peerClaims, VerifyCertificate).
type peerCheck struct {
	verifier     attest.Verifier
	role         attest.Role // the role the peer must have attested as
	acceptStatic bool
	maxAge       time.Duration
	now          func() time.Time
	// certs holds static-mode verdicts by the SHA-256 of the certificate,
	// consulted before anything is parsed. Role, acceptStatic and maxAge
	// are fixed per peerCheck and static evidence binds no nonce, so the
	// certificate is the whole question; each entry expires when a
	// time-dependent check would first refuse it (certificate validity,
	// maximum age, the verifier's ValidUntil) or after cacheTTL.
	certs *lru.Cache[[sha256.Size]byte, *attest.Claims]
	// cache holds appraisals by (evidence, expected REPORT_DATA).
	cache *lru.Cache[[sha256.Size]byte, *attest.Claims]
	// claims holds what PeerClaims returns, by the SHA-256 of the
	// certificate.
	claims *lru.Cache[[sha256.Size]byte, *attest.Claims]
	// lastSNP is the platform part of the last claims stored; equal parts
	// (all reports of one VM) share it, so that an entry of claims costs
	// only its per-report fields.
	lastSNP atomic.Pointer[attest.SNPClaims]
	logger  *slog.Logger
	// hooks are the application's Authorize and Trace (nil for none).
	hooks *peerHooks

	mu      sync.Mutex
	pending map[[sha256.Size]byte]*inflight // appraisals under way, by cache key
}

// verify appraises the leaf certificate of cs. nonce is the nonce this
// side sent (nil if it sent none). It runs inside the handshake, before
// crypto/tls has checked that the peer holds the certificate's key (its
// CertificateVerify), so success is logged as pending, never as attested.
// The returned claims are shared: do not modify them.
func (p *peerCheck) verify(ctx context.Context, cs tls.ConnectionState, nonce *[attest.NonceSize]byte) (*attest.Claims, error) {
	trace := p.hooks.traceOf()
	start := trace.verifyStart()
	claims, err := p.verifyState(ctx, cs, nonce)
	if err == nil {
		err = p.hooks.authorizePeer(claims, cs)
	}
	trace.verifyDone(p.role, claims, start, err)
	if err != nil {
		if p.logger != nil {
			p.logger.LogAttrs(ctx, slog.LevelWarn, "atls: peer attestation rejected",
				slog.String("peer_role", p.role.String()),
				slog.String("check", attest.FailedCheck(err)),
				slog.String("error", err.Error()))
		}
		return nil, err
	}
	if p.logger != nil && p.logger.Enabled(ctx, slog.LevelDebug) {
		p.logger.LogAttrs(ctx, slog.LevelDebug, "atls: peer evidence verified, proof of possession pending",
			slog.String("peer_role", p.role.String()),
			slog.String("mode", claims.Mode.String()),
			slog.Bool("simulated", claims.Simulated),
			slog.String("evidence", claims.EvidenceDigest.String()))
	}
	p.hooks.enter(cs, claims)
	return claims, nil
}

// verifyState runs the appraisal of the leaf of cs and returns shared
// claims (see peerCheck).
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
	key := sha256.Sum256(leaf.Raw)
	certKey := p.generationKey(key)
	c, ok := p.certs.Get(certKey, now)
	if p.certs != nil {
		p.hooks.traceOf().cacheLookup(CacheCertificate, ok)
	}
	if ok {
		p.keepClaims(key, c, now)
		return c, nil
	}
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
	n, err := p.freshness(params.Mode, leaf, nonce, now)
	if err != nil {
		return nil, err
	}
	// In batch mode this also checks the inclusion proof and yields the
	// REPORT_DATA of the root it leads to.
	reportData, err := attest.ExpectedReportData(ev, attest.BindingForCertificate(leaf, params.Role, params.Mode, n))
	if err != nil {
		return nil, err
	}
	claims, err := p.appraise(ctx, ev, params.Mode, reportData)
	if err != nil {
		return nil, err
	}
	out := p.accepted(claims, params, leaf)
	if params.Mode == attest.ModeBatch {
		// The appraisal may be another certificate's of the same batch:
		// name this certificate's evidence, proof included.
		d, err := ev.Digest()
		if err != nil {
			return nil, err
		}
		out.EvidenceDigest = d[:]
	}
	p.keepClaims(key, out, now)
	if params.Mode == attest.ModeStatic {
		p.certs.Put(certKey, out, leaf.NotBefore, p.expiry(out, now))
	}
	return out, nil
}

// accepted returns the claims of leaf, appraised as claims: the
// verifier's, which may be cached and shared, completed with the
// binding's parameters and the certificate's validity.
func (p *peerCheck) accepted(claims *attest.Claims, params attest.BindingParams, leaf *x509.Certificate) *attest.Claims {
	out := *claims
	out.Role, out.Mode = params.Role, params.Mode
	out.NotBefore, out.NotAfter = leaf.NotBefore, leaf.NotAfter
	out.SNP = p.shareSNP(claims.SNP)
	return &out
}

// freshness checks that the evidence's mode is accepted here and returns
// the nonce its binding must carry: this side's in nonce and batch mode
// (exactly the same freshness), none in static mode.
func (p *peerCheck) freshness(mode attest.Mode, leaf *x509.Certificate, nonce *[attest.NonceSize]byte, now time.Time) ([attest.NonceSize]byte, error) {
	var none [attest.NonceSize]byte
	switch mode {
	case attest.ModeNonce, attest.ModeBatch:
		if nonce == nil {
			return none, attest.Fail(attest.ErrBinding, "binding.nonce", "evidence is bound to a nonce, but this side sent none")
		}
		return *nonce, nil
	case attest.ModeStatic:
		if !p.acceptStatic {
			return none, attest.Fail(attest.ErrBinding, "binding.freshness", "static evidence is not accepted; a fresh nonce-bound certificate is required")
		}
		maxAge := p.staticMaxAge()
		if age := now.Sub(leaf.NotBefore); age > maxAge {
			return none, attest.Fail(attest.ErrBinding, "binding.max_age", "static evidence is %v old, more than the maximum %v", age.Round(time.Second), maxAge)
		}
		return none, nil
	}
	return none, attest.Fail(attest.ErrBinding, "binding.freshness", "unsupported freshness mode %v", mode)
}

// expiry is when a verdict on c, reached at now, must be reached again:
// the first moment a time-dependent check could decide otherwise.
func (p *peerCheck) expiry(c *attest.Claims, now time.Time) time.Time {
	exp := now.Add(cacheTTL)
	if c.NotAfter.Before(exp) {
		exp = c.NotAfter
	}
	if c.Mode == attest.ModeStatic {
		if end := c.NotBefore.Add(p.staticMaxAge()); end.Before(exp) {
			exp = end
		}
	}
	if !c.ValidUntil.IsZero() && c.ValidUntil.Before(exp) {
		exp = c.ValidUntil
	}
	return exp
}

// keepClaims stores c for PeerClaims until the certificate expires (or,
// for static evidence, reaches its maximum age).
func (p *peerCheck) keepClaims(key [sha256.Size]byte, c *attest.Claims, now time.Time) {
	if cur, ok := p.claims.Get(key, now); ok && cur == c {
		return
	}
	keep := c.NotAfter
	if c.Mode == attest.ModeStatic {
		if end := c.NotBefore.Add(p.staticMaxAge()); end.Before(keep) {
			keep = end
		}
	}
	p.claims.Put(key, c, time.Time{}, keep)
}

// shareSNP returns the platform claims last stored if they equal s, and
// s otherwise.
func (p *peerCheck) shareSNP(s *attest.SNPClaims) *attest.SNPClaims {
	if s == nil {
		return nil
	}
	if last := p.lastSNP.Load(); last != nil && reflect.DeepEqual(last, s) {
		return last
	}
	p.lastSNP.Store(s)
	return s
}

func (p *peerCheck) staticMaxAge() time.Duration {
	if p.maxAge <= 0 {
		return DefaultMaxAge
	}
	return p.maxAge
}

// appraise runs the verifier, through the cache: the key covers the
// evidence and the expected REPORT_DATA, so a hit means the very same
// question was answered yes before. In batch mode the key leaves out the
// inclusion proof, which the verifier does not read (reportData was
// computed from it and checked already), so that the certificates of one
// batch share one appraisal of their report. Nonce-bound evidence is
// never asked about twice, so it bypasses the cache.
func (p *peerCheck) appraise(ctx context.Context, ev *attest.Evidence, mode attest.Mode, reportData [attest.ReportDataSize]byte) (*attest.Claims, error) {
	if p.cache == nil || mode == attest.ModeNonce {
		return p.runVerifier(ctx, ev, reportData)
	}
	shared := ev
	if mode == attest.ModeBatch {
		shared = &attest.Evidence{Type: ev.Type, Records: maps.Clone(ev.Records)}
		delete(shared.Records, attest.BatchRecordLabel)
	}
	enc, err := shared.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var key [sha256.Size]byte
	h := sha256.New()
	h.Write(enc)
	h.Write(reportData[:])
	h.Sum(key[:0])
	key = p.generationKey(key)
	c, ok := p.cache.Get(key, p.now())
	p.hooks.traceOf().cacheLookup(CacheEvidence, ok)
	if ok {
		return c, nil
	}
	return p.appraiseOnce(ctx, key, ev, reportData)
}

// inflight is an appraisal under way; done is closed when claims and err
// are set.
type inflight struct {
	done   chan struct{}
	claims *attest.Claims
	err    error
}

// appraiseOnce runs the verifier for the cache key, or waits for the
// answer of a handshake already asking the same question: the
// certificates of one batch reach a client's connections at the same
// moment. A waiter whose leader failed asks again itself, so that one
// handshake's cancellation is not another's rejection.
func (p *peerCheck) appraiseOnce(ctx context.Context, key [sha256.Size]byte, ev *attest.Evidence, reportData [attest.ReportDataSize]byte) (*attest.Claims, error) {
	p.mu.Lock()
	if a, ok := p.pending[key]; ok {
		p.mu.Unlock()
		select {
		case <-a.done:
			if a.err == nil {
				return a.claims, nil
			}
			return p.runVerifier(ctx, ev, reportData)
		case <-ctx.Done():
			return nil, attest.Wrap(attest.ErrVerification, "verifier", ctx.Err())
		}
	}
	a := &inflight{done: make(chan struct{})}
	if p.pending == nil {
		p.pending = map[[sha256.Size]byte]*inflight{}
	}
	p.pending[key] = a
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, key)
		p.mu.Unlock()
		close(a.done)
	}()
	a.claims, a.err = p.runVerifier(ctx, ev, reportData)
	if a.err != nil {
		return nil, a.err
	}
	exp := p.now().Add(cacheTTL)
	if vu := a.claims.ValidUntil; !vu.IsZero() && vu.Before(exp) {
		exp = vu
	}
	p.cache.Put(key, a.claims, time.Time{}, exp)
	return a.claims, nil
}

// runVerifier asks the verifier.
func (p *peerCheck) runVerifier(ctx context.Context, ev *attest.Evidence, reportData [attest.ReportDataSize]byte) (*attest.Claims, error) {
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
