package idblock

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"

	"github.com/confidential-go/atls/atls/attest"
)

// Offsets in the ID_AUTH structure.
const (
	offIDKeyAlgo     = 0x000
	offAuthKeyAlgo   = 0x004
	offIDBlockSig    = 0x040
	offIDKey         = 0x240
	offIDKeySig      = 0x680
	offAuthorKey     = 0x880
	offAuthReserved3 = offAuthorKey + PublicKeySize
)

// Auth is the contents of an ID_AUTH structure: the ID key, its signature
// over the ID block and, optionally, the author key and its signature over
// the ID key. Both algorithms are always ECDSA P-384 with SHA-384.
type Auth struct {
	// IDKey is the ID key that signed the block.
	IDKey *ecdsa.PublicKey
	// BlockSig is the ID key's signature over the 96-byte ID block.
	BlockSig Signature
	// AuthorKey is the author key that signed the ID key; nil when there
	// is none (the author fields of the structure are then zero).
	AuthorKey *ecdsa.PublicKey
	// IDKeySig is the author key's signature over the ID key in AMD's
	// public-key format; unused without AuthorKey.
	IDKeySig Signature
}

// Sign builds the ID block b and signs it with idKey and, when authorKey
// is not nil, signs idKey's public key with authorKey. Both keys must be
// ECDSA P-384 (check idblock.key). It returns the 96-byte block and the
// 4096-byte ID_AUTH.
func Sign(b *Block, idKey, authorKey *ecdsa.PrivateKey) (block, auth []byte, err error) {
	if idKey == nil {
		return nil, nil, attest.Fail(attest.ErrConfig, CheckKey, "no ID key")
	}
	block, err = b.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	a := &Auth{IDKey: &idKey.PublicKey}
	if a.BlockSig, err = sign(idKey, block); err != nil {
		return nil, nil, err
	}
	if authorKey != nil {
		idPub, err := MarshalPublicKey(&idKey.PublicKey)
		if err != nil {
			return nil, nil, err
		}
		a.AuthorKey = &authorKey.PublicKey
		if a.IDKeySig, err = sign(authorKey, idPub); err != nil {
			return nil, nil, err
		}
	}
	auth, err = a.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	return block, auth, nil
}

// sign signs the SHA-384 digest of msg with key, which must be P-384.
func sign(key *ecdsa.PrivateKey, msg []byte) (Signature, error) {
	if _, err := MarshalPublicKey(&key.PublicKey); err != nil {
		return Signature{}, err
	}
	digest := sha512.Sum384(msg)
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return Signature{}, attest.Wrap(attest.ErrConfig, CheckKey, err)
	}
	return Signature{R: r, S: s}, nil
}

// MarshalBinary returns the 4096-byte ID_AUTH structure.
func (a *Auth) MarshalBinary() ([]byte, error) {
	out := make([]byte, AuthSize)
	idKey, err := MarshalPublicKey(a.IDKey)
	if err != nil {
		return nil, err
	}
	blockSig, err := a.BlockSig.MarshalBinary()
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint32(out[offIDKeyAlgo:], AlgoECDSAP384SHA384)
	copy(out[offIDBlockSig:], blockSig)
	copy(out[offIDKey:], idKey)
	if a.AuthorKey == nil {
		return out, nil
	}
	authorKey, err := MarshalPublicKey(a.AuthorKey)
	if err != nil {
		return nil, err
	}
	idKeySig, err := a.IDKeySig.MarshalBinary()
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint32(out[offAuthKeyAlgo:], AlgoECDSAP384SHA384)
	copy(out[offIDKeySig:], idKeySig)
	copy(out[offAuthorKey:], authorKey)
	return out, nil
}

