package snp

import (
	"crypto/sha256"

	"github.com/confidential-go/atls/atls/attest"
)

// verifierConfig is one immutable configuration of a Verifier: what
// SetPolicy, SetRoots and SetCRLs replace, as a whole. Each verification
// reads it once, so no verification sees a half-updated configuration.
type verifierConfig struct {
	gen     uint64 // changes with every replacement, starting at 1
	roots   *Roots
	rootsID [sha256.Size]byte
	policy  *Policy
	crls    map[string]verifierCRL
}

// rootsIdentity is the identity of roots in the keys of the VCEK chain
// cache, so that a cached result is never read under other roots.
func rootsIdentity(roots *Roots) [sha256.Size]byte {
	var id [sha256.Size]byte
	h := sha256.New()
	if roots.Simulated {
		h.Write([]byte("simulated\x00"))
	}
	h.Write(roots.PEM())
	h.Sum(id[:0])
	return id
}

// snapshot returns the pipeline of one verification: a Verifier holding
// the current configuration, sharing v's clock, logger and chain cache.
func (v *Verifier) snapshot() *Verifier {
	c := v.live.Load()
	return &Verifier{
		roots:   c.roots,
		rootsID: c.rootsID,
		policy:  c.policy,
		crls:    c.crls,
		gen:     c.gen,
		now:     v.now,
		log:     v.log,
		cache:   v.cache,
	}
}

// Generation implements attest.GenerationVerifier: it changes with every
// successful SetPolicy, SetRoots and SetCRLs. Package atls keys its
// verification caches with it, so that a result verified under an earlier
// configuration is not reused after a change.
func (v *Verifier) Generation() uint64 {
	return v.live.Load().gen
}

// Policy returns a copy of the policy in force.
func (v *Verifier) Policy() *Policy {
	return v.live.Load().policy.clone()
}

// SetPolicy validates p and makes (a copy of) it the policy of every
// verification that starts afterwards, as NewVerifier does with
// VerifierOptions.Policy. Verifications under way finish under the policy
// they started with, and connections keep the decision they got. An
// invalid p is refused with an error of kind attest.ErrConfig and changes
// nothing. Safe for concurrent use with verifications and the other
// setters.
func (v *Verifier) SetPolicy(p *Policy) error {
	if p == nil {
		return attest.Fail(attest.ErrConfig, "snp.config", "no policy: SetPolicy needs a policy (see NewPolicy and ParsePolicy)")
	}
	pol := p.clone()
	if err := pol.Validate(); err != nil {
		return err
	}
	v.update(func(c *verifierConfig) { c.policy = pol })
	return nil
}

// SetRoots replaces the trusted AMD roots (a snapshot of r, as
// NewVerifier takes) for every verification that starts afterwards.
// Empty roots are refused (attest.ErrConfig) and change nothing.
func (v *Verifier) SetRoots(r *Roots) error {
	if r.Empty() {
		return attest.Fail(attest.ErrConfig, "snp.config", "no AMD roots: SetRoots needs roots, AMDRoots() for real hardware")
	}
	roots := snapshotRoots(r)
	id := rootsIdentity(roots)
	v.update(func(c *verifierConfig) { c.roots, c.rootsID = roots, id })
	return nil
}

// SetCRLs replaces the CRLs the verifier holds itself (see
// VerifierOptions.CRLs; nil holds none) for every verification that
// starts afterwards. CRLs that do not parse are refused (the error of
// NewVerifier) and change nothing.
func (v *Verifier) SetCRLs(crls map[string][]byte) error {
	parsed, err := parseVerifierCRLs(crls)
	if err != nil {
		return err
	}
	v.update(func(c *verifierConfig) { c.crls = parsed })
	return nil
}

// update installs a copy of the current configuration changed by f, with
// the next generation.
func (v *Verifier) update(f func(*verifierConfig)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	next := *v.live.Load()
	f(&next)
	next.gen++
	v.live.Store(&next)
}
