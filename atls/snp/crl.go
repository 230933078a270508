package snp

import (
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"

	"github.com/confidential-go/atls/atls/attest"
)

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string, such as "168h" or "30m".
type Duration time.Duration

// MarshalText writes d as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads a Go duration string (time.ParseDuration).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// String returns d as time.Duration.String does.
func (d Duration) String() string { return time.Duration(d).String() }

// Revocation: which CRL decides.
//
// A verification may have two CRLs for the signer's chain: the one the
// verifier holds for the product line (VerifierOptions.CRLs, VCEK chains
// only) and the one the attester sent in its evidence. Both must be
// signed by the ARK of the pinned chain that certifies the signer; a CRL
// that is not fails the verification ("snp.crl"), whoever supplied it.
// Among the authentic ones, a CRL is current when its thisUpdate has come
// and its nextUpdate has not passed. The rule is:
//
//   - the current CRL with the latest thisUpdate decides (on a tie, the
//     verifier's), so an attester can never displace a newer CRL the
//     verifier holds with an older one, and a verifier whose own CRL has
//     lapsed still checks revocation with a current one the attester
//     sent;
//   - if CRLs were available but none is current, verification fails
//     ("snp.crl.stale"): an expired CRL is not a revocation check, and
//     an attester must not get around it by sending nothing or an old
//     CRL;
//   - Policy.MaximumCRLAge then bounds how old (now - thisUpdate) the
//     deciding CRL may be ("policy.crl.age").

// crlCandidate is a CRL that may decide revocation.
type crlCandidate struct {
	der    []byte
	crl    *x509.RevocationList
	source string // "the verifier's" or "the attester's"
}

// crlCandidates returns the CRLs that may decide revocation for evidence
// of product signed by signer, the verifier's first, parsing the
// attester's (crlDER, may be empty).
func (v *Verifier) crlCandidates(product string, signer abi.ReportSigner, crlDER []byte) ([]crlCandidate, error) {
	var out []crlCandidate
	if own, ok := v.crls[product]; ok && signer == abi.VcekReportSigner {
		out = append(out, crlCandidate{der: own.der, crl: own.crl, source: "the verifier's"})
	}
	if len(crlDER) > 0 {
		if len(crlDER) > MaxCRLSize {
			return nil, attest.Fail(attest.ErrMalformedEvidence, "snp.crl", "CRL of %d bytes exceeds %d", len(crlDER), MaxCRLSize)
		}
		crl, err := x509.ParseRevocationList(crlDER)
		if err != nil {
			return nil, attest.Fail(attest.ErrMalformedEvidence, "snp.crl", "cannot parse the CRL: %v", err)
		}
		out = append(out, crlCandidate{der: crlDER, crl: crl, source: "the attester's"})
	}
	return out, nil
}

// chooseCRL applies the rule above: every candidate must be signed by the
// chain's ARK, and the current one with the latest thisUpdate is
// returned. It fails with "snp.crl" or "snp.crl.stale".
func chooseCRL(cands []crlCandidate, ch chain, now time.Time) (*crlCandidate, error) {
	var best *crlCandidate
	var stale []string
	for i := range cands {
		c := &cands[i]
		if err := c.crl.CheckSignatureFrom(ch.ark); err != nil {
			return nil, attest.Fail(attest.ErrVerification, "snp.crl", "%s CRL is not signed by %s: %v", c.source, ch.ark.Subject.CommonName, err)
		}
		switch {
		case now.Before(c.crl.ThisUpdate):
			stale = append(stale, fmt.Sprintf("%s CRL is not valid before %v", c.source, c.crl.ThisUpdate.UTC()))
		case c.crl.NextUpdate.IsZero():
			stale = append(stale, fmt.Sprintf("%s CRL has no next update", c.source))
		case !now.Before(c.crl.NextUpdate):
			stale = append(stale, fmt.Sprintf("%s CRL expired at %v", c.source, c.crl.NextUpdate.UTC()))
		case best == nil || c.crl.ThisUpdate.After(best.crl.ThisUpdate):
			best = c
		}
	}
	if best == nil {
		return nil, attest.Fail(attest.ErrVerification, "snp.crl.stale", "no current CRL: %v; fetch a current CRL from AMD KDS (https://kdsintf.amd.com/vcek/v1/<product>/crl)", strings.Join(stale, "; "))
	}
	return best, nil
}

// checkRevoked fails if crl revokes the chain's intermediate key. AMD
// issues every VCEK with serial number 0 and supersedes VCEKs by TCB
// instead of revoking them, so a VCEK is revoked through its ASK (and a
// VLEK through its ASVK): the ARK's CRL lists the intermediates it
// revokes.
func checkRevoked(c *crlCandidate, ch chain) error {
	for _, e := range c.crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(ch.ask.SerialNumber) == 0 {
			return attest.Fail(attest.ErrVerification, "snp.revocation", "%s was revoked at %v (%s CRL of %v)", ch.ask.Subject.CommonName, e.RevocationTime, c.source, c.crl.ThisUpdate.UTC())
		}
	}
	return nil
}

// checkCRLAge applies Policy.MaximumCRLAge to the deciding CRL.
func (p *Policy) checkCRLAge(c *crlCandidate, now time.Time) error {
	if p.MaximumCRLAge <= 0 {
		return nil
	}
	if age := now.Sub(c.crl.ThisUpdate); age > time.Duration(p.MaximumCRLAge) {
		return attest.Fail(attest.ErrPolicy, "policy.crl.age", "the newest current CRL (%s, issued %v) is %v old, more than the policy's maximum_crl_age %v",
			c.source, c.crl.ThisUpdate.UTC(), age.Round(time.Second), p.MaximumCRLAge)
	}
	return nil
}

// crlDeadline is when a verdict that relied on c lapses: its next update,
// or earlier when the policy bounds the CRL's age.
func (p *Policy) crlDeadline(c *crlCandidate) time.Time {
	end := c.crl.NextUpdate
	if p.MaximumCRLAge > 0 {
		end = earlierOf(end, c.crl.ThisUpdate.Add(time.Duration(p.MaximumCRLAge)))
	}
	return end
}
