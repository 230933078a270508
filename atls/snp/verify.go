package snp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	"github.com/google/go-sev-guest/verify"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/lru"
)

// DefaultCertCacheSize is the number of VCEK chain results a Verifier
// remembers unless VerifierOptions.CertCacheSize says otherwise.
const DefaultCertCacheSize = 256

// VerifierOptions configure a Verifier.
type VerifierOptions struct {
	// Roots are the AMD roots to trust. Required: there is no fallback,
	// so that a missing setting cannot silently mean "AMD's roots" or
	// "anything". Use AMDRoots() for real hardware, and a simulator's
	// SimChain.Roots() only where simulated evidence is explicitly wanted
	// (claims then say Simulated).
	Roots *Roots
	// Policy says which reports to accept. Required; NewVerifier
	// validates it and keeps its own copy.
	Policy *Policy
	// Now returns the time at which certificates must be valid. Default
	// time.Now. Tests pin it to verify old evidence.
	Now func() time.Time
	// Logger receives a record per verification (rejections at Info,
	// acceptances at Debug). Nil is silent.
	Logger *slog.Logger
	// CRLs are AMD's CRLs (DER) that the verifier holds itself, keyed by
	// product line ("Milan", "Genoa", "Turin"): the VCEK CRL that AMD's KDS
	// publishes per product, signed by that product's ARK. Nil holds
	// none. For VCEK-signed evidence of a product listed here, this CRL
	// and the one the attester sent (if any) compete, and the freshest
	// wins: of those signed by the pinned ARK (a CRL that is not fails,
	// "snp.crl") and current (thisUpdate passed, nextUpdate not), the one
	// with the latest thisUpdate decides, the verifier's on a tie. So a
	// peer cannot displace a newer CRL held here with an older one, and a
	// CRL held here that has lapsed gives way to a current one from the
	// peer. When there are CRLs but none is current, verification fails
	// ("snp.crl.stale"): keep them current. Policy.MaximumCRLAge bounds
	// the age of the deciding CRL. Nothing is ever fetched.
	CRLs map[string][]byte
	// CertCacheSize bounds the cache of VCEK chain results: verifying
	// that a VCEK chains to the roots takes several RSA-4096 signature
	// checks, and a peer presents the same VCEK until its firmware
	// changes. Zero means DefaultCertCacheSize; negative disables the
	// cache.
	CertCacheSize int
}

// Verifier appraises SEV-SNP evidence: it checks the report's structure,
// the VCEK (or VLEK) chain to its pinned roots, the report signature, the
// REPORT_DATA binding and its Policy, in that order, and fails closed at
// the first problem with an *attest.CheckError naming the check.
//
// Verification is offline: nothing is ever fetched from AMD's Key
// Distribution Service, and revocation is checked only against a CRL the
// evidence carries or the verifier holds (VerifierOptions.CRLs, which
// also says which one decides). A Verifier is safe for concurrent use.
//
// Its policy, roots and CRLs can be replaced while it is in use
// (SetPolicy, SetRoots, SetCRLs): each verification runs under the one
// configuration in force when it starts, never a mix, and Generation
// changes with each replacement so that callers' caches (package atls's)
// do not reuse a result reached under an earlier one.
type Verifier struct {
	// live is the configuration in force (see live.go). The fields
	// roots, rootsID, policy, crls and gen below are those of one
	// verification's snapshot, taken from live; they are unset on the
	// Verifier NewVerifier returns.
	live atomic.Pointer[verifierConfig]
	mu   sync.Mutex // serializes replacements of live

	roots   *Roots
	rootsID [sha256.Size]byte
	policy  *Policy
	gen     uint64
	now     func() time.Time
	log     *slog.Logger
	// cache remembers, for a bounded number of signer certificates, that
	// the certificate chains to the roots, and until when that holds.
	// Only successes are cached, so a transient failure is never
	// remembered and a peer cannot plant an entry without a genuine
	// certificate. Nil when disabled.
	// The value is when the deciding CRL lapses (zero without CRLs).
	cache *lru.Cache[[sha256.Size]byte, time.Time]
	// crls are the verifier's own CRLs by product line.
	crls map[string]verifierCRL
}

var _ attest.Verifier = (*Verifier)(nil)

// NewVerifier returns a Verifier, or an error of kind attest.ErrConfig if
// the roots or the policy are missing or the policy is invalid.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	if opts.Roots.Empty() {
		return nil, attest.Fail(attest.ErrConfig, "snp.config", "no AMD roots: set VerifierOptions.Roots, to AMDRoots() for real hardware")
	}
	if opts.Policy == nil {
		return nil, attest.Fail(attest.ErrConfig, "snp.config", "no policy: set VerifierOptions.Policy (see NewPolicy and ParsePolicy)")
	}
	pol := opts.Policy.clone()
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	crls, err := parseVerifierCRLs(opts.CRLs)
	if err != nil {
		return nil, err
	}
	roots := snapshotRoots(opts.Roots)
	v := &Verifier{
		now: opts.Now,
		log: opts.Logger,
	}
	// The cache key includes the identity of the roots so that a cached
	// result can never be read under other roots, whatever becomes of
	// the cache's scope later.
	v.live.Store(&verifierConfig{gen: 1, roots: roots, rootsID: rootsIdentity(roots), policy: pol, crls: crls})
	if v.now == nil {
		v.now = time.Now
	}
	size := opts.CertCacheSize
	if size == 0 {
		size = DefaultCertCacheSize
	}
	if size > 0 {
		v.cache = lru.New[[sha256.Size]byte, time.Time](size)
	}
	return v, nil
}

