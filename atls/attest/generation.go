package attest

// GenerationVerifier is an optional interface of a Verifier whose
// configuration (policy, trusted roots, revocation lists) can change after
// creation. Generation returns a number that changes whenever that
// configuration does and never returns to an earlier value.
//
// Callers that cache verification results (package atls does) key them
// with the generation read before calling Verify, so that a result reached
// under one configuration is never reused under another. Verify must
// decide each call under one configuration, taken when the call starts,
// whose generation is at least the one Generation returned before the
// call.
type GenerationVerifier interface {
	Verifier
	Generation() uint64
}

// VerifierGeneration returns v's generation if v implements
// GenerationVerifier, and 0 otherwise (a verifier that cannot change).
func VerifierGeneration(v Verifier) uint64 {
	if g, ok := v.(GenerationVerifier); ok {
		return g.Generation()
	}
	return 0
}
