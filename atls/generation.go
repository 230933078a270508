package atls

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/confidential-go/atls/atls/attest"
)

// generationKey returns the verification-cache key for key under the
// verifier's current configuration. A verifier whose policy, roots or CRLs
// can change (attest.GenerationVerifier, such as snp.Verifier) gives each
// configuration a generation; the key then covers it, so that a result
// reached under one configuration is never read under the next (its
// entries simply age out). The generation is read before the verifier is
// asked, and a verifier decides under a configuration at least that
// recent, so an entry never holds a decision older than its key.
// Verifiers that cannot change keep key as it is.
func (p *peerCheck) generationKey(key [sha256.Size]byte) [sha256.Size]byte {
	gen := attest.VerifierGeneration(p.verifier)
	if gen == 0 {
		return key
	}
	var g [8]byte
	binary.BigEndian.PutUint64(g[:], gen)
	h := sha256.New()
	h.Write(key[:])
	h.Write(g[:])
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