// snapshotRoots copies r so that later AddPEM calls on the caller's Roots
// do not change what a Verifier trusts.
func snapshotRoots(r *Roots) *Roots {
	// Roots holding any ARK that is not AMD's count as simulated, however
	// they were flagged: claims never call evidence real that a non-AMD
	// root vouched for.
	c := &Roots{Simulated: r.Simulated || !r.onlyAMD(), chains: make(map[string][]chain, len(r.chains))}
	for p, cs := range r.chains {
		c.chains[p] = slices.Clone(cs)
	}
	return c
}

// Verify implements attest.Verifier for evidence made by NewEvidence.
func (v *Verifier) Verify(ctx context.Context, ev *attest.Evidence, reportData [attest.ReportDataSize]byte) (*attest.Claims, error) {
	p, err := ParseEvidence(ev)
	if err != nil {
		v.logResult(nil, err)
		return nil, err
	}
	claims, err := v.VerifyReport(ctx, p.Report, p.Cert, p.CRL, reportData)
	if err != nil {
		return nil, err
	}
	d, err := ev.Digest()
	if err != nil {
		return nil, attest.Wrap(attest.ErrMalformedEvidence, "snp.evidence", err)
	}
	claims.EvidenceDigest = d[:]
	return claims, nil
}

// VerifyReport runs the verification pipeline on the raw parts of
// evidence: a report of ReportSize bytes, the DER certificate of the key
// that signed it, and an optional DER CRL (nil for none). Claims carry
// the SHA-256 of NewEvidence(report, cert, crl) as EvidenceDigest.
func (v *Verifier) VerifyReport(ctx context.Context, report, cert, crl []byte, reportData [attest.ReportDataSize]byte) (*attest.Claims, error) {
	return v.verifyReport(ctx, report, cert, crl, &reportData)
}

// VerifyUnboundReport runs the verification pipeline on a report that is
// not bound to anything the caller knows, such as a report an operator
// saved with snpguest: everything VerifyReport checks, except that
// REPORT_DATA is compared with reportData only when reportData is not
// nil ("snp.report_data" then, as in VerifyReport).
//
// With a nil reportData the claims show that AMD hardware produced the
// report for a guest the policy accepts, not when, nor for which key,
// nonce or connection: anyone can replay a saved report. Never use it for
// evidence received from a peer; Verify and VerifyReport (which the TLS
// code calls through attest.Verifier) always check the binding. The
// claims' binding parameters (Role, Mode, NotBefore, NotAfter) are zero:
// the report has none.
func (v *Verifier) VerifyUnboundReport(ctx context.Context, report, cert, crl []byte, reportData *[attest.ReportDataSize]byte) (*attest.Claims, error) {
	if reportData != nil {
		rd := *reportData
		reportData = &rd
	}
	return v.verifyReport(ctx, report, cert, crl, reportData)
}

// verifyReport is VerifyReport, with the binding check skipped when
// reportData is nil (VerifyUnboundReport only).
func (v *Verifier) verifyReport(ctx context.Context, report, cert, crl []byte, reportData *[attest.ReportDataSize]byte) (claims *attest.Claims, err error) {
	defer func() {
		// The report and certificate come from the peer and go through
		// third-party parsers. Whatever happens there must end in a
		// rejection, not in a crashed server.
		if r := recover(); r != nil {
			claims = nil
			err = attest.Fail(attest.ErrVerification, "snp.internal", "internal error while verifying evidence: %v", r)
		}
		v.logResult(claims, err)
	}()
	// One configuration for the whole pipeline (see SetPolicy).
	claims, err = v.snapshot().verify(ctx, report, cert, crl, reportData)
	if err != nil {
		return nil, err
	}
	d, err := NewEvidence(report, cert, crl).Digest()
	if err != nil {
		return nil, attest.Wrap(attest.ErrMalformedEvidence, "snp.evidence", err)
	}
	claims.EvidenceDigest = d[:]
	return claims, nil
}

func (v *Verifier) logResult(claims *attest.Claims, err error) {
	if v.log == nil {
		return
	}
	if err != nil {
		var ce *attest.CheckError
		check := ""
		if errors.As(err, &ce) {
			check = ce.Check
		}
		v.log.Info("snp: evidence rejected", "check", check, "error", err)
		return
	}
	if claims != nil && claims.SNP != nil {
		v.log.Debug("snp: evidence accepted",
			"product", claims.SNP.Product, "signer", claims.SNP.Signer,
			"measurement", claims.SNP.Measurement, "simulated", claims.Simulated)
	}
}