// ParseAuth decodes a 4096-byte ID_AUTH structure. It fails with check
// idblock.auth (ErrMalformedEvidence) on another size, an algorithm other
// than ECDSA P-384 with SHA-384, a malformed key or signature, or
// non-zero reserved bytes. All-zero author fields (ID_KEY_SIG and
// AUTHOR_KEY) mean no author key, whether AUTH_KEY_ALGO is 0 or 1. It does not verify the signatures:
// see Verify.
func ParseAuth(data []byte) (*Auth, error) {
	if len(data) != AuthSize {
		return nil, attest.Fail(attest.ErrMalformedEvidence, CheckAuth, "ID auth is %d bytes, want %d", len(data), AuthSize)
	}
	if algo := binary.LittleEndian.Uint32(data[offIDKeyAlgo:]); algo != AlgoECDSAP384SHA384 {
		return nil, attest.Fail(attest.ErrMalformedEvidence, CheckAuth, "ID_KEY_ALGO is %d, want %d (ECDSA P-384 with SHA-384)", algo, AlgoECDSAP384SHA384)
	}
	for _, r := range [][2]int{{0x008, offIDBlockSig}, {offIDKey + PublicKeySize, offIDKeySig}, {offAuthReserved3, AuthSize}} {
		if !allZero(data[r[0]:r[1]]) {
			return nil, attest.Fail(attest.ErrMalformedEvidence, CheckAuth, "ID auth has non-zero reserved bytes at 0x%03x", r[0])
		}
	}
	a := &Auth{}
	var err error
	if a.BlockSig, err = ParseSignature(data[offIDBlockSig : offIDBlockSig+SignatureSize]); err != nil {
		return nil, err
	}
	if a.IDKey, err = ParsePublicKey(data[offIDKey : offIDKey+PublicKeySize]); err != nil {
		return nil, err
	}
	algo := binary.LittleEndian.Uint32(data[offAuthKeyAlgo:])
	if algo != 0 && algo != AlgoECDSAP384SHA384 {
		return nil, attest.Fail(attest.ErrMalformedEvidence, CheckAuth, "AUTH_KEY_ALGO is %d, want %d (ECDSA P-384 with SHA-384)", algo, AlgoECDSAP384SHA384)
	}
	if allZero(data[offIDKeySig:offAuthReserved3]) {
		// No author key. Tools differ on AUTH_KEY_ALGO then (the
		// firmware ignores it without AUTHOR_KEY_EN).
		return a, nil
	}
	if algo == 0 {
		return nil, attest.Fail(attest.ErrMalformedEvidence, CheckAuth, "AUTH_KEY_ALGO is 0 but the author key fields are not zero")
	}
	if a.IDKeySig, err = ParseSignature(data[offIDKeySig : offIDKeySig+SignatureSize]); err != nil {
		return nil, err
	}
	if a.AuthorKey, err = ParsePublicKey(data[offAuthorKey : offAuthorKey+PublicKeySize]); err != nil {
		return nil, err
	}
	return a, nil
}

// Verify checks the signatures of a over block (the 96-byte ID_BLOCK):
// the ID key's over the block (check idblock.signature.block) and, with an
// author key, the author key's over the ID key (idblock.signature.id_key),
// both ErrVerification. It says nothing about whether the keys are
// trusted: compare their digests (IDKeyDigest, AuthorKeyDigest) with
// trusted ones.
func (a *Auth) Verify(block []byte) error {
	if len(block) != BlockSize {
		return attest.Fail(attest.ErrMalformedEvidence, CheckBlock, "ID block is %d bytes, want %d", len(block), BlockSize)
	}
	if !verify(a.IDKey, block, a.BlockSig) {
		return attest.Fail(attest.ErrVerification, CheckBlockSignature, "the ID block signature does not verify with the ID key")
	}
	if a.AuthorKey == nil {
		return nil
	}
	idPub, err := MarshalPublicKey(a.IDKey)
	if err != nil {
		return err
	}
	if !verify(a.AuthorKey, idPub, a.IDKeySig) {
		return attest.Fail(attest.ErrVerification, CheckKeySignature, "the ID key signature does not verify with the author key")
	}
	return nil
}

func verify(pub *ecdsa.PublicKey, msg []byte, sig Signature) bool {
	if pub == nil || sig.R == nil || sig.S == nil {
		return false
	}
	digest := sha512.Sum384(msg)
	return ecdsa.Verify(pub, digest[:], sig.R, sig.S)
}

// IDKeyDigest is KeyDigest of the ID key: the report's ID_KEY_DIGEST.
func (a *Auth) IDKeyDigest() ([DigestSize]byte, error) { return KeyDigest(a.IDKey) }

// AuthorKeyDigest is KeyDigest of the author key: the report's
// AUTHOR_KEY_DIGEST. Without an author key it is all zeros and ok is
// false.
func (a *Auth) AuthorKeyDigest() (digest [DigestSize]byte, ok bool, err error) {
	if a.AuthorKey == nil {
		return digest, false, nil
	}
	digest, err = KeyDigest(a.AuthorKey)
	return digest, err == nil, err
}

// Launch is what a guest launched with an ID block shows in its reports.
type Launch struct {
	// Block is the verified ID block.
	Block *Block
	// IDKeyDigest and AuthorKeyDigest are the reports' ID_KEY_DIGEST and
	// AUTHOR_KEY_DIGEST; the latter is zero without an author key.
	IDKeyDigest, AuthorKeyDigest [DigestSize]byte
	// AuthorKeyEn is true when the ID key was signed by an author key
	// (the reports' AUTHOR_KEY_EN).
	AuthorKeyEn bool
}

// ParseAndVerify parses an ID block and its ID_AUTH, verifies the
// signatures as the firmware does at SNP_LAUNCH_FINISH, and returns what
// the guest's reports will carry. It checks no trust: the caller compares
// the digests with the keys it trusts, and Block.MatchLaunch compares the
// block with the launch.
func ParseAndVerify(block, auth []byte) (*Launch, error) {
	b, err := ParseBlock(block)
	if err != nil {
		return nil, err
	}
	a, err := ParseAuth(auth)
	if err != nil {
		return nil, err
	}
	if err := a.Verify(block); err != nil {
		return nil, err
	}
	l := &Launch{Block: b}
	if l.IDKeyDigest, err = a.IDKeyDigest(); err != nil {
		return nil, err
	}
	if l.AuthorKeyDigest, l.AuthorKeyEn, err = a.AuthorKeyDigest(); err != nil {
		return nil, err
	}
	return l, nil
}