// verify is the pipeline. Each step returns an *attest.CheckError.
// reportData is nil only for VerifyUnboundReport.
func (v *Verifier) verify(ctx context.Context, raw, certDER, crlDER []byte, reportData *[attest.ReportDataSize]byte) (*attest.Claims, error) {
	now := v.now()

	// 1. Structure, before anything is interpreted.
	report, info, err := v.parseReport(raw)
	if err != nil {
		return nil, err
	}
	cert, exts, err := parseSignerCert(certDER, info.SigningKey)
	if err != nil {
		return nil, err
	}
	line, err := reportProduct(report, exts, info.SigningKey)
	if err != nil {
		return nil, err
	}
	product := line.String()
	crls, err := v.crlCandidates(product, info.SigningKey, crlDER)
	if err != nil {
		return nil, err
	}
	if len(crls) == 0 && (v.policy.RequireCRL || v.policy.MaximumCRLAge > 0) {
		return nil, attest.Fail(attest.ErrPolicy, "policy.crl", "the policy requires a revocation check (require_crl or maximum_crl_age), and neither the evidence nor the verifier has a CRL for %s", product)
	}

	// 2. Authenticity: the certificate chain, then the signature over
	// the exact bytes received.
	att := &spb.Attestation{Report: report, CertificateChain: certificateChain(info.SigningKey, certDER)}
	crlUntil, err := v.verifyChain(ctx, att, raw, certDER, cert, crls, product, info.SigningKey, now)
	if err != nil {
		return nil, err
	}
	if err := verify.SnpReportSignature(raw, cert); err != nil {
		return nil, attest.Fail(attest.ErrVerification, "snp.report.signature", "the report is not signed by the %v: %v", info.SigningKey, err)
	}

	// 3. Binding, all 64 bytes, in constant time.
	var expected []byte
	if reportData != nil {
		expected = reportData[:]
		if subtle.ConstantTimeCompare(report.GetReportData(), expected) != 1 {
			return nil, attest.Fail(attest.ErrBinding, "snp.report_data", "REPORT_DATA does not match the expected binding (evidence made for another key, nonce or connection)")
		}
	}

	// 4. Policy: ours first, for precise check names, then go-sev-guest's
	// validation of the same policy as a second opinion.
	if err := v.checkPolicy(report, info, exts, line); err != nil {
		return nil, err
	}
	if upstreamCovers(report, line, cert, info.SigningKey) {
		if err := validate.SnpAttestation(att, v.policy.validateOptions(product, expected)); err != nil {
			return nil, attest.Fail(attest.ErrPolicy, "policy.validate", "%v", err)
		}
	}
	claims := v.claims(report, info, exts, line)
	// The verdict holds while the signing certificate (and the CRL it was
	// checked against) does.
	claims.ValidUntil = cert.NotAfter
	if !crlUntil.IsZero() {
		claims.ValidUntil = earlierOf(claims.ValidUntil, crlUntil)
	}
	return claims, nil
}

// parseReport checks the structure of a raw report and decodes it.
func (v *Verifier) parseReport(raw []byte) (*spb.Report, abi.SignerInfo, error) {
	var none abi.SignerInfo
	if len(raw) != ReportSize {
		return nil, none, attest.Fail(attest.ErrMalformedEvidence, "snp.report.size", "report is %d bytes, want %d", len(raw), ReportSize)
	}
	version := binary.LittleEndian.Uint32(raw[0x00:0x04])
	layout, known := layoutOf(version)
	if !known {
		return nil, none, attest.Fail(attest.ErrUnsupported, "snp.report.version", "report version %d has no published layout that this verifier parses exactly (it reads versions %v)", version, KnownReportVersions())
	}
	if allowed := v.policy.reportVersions(); !slices.Contains(allowed, version) {
		return nil, none, attest.Fail(attest.ErrUnsupported, "snp.report.version", "report version %d is not in the policy's allowed_report_versions %v", version, allowed)
	}
	if algo := abi.SignatureAlgo(raw); algo != abi.SignEcdsaP384Sha384 {
		return nil, none, attest.Fail(attest.ErrUnsupported, "snp.report.signature_algo", "signature algorithm %d is unknown (only 1, ECDSA P-384 with SHA-384, is defined)", algo)
	}
	report, err := abi.ReportToProto(raw)
	if err != nil {
		return nil, none, attest.Fail(attest.ErrMalformedEvidence, "snp.report.format", "%v", err)
	}
	// Every byte the version reserves must be zero: go-sev-guest reads
	// the mitigation vectors whatever the version, and checks only some
	// reserved ranges.
	if err := layout.checkReserved(raw); err != nil {
		return nil, none, attest.Fail(attest.ErrMalformedEvidence, "snp.report.format", "%v", err)
	}
	// The decoded report must encode back to exactly the bytes received:
	// go-sev-guest verifies the signature over the re-encoded report, so
	// a bit it drops when decoding (such as the high nibble of the
	// stepping byte) would otherwise be unauthenticated.
	canonical, err := abi.ReportToAbiBytes(report)
	if err != nil {
		return nil, none, attest.Fail(attest.ErrMalformedEvidence, "snp.report.format", "%v", err)
	}
	if !bytes.Equal(canonical, raw) {
		i := 0
		for i < len(raw) && raw[i] == canonical[i] {
			i++
		}
		return nil, none, attest.Fail(attest.ErrMalformedEvidence, "snp.report.format", "report byte 0x%x has bits that the report format does not define", i)
	}
	info, err := abi.ParseSignerInfo(report.GetSignerInfo())
	if err != nil {
		return nil, none, attest.Fail(attest.ErrMalformedEvidence, "snp.report.format", "%v", err)
	}
	switch info.SigningKey {
	case abi.VcekReportSigner, abi.VlekReportSigner:
	default:
		return nil, none, attest.Fail(attest.ErrVerification, "snp.report.signer", "the report is not signed (SIGNING_KEY is %v)", info.SigningKey)
	}
	return report, info, nil
}

// parseSignerCert parses the VCEK or VLEK certificate and its AMD
// extensions, for every product line (ParseCertExtensions). A certificate
// carrying an AMD extension this verifier does not know fails with
// ErrUnsupported: it may well be genuine, but it cannot be checked.
func parseSignerCert(der []byte, signer abi.ReportSigner) (*x509.Certificate, *CertExtensions, error) {
	const check = "snp.vcek.parse"
	if len(der) == 0 {
		return nil, nil, attest.Fail(attest.ErrMalformedEvidence, check, "no %v certificate", signer)
	}
	if len(der) > MaxCertSize {
		return nil, nil, attest.Fail(attest.ErrMalformedEvidence, check, "%v certificate of %d bytes exceeds %d", signer, len(der), MaxCertSize)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, attest.Fail(attest.ErrMalformedEvidence, check, "cannot parse the %v certificate: %v", signer, err)
	}
	exts, err := ParseCertExtensions(cert, signer)
	if err != nil {
		var unknown *unknownExtensionError
		if errors.As(err, &unknown) {
			return nil, nil, attest.Fail(attest.ErrUnsupported, "snp.vcek.extensions",
				"the %v certificate carries AMD extension %v, which this verifier cannot read (a newer certificate profile?)", signer, unknown.oid)
		}
		var product *unknownProductError
		if errors.As(err, &product) {
			return nil, nil, attest.Fail(attest.ErrVerification, "snp.vcek.product",
				"the %v certificate is for product %q, which is no product line this verifier knows (Milan, Genoa, Turin)", signer, product.name)
		}
		return nil, nil, attest.Fail(attest.ErrVerification, "snp.vcek.extensions", "the certificate does not carry valid AMD %v extensions: %v", signer, err)
	}
	return cert, exts, nil
}

// reportProduct decides the product line of the report from the signed
// evidence: the product name of the signer's certificate (which verifyChain
// then checks against that product line's ARK, so that only AMD can have
// issued it), together with the CPUID family and model of version 3 and
// later reports, which the chip signs. A CPUID in AMD's table must name the
// certificate's product line; a model not in the table (a variant such as
// family 19h model A0h, whose VCEKs AMD issues as "Genoa") is accepted
// under the certificate's product line if its family holds that line. An
// unknown family is refused. What the peer claims elsewhere is never read.
//
// The stepping ("Milan-B0") is not compared: the report signs its own
// CPUID stepping, and KDS product names are not a source for it.
func reportProduct(report *spb.Report, exts *CertExtensions, signer abi.ReportSigner) (ProductLine, error) {
	line := exts.Product
	if report.GetVersion() < abi.ReportVersion3 {
		return line, nil
	}
	family, model, _ := abi.FmsFromCpuid1Eax(report.GetCpuid1EaxFms())
	cpuLine, known, familyLines := cpuidLine(family, model)
	switch {
	case known && cpuLine != line:
		return ProductUnknown, attest.Fail(attest.ErrVerification, "snp.vcek.product",
			"the %v certificate is for product %q, but the report comes from a %v part (CPUID family %#x, model %#x)", signer, exts.ProductName, cpuLine, family, model)
	case known:
	case len(familyLines) == 0:
		return ProductUnknown, attest.Fail(attest.ErrUnsupported, "snp.product",
			"CPUID family %#x (model %#x) is not a known SEV-SNP processor family", family, model)
	case !slices.Contains(familyLines, line):
		return ProductUnknown, attest.Fail(attest.ErrVerification, "snp.vcek.product",
			"the %v certificate is for product %q, but the report comes from a CPUID family %#x part, which holds %v", signer, exts.ProductName, family, familyLines)
	}
	return line, nil
}

// certificateChain is the go-sev-guest certificate chain holding only the
// signer's certificate: the roots come from the verifier, never from the
// evidence.
func certificateChain(signer abi.ReportSigner, der []byte) *spb.CertificateChain {
	c := &spb.CertificateChain{Extras: map[string][]byte{}}
	if signer == abi.VlekReportSigner {
		c.VlekCert = der
	} else {
		c.VcekCert = der
	}
	return c
}

// offlineGetter is the go-sev-guest HTTPS getter of a Verifier: it refuses
// every request, so that no code path can reach the network even if an
// option elsewhere were wrong.
type offlineGetter struct{}

func (offlineGetter) Get(url string) ([]byte, error) {
	return nil, fmt.Errorf("snp: verifier is offline, refusing to fetch %s", url)
}

func (offlineGetter) GetContext(_ context.Context, url string) ([]byte, error) {
	return offlineGetter{}.Get(url)
}

// verifyChain checks that cert chains to the verifier's roots for
// product, and that the CRL that decides (chooseCRL), if there are any,
// is current, young enough for the policy and revokes nothing on the
// chain. It returns when the deciding CRL lapses (zero without CRLs). A
// success is cached until the first expiry in the chain or that time.
func (v *Verifier) verifyChain(ctx context.Context, att *spb.Attestation, raw, certDER []byte, cert *x509.Certificate, crls []crlCandidate, product string, signer abi.ReportSigner, now time.Time) (time.Time, error) {
	const check = "snp.vcek.chain"
	key := v.cacheKey(certDER, crls, product, signer)
	if crlUntil, ok := v.cache.Get(key, now); ok {
		return crlUntil, nil
	}

	// Our own path check first: it says which root chain signed the
	// certificate (for the CRL and the cache lifetime) and tells a bad
	// chain apart from a bad report signature.
	ch, err := v.findChain(cert, product, signer, now)
	if err != nil {
		return time.Time{}, attest.Fail(attest.ErrVerification, check, "%v", err)
	}
	if err := checkKDSProfile(cert, signer); err != nil {
		return time.Time{}, attest.Fail(attest.ErrVerification, check, "%v", err)
	}
	notBefore, notAfter := chainValidity(cert, ch.ask, ch.ark)
	var crl *x509.RevocationList
	var crlUntil time.Time
	if len(crls) > 0 {
		c, err := chooseCRL(crls, ch, now)
		if err != nil {
			return time.Time{}, err
		}
		if err := checkRevoked(c, ch); err != nil {
			return time.Time{}, err
		}
		if err := v.policy.checkCRLAge(c, now); err != nil {
			return time.Time{}, err
		}
		crl, crlUntil = c.crl, v.policy.crlDeadline(c)
		notBefore = laterOf(notBefore, crl.ThisUpdate)
		notAfter = earlierOf(notAfter, crlUntil)
	}

	// Then go-sev-guest's verification, where it can give one (see
	// upstreamCovers): the KDS certificate profile, the chain again,
	// revocation, and the report signature. Elsewhere (Turin) the checks
	// above are the chain verification, and the caller checks the
	// signature.
	if line, _ := ParseProductLine(product); !upstreamCovers(att.GetReport(), line, cert, signer) {
		v.cache.Put(key, crlUntil, notBefore, notAfter)
		return crlUntil, nil
	}
	roots := v.roots.trusted()
	// go-sev-guest's verify package registers the global flag
	// workaround_kds_productname on flag.CommandLine, which skips its
	// stepping comparison. It reads the flag only when Options.Product
	// holds an expected product or certificates may be fetched; both stay
	// off, so a program's command line cannot relax this verification
	// (TestVerifyIgnoresKDSProductNameFlag). reportProduct checks the
	// product line itself.
	opts := &verify.Options{
		TrustedRoots:        roots,
		DisableCertFetching: true,
		Product:             nil,
		Getter:              offlineGetter{},
		Now:                 now,
	}
	// go-sev-guest checks a CRL only against a VCEK chain (it needs the
	// ASK); checkRevoked above covered both. The deciding CRL is
	// installed in every root it may consult and is current (checked
	// above), so nothing is fetched.
	if crl != nil && signer == abi.VcekReportSigner {
		opts.CheckRevocations = true
		for _, r := range roots[product] {
			r.CRL = crl
		}
	}
	if err := verify.SnpAttestationContext(ctx, att, opts); err != nil {
		if sigErr := verify.SnpReportSignature(raw, cert); sigErr != nil {
			return time.Time{}, attest.Fail(attest.ErrVerification, "snp.report.signature", "the report is not signed by the %v: %v", signer, sigErr)
		}
		return time.Time{}, attest.Fail(attest.ErrVerification, check, "%v", err)
	}
	v.cache.Put(key, crlUntil, notBefore, notAfter)
	return crlUntil, nil
}

// findChain returns the root chain of product whose intermediate (ASK for
// a VCEK, ASVK for a VLEK) and ARK certify cert at time now.
func (v *Verifier) findChain(cert *x509.Certificate, product string, signer abi.ReportSigner, now time.Time) (chain, error) {
	chains := v.roots.chains[product]
	var errs []error
	for _, ch := range chains {
		if ch.vlek != (signer == abi.VlekReportSigner) {
			continue
		}
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(ch.ark)
		inter.AddCert(ch.ask)
		_, err := cert.Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err == nil {
			return ch, nil
		}
		errs = append(errs, err)
	}
	what := "roots"
	if v.roots.Simulated {
		what = "simulated roots"
	}
	if len(errs) == 0 {
		return chain{}, fmt.Errorf("the trusted %s have no %s %v chain (they cover %v)", what, product, signer, v.roots.ProductLines())
	}
	return chain{}, fmt.Errorf("the %v certificate does not chain to the trusted %s %s: %w", signer, product, what, errors.Join(errs...))
}

// verifierCRL is a CRL from VerifierOptions.CRLs.
type verifierCRL struct {
	der []byte
	crl *x509.RevocationList
}

// parseVerifierCRLs parses VerifierOptions.CRLs, checking that each is
// issued by the ARK of the product line it is listed under.
func parseVerifierCRLs(in map[string][]byte) (map[string]verifierCRL, error) {
	out := map[string]verifierCRL{}
	for product, der := range in {
		bad := func(format string, args ...any) (map[string]verifierCRL, error) {
			return nil, attest.Fail(attest.ErrConfig, "snp.config", "CRL for %q: "+format, append([]any{product}, args...)...)
		}
		if len(der) == 0 || len(der) > MaxCRLSize {
			return bad("%d bytes, want 1..%d", len(der), MaxCRLSize)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return bad("%v", err)
		}
		if cn := crl.Issuer.CommonName; cn != "ARK-"+product {
			return bad("issued by %q, not ARK-%s", cn, product)
		}
		out[product] = verifierCRL{der: bytes.Clone(der), crl: crl}
	}
	return out, nil
}

func chainValidity(certs ...*x509.Certificate) (notBefore, notAfter time.Time) {
	for i, c := range certs {
		if i == 0 {
			notBefore, notAfter = c.NotBefore, c.NotAfter
			continue
		}
		notBefore = laterOf(notBefore, c.NotBefore)
		notAfter = earlierOf(notAfter, c.NotAfter)
	}
	return notBefore, notAfter
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlierOf(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// cacheKey identifies a chain result: the configuration's generation
// (its policy bounds CRL ages), the roots, the signer kind, the product
// line, the certificate and the candidate CRLs (if any), each with its
// source.
func (v *Verifier) cacheKey(certDER []byte, crls []crlCandidate, product string, signer abi.ReportSigner) [sha256.Size]byte {
	certHash := sha256.Sum256(certDER)
	h := sha256.New()
	var gen [8]byte
	binary.BigEndian.PutUint64(gen[:], v.gen)
	h.Write(gen[:])
	h.Write(v.rootsID[:])
	h.Write([]byte{byte(signer), byte(len(product))})
	h.Write([]byte(product))
	h.Write(certHash[:])
	for _, c := range crls {
		crlHash := sha256.Sum256(c.der)
		h.Write([]byte{byte(len(c.source))})
		h.Write([]byte(c.source))
		h.Write(crlHash[:])
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}

// checkPolicy applies the policy to an authentic, bound report, one named
// check at a time.
func (v *Verifier) checkPolicy(r *spb.Report, info abi.SignerInfo, exts *CertExtensions, product ProductLine) error {
	p := v.policy
	fail := func(check, format string, args ...any) error {
		return attest.Fail(attest.ErrPolicy, check, format, args...)
	}

	if info.SigningKey == abi.VlekReportSigner && !p.AllowVLEK {
		return fail("policy.vlek", "the report is signed by a VLEK of cloud provider %q, not by the chip's VCEK; set allow_vlek to accept it", exts.CSPID)
	}

	// Guest policy. ReportToProto already refused undefined bits.
	gp, err := abi.ParseSnpPolicy(r.GetPolicy())
	if err != nil {
		return fail("policy.guest_policy", "%v", err)
	}
	if gp.Debug && !p.AllowDebug {
		return fail("policy.debug", "the guest allows debugging: the host can read and write its memory")
	}
	if gp.MigrateMA && !p.AllowMigrateMA {
		return fail("policy.migrate_ma", "the guest allows a migration agent, which can export its memory")
	}
	if err := checkGuestPolicy(gp, p); err != nil {
		return fail("policy.guest_policy", "%v (guest policy %#x)", err, r.GetPolicy())
	}

	if vmpls := p.vmpls(); !slices.Contains(vmpls, r.GetVmpl()) {
		return fail("policy.vmpl", "the report comes from VMPL %d, the policy allows %v", r.GetVmpl(), vmpls)
	}

	// Identity.
	if len(p.Measurements) > 0 && !inList(p.Measurements, r.GetMeasurement()) {
		return fail("policy.measurement", "measurement %x is not among the %d accepted", r.GetMeasurement(), len(p.Measurements))
	}
	for _, f := range []struct {
		check      string
		want, have []byte
	}{
		{"policy.host_data", p.HostData, r.GetHostData()},
		{"policy.family_id", p.FamilyID, r.GetFamilyId()},
		{"policy.image_id", p.ImageID, r.GetImageId()},
		{"policy.report_id_ma", p.ReportIDMA, r.GetReportIdMa()},
	} {
		if f.want != nil && !bytes.Equal(f.want, f.have) {
			return fail(f.check, "the report has %x, the policy wants %x", f.have, f.want)
		}
	}
	if len(p.ReportIDs) > 0 && !inList(p.ReportIDs, r.GetReportId()) {
		return fail("policy.report_id", "REPORT_ID %x is not among the %d accepted", r.GetReportId(), len(p.ReportIDs))
	}
	chipID := r.GetChipId()
	// A Turin VCEK's hardware ID is the first 8 bytes of CHIP_ID.
	if info.SigningKey == abi.VcekReportSigner && !zeroBytes(chipID) && !HWIDMatchesChipID(product, exts.HWID, chipID) {
		return fail("policy.chip_id", "CHIP_ID %.16x… is not the hwID %.16x… the VCEK was issued for", chipID, exts.HWID)
	}
	if len(p.ChipIDs) > 0 {
		if zeroBytes(chipID) {
			return fail("policy.chip_id", "the report's CHIP_ID is masked (all zeros), so it cannot match the pinned chips")
		}
		if !inList(p.ChipIDs, chipID) {
			return fail("policy.chip_id", "CHIP_ID %.16x… is not among the %d accepted", chipID, len(p.ChipIDs))
		}
	}
	if r.GetGuestSvn() < p.MinimumGuestSVN {
		return fail("policy.guest_svn", "GUEST_SVN %d is below the minimum %d", r.GetGuestSvn(), p.MinimumGuestSVN)
	}

	// ID block: deny wins, then trust.
	if inList(p.DeniedIDKeyDigests, r.GetIdKeyDigest()) {
		return fail("policy.id_key", "ID key %x is denied", r.GetIdKeyDigest())
	}
	if inList(p.DeniedAuthorKeyDigests, r.GetAuthorKeyDigest()) {
		return fail("policy.author_key", "author key %x is denied", r.GetAuthorKeyDigest())
	}
	if p.requireIDBlock() {
		authorTrusted := info.AuthorKeyEn && inList(p.TrustedAuthorKeyDigests, r.GetAuthorKeyDigest())
		if p.RequireAuthorKey && !authorTrusted {
			return fail("policy.author_key", "the ID block is not signed by a trusted author key (AUTHOR_KEY_EN %t, digest %x)", info.AuthorKeyEn, r.GetAuthorKeyDigest())
		}
		if !authorTrusted && !inList(p.TrustedIDKeyDigests, r.GetIdKeyDigest()) {
			return fail("policy.id_key", "ID key %x is not trusted", r.GetIdKeyDigest())
		}
	}

	return v.checkFirmware(r, exts, product)
}

// checkGuestPolicy compares the guest policy with the allowed maximum.
func checkGuestPolicy(gp abi.SnpPolicy, p *Policy) error {
	g := p.GuestPolicy
	minABI, _ := parseMajorMinor(g.MinimumABI) // validated
	if uint16(gp.ABIMajor)<<8|uint16(gp.ABIMinor) < minABI {
		return fmt.Errorf("the guest requires ABI %d.%d, below the minimum %s", gp.ABIMajor, gp.ABIMinor, g.MinimumABI)
	}
	switch {
	case gp.SMT && !g.AllowSMT:
		return errors.New("the guest allows SMT")
	case gp.CXLAllowed && !g.AllowCXL:
		return errors.New("the guest allows CXL")
	case g.RequireSingleSocket && !gp.SingleSocket:
		return errors.New("the guest does not require a single socket")
	case g.RequireAES256XTS && !gp.MemAES256XTS:
		return errors.New("the guest does not require AES-256-XTS memory encryption")
	case g.RequireRAPLDisabled && !gp.RAPLDis:
		return errors.New("the guest does not require RAPL to be disabled")
	case g.RequireCiphertextHiding && !gp.CipherTextHidingDRAM:
		return errors.New("the guest does not require ciphertext hiding")
	case g.RequirePageSwapDisabled && !gp.PageSwapDisable:
		return errors.New("the guest does not forbid page swapping")
	}
	return nil
}

// checkFirmware checks the TCB values, firmware versions, platform info
// and mitigation vectors.
func (v *Verifier) checkFirmware(r *spb.Report, exts *CertExtensions, product ProductLine) error {
	p := v.policy
	fail := func(check, format string, args ...any) error {
		return attest.Fail(attest.ErrPolicy, check, format, args...)
	}
	le := product.tcbLE
	certTCB, reported := exts.TCB, r.GetReportedTcb()
	current, committed, launch := r.GetCurrentTcb(), r.GetCommittedTcb(), r.GetLaunchTcb()
	// The VCEK is derived from the TCB it is issued for. A certificate
	// for another TCB than the reported one means the host serves a
	// stale (or newer) certificate; a certificate above the current TCB
	// cannot come from this firmware.
	if certTCB != reported {
		return fail("policy.tcb.vcek", "the certificate is for TCB %#016x but the report's REPORTED_TCB is %#016x; the host must serve the certificate of its reported TCB", certTCB, reported)
	}
	if !le(certTCB, current) {
		return fail("policy.tcb.vcek", "the certificate's TCB %#016x exceeds CURRENT_TCB %#016x", certTCB, current)
	}
	minTCB, ok := p.minimumTCB(product.String())
	if !ok {
		return fail("policy.tcb.minimum", "no minimum TCB for product line %v", product)
	}
	if !product.DecodeTCB(reported).AtLeast(minTCB) {
		return fail("policy.tcb.minimum", "REPORTED_TCB %v is below the %v minimum %v in at least one part", product.DecodeTCB(reported), product, minTCB)
	}
	if m, ok := p.MinimumLaunchTCB[product.String()]; ok && !product.DecodeTCB(launch).AtLeast(m) {
		return fail("policy.tcb.launch", "LAUNCH_TCB %v is below the %v minimum %v in at least one part", product.DecodeTCB(launch), product, m)
	}

	curVersion := uint16(r.GetCurrentMajor())<<8 | uint16(r.GetCurrentMinor())
	comVersion := uint16(r.GetCommittedMajor())<<8 | uint16(r.GetCommittedMinor())
	if p.PermitProvisionalFirmware {
		if !le(committed, current) || comVersion > curVersion ||
			(comVersion == curVersion && r.GetCommittedBuild() > r.GetCurrentBuild()) {
			return fail("policy.tcb.provisional", "the committed firmware (TCB %#016x, %s) is newer than the running one (TCB %#016x, %s)",
				committed, committedVersion(r), current, currentVersion(r))
		}
	} else if committed != current || comVersion != curVersion || r.GetCommittedBuild() != r.GetCurrentBuild() {
		return fail("policy.tcb.provisional", "the running firmware (TCB %#016x, %s) is not committed (TCB %#016x, %s), so the host can roll it back; set permit_provisional_firmware to accept it",
			current, currentVersion(r), committed, committedVersion(r))
	}
	minVersion, _ := parseMajorMinor(p.MinimumVersion) // validated
	if curVersion < minVersion {
		return fail("policy.firmware", "firmware API version %d.%d is below the minimum %s", r.GetCurrentMajor(), r.GetCurrentMinor(), p.MinimumVersion)
	}
	if r.GetCurrentBuild() < uint32(p.MinimumBuild) {
		return fail("policy.firmware", "firmware build %d is below the minimum %d", r.GetCurrentBuild(), p.MinimumBuild)
	}

	if want := p.PlatformInfo; want != nil {
		have, err := abi.ParseSnpPlatformInfo(r.GetPlatformInfo())
		if err != nil {
			return fail("policy.platform_info", "%v", err)
		}
		var problem string
		switch {
		case have.SMTEnabled && !want.AllowSMT:
			problem = "SMT is enabled"
		case have.TSMEEnabled && !want.AllowTSME:
			problem = "TSME is enabled"
		case have.TIOEnabled && !want.AllowTIO:
			problem = "SEV-TIO is enabled"
		case !have.ECCEnabled && want.RequireECC:
			problem = "ECC memory is not enabled"
		case !have.RAPLDisabled && want.RequireRAPLDisabled:
			problem = "RAPL is not disabled"
		case !have.CiphertextHidingDRAMEnabled && want.RequireCiphertextHiding:
			problem = "ciphertext hiding is not enabled"
		case !have.AliasCheckComplete && want.RequireAliasCheckComplete:
			problem = "the memory alias check has not completed"
		}
		if problem != "" {
			return fail("policy.platform_info", "%s on the platform (PLATFORM_INFO %#x)", problem, r.GetPlatformInfo())
		}
	}

	if m := p.MinimumLaunchMitigationVector; r.GetLaunchMitVector()&m != m {
		return fail("policy.mitigation", "LAUNCH_MIT_VECTOR %#x lacks required bits %#x", r.GetLaunchMitVector(), m&^r.GetLaunchMitVector())
	}
	if m := p.MinimumCurrentMitigationVector; r.GetCurrentMitVector()&m != m {
		return fail("policy.mitigation", "CURRENT_MIT_VECTOR %#x lacks required bits %#x", r.GetCurrentMitVector(), m&^r.GetCurrentMitVector())
	}
	return nil
}

func currentVersion(r *spb.Report) string {
	return fmt.Sprintf("%d.%d.%d", r.GetCurrentMajor(), r.GetCurrentMinor(), r.GetCurrentBuild())
}

func committedVersion(r *spb.Report) string {
	return fmt.Sprintf("%d.%d.%d", r.GetCommittedMajor(), r.GetCommittedMinor(), r.GetCommittedBuild())
}

// claims builds the claims of an accepted report.
func (v *Verifier) claims(r *spb.Report, info abi.SignerInfo, exts *CertExtensions, product ProductLine) *attest.Claims {
	return &attest.Claims{
		Platform:   Platform,
		Simulated:  v.roots.Simulated,
		ReportData: bytes.Clone(r.GetReportData()),
		SNP: &attest.SNPClaims{
			ReportVersion:    r.GetVersion(),
			Product:          product.String(),
			Signer:           info.SigningKey.String(),
			GuestSVN:         r.GetGuestSvn(),
			GuestPolicy:      r.GetPolicy(),
			FamilyID:         bytes.Clone(r.GetFamilyId()),
			ImageID:          bytes.Clone(r.GetImageId()),
			VMPL:             r.GetVmpl(),
			Measurement:      bytes.Clone(r.GetMeasurement()),
			HostData:         bytes.Clone(r.GetHostData()),
			IDKeyDigest:      bytes.Clone(r.GetIdKeyDigest()),
			AuthorKeyDigest:  bytes.Clone(r.GetAuthorKeyDigest()),
			ReportID:         bytes.Clone(r.GetReportId()),
			ReportIDMA:       bytes.Clone(r.GetReportIdMa()),
			ChipID:           bytes.Clone(r.GetChipId()),
			PlatformInfo:     r.GetPlatformInfo(),
			CurrentTCB:       r.GetCurrentTcb(),
			ReportedTCB:      r.GetReportedTcb(),
			CommittedTCB:     r.GetCommittedTcb(),
			LaunchTCB:        r.GetLaunchTcb(),
			CertTCB:          exts.TCB,
			CurrentVersion:   currentVersion(r),
			CommittedVersion: committedVersion(r),
			LaunchMitVector:  r.GetLaunchMitVector(),
			CurrentMitVector: r.GetCurrentMitVector(),
		},
	}
}
