// Package idblock builds, signs, parses and verifies the SEV-SNP Identity
// Block (ID_BLOCK, 96 bytes) and its authentication structure (ID_AUTH,
// 4096 bytes) that a guest owner hands to the hypervisor for
// SNP_LAUNCH_FINISH (QEMU: the id-block and id-auth properties of the
// sev-snp-guest object, base64-encoded).
//
// The ID block names the launch digest the firmware must compute for the
// guest, the guest POLICY, a family and image ID and a guest SVN. It is
// signed with an ECDSA P-384 ID key; the ID key may in turn be signed by
// an author key. The firmware refuses to launch a guest whose measurement
// or policy differs from the block, and every attestation report of the
// guest then carries the SHA-384 digests of both public keys in AMD's
// format (ID_KEY_DIGEST, AUTHOR_KEY_DIGEST). A verifier's policy can trust
// a key digest instead of a list of measurements: see [KeyDigest] and
// snp.Policy.TrustedIDKeyDigests.
//
// The package is pure: it needs no SEV-SNP device and does no I/O.
//
// # Layouts
//
// All integers are little-endian (AMD SEV-SNP ABI specification, 56860,
// chapter "SNP_LAUNCH_FINISH"). ECDSA signatures are 512 bytes: R and S as
// 72-byte little-endian integers, then zeros. Public keys are 0x404 bytes:
// the curve (2 = P-384), QX and QY as 72-byte little-endian integers, then
// zeros. Signatures are over the SHA-384 digest of the message: the 96
// bytes of the ID block for the ID key, the 0x404-byte public-key
// structure of the ID key for the author key.
//
// # Traps
//
//   - The POLICY in the block must equal the policy the VM is launched
//     with (QEMU's policy= property), and the measurement must be the one
//     the firmware computes for the exact firmware, kernel, initrd,
//     command line, vCPU count and type; otherwise the launch fails.
//   - With an author key, QEMU needs author-key-enabled=on, or the
//     firmware ignores the author key and reports a zero AUTHOR_KEY_DIGEST.
//   - ECDSA signatures are randomized: signing twice gives two different
//     ID_AUTH structures, both valid.
package idblock

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"encoding/binary"
	"math/big"

	"github.com/confidential-go/atls/atls/attest"
)

// Sizes and constants of the ABI structures.
const (
	// BlockSize is the size of an ID_BLOCK.
	BlockSize = 96
	// AuthSize is the size of an ID_AUTH structure.
	AuthSize = 4096
	// PublicKeySize is the size of AMD's ECDSA public-key structure.
	PublicKeySize = 0x404
	// SignatureSize is the size of AMD's ECDSA signature structure.
	SignatureSize = 512
	// DigestSize is the size of a launch digest and of a key digest.
	DigestSize = 48

	// BlockVersion is the only ID_BLOCK VERSION the ABI defines.
	BlockVersion = 1
	// AlgoECDSAP384SHA384 is the ID_KEY_ALGO and AUTH_KEY_ALGO value of
	// ECDSA P-384 with SHA-384, the only algorithm the ABI defines.
	AlgoECDSAP384SHA384 = 1
	// CurveP384 is the CURVE value of a P-384 public key.
	CurveP384 = 2

	// DefaultPolicy is the guest POLICY a Block with a zero Policy
	// carries: 0x30000, SMT allowed, the must-be-one bit 17, ABI 0.0, no
	// debugging, no migration agent (QEMU's default as well).
	DefaultPolicy = 0x30000
)

// Check names of the errors this package returns (see docs/CHECKS.md).
const (
	// CheckBlock: an ID_BLOCK of the wrong size or an unknown VERSION.
	CheckBlock = "idblock.block"
	// CheckPolicy: a POLICY the firmware refuses, or one that differs
	// from the launch policy.
	CheckPolicy = "idblock.policy"
	// CheckMeasurement: the block's launch digest differs from the launch
	// measurement.
	CheckMeasurement = "idblock.measurement"
	// CheckKey: a key that is not ECDSA P-384, or does not parse.
	CheckKey = "idblock.key"
	// CheckAuth: an ID_AUTH of the wrong size, an unknown algorithm or
	// curve, a point not on the curve, or non-zero reserved bytes.
	CheckAuth = "idblock.auth"
	// CheckBlockSignature: the ID block signature does not verify with
	// the ID key.
	CheckBlockSignature = "idblock.signature.block"
	// CheckKeySignature: the ID key signature does not verify with the
	// author key.
	CheckKeySignature = "idblock.signature.id_key"
)

// Offsets in the ID_BLOCK.
const (
	offLD       = 0x00
	offFamilyID = 0x30
	offImageID  = 0x40
	offVersion  = 0x50
	offGuestSVN = 0x54
	offPolicy   = 0x58
)

// Block is the contents of an ID_BLOCK.
type Block struct {
	// Measurement is the launch digest (LD) the firmware must compute
	// for the guest. There is no default: it is what the block vouches
	// for.
	Measurement [DigestSize]byte
	// FamilyID and ImageID are chosen by the owner; reports carry them.
	// Default all zeros.
	FamilyID, ImageID [16]byte
	// GuestSVN is the guest's security version number; reports carry it.
	// Default 0.
	GuestSVN uint32
	// Policy is the guest POLICY, which must equal the launch policy.
	// Zero means DefaultPolicy (0x30000).
	Policy uint64
}

// policy returns the block's policy with its default.
func (b *Block) policy() uint64 {
	if b.Policy == 0 {
		return DefaultPolicy
	}
	return b.Policy
}

// MarshalBinary returns the 96-byte ID_BLOCK, with VERSION 1. It fails
// with check idblock.policy (ErrConfig) if the policy is one the firmware
// refuses (bit 17 clear, reserved bits set).
func (b *Block) MarshalBinary() ([]byte, error) {
	p := b.policy()
	if err := checkPolicyBits(p); err != nil {
		return nil, err
	}
	out := make([]byte, BlockSize)
	copy(out[offLD:], b.Measurement[:])
	copy(out[offFamilyID:], b.FamilyID[:])
	copy(out[offImageID:], b.ImageID[:])
	binary.LittleEndian.PutUint32(out[offVersion:], BlockVersion)
	binary.LittleEndian.PutUint32(out[offGuestSVN:], b.GuestSVN)
	binary.LittleEndian.PutUint64(out[offPolicy:], p)
	return out, nil
}

// ParseBlock decodes a 96-byte ID_BLOCK. It fails with check idblock.block
// (ErrMalformedEvidence) on another size or a VERSION other than 1, and
// with idblock.policy on a policy the firmware refuses. The returned
// block's Policy is the one encoded, never zero.
func ParseBlock(data []byte) (*Block, error) {
	if len(data) != BlockSize {
		return nil, attest.Fail(attest.ErrMalformedEvidence, CheckBlock, "ID block is %d bytes, want %d", len(data), BlockSize)
	}
	if v := binary.LittleEndian.Uint32(data[offVersion:]); v != BlockVersion {
		return nil, attest.Fail(attest.ErrMalformedEvidence, CheckBlock, "ID block VERSION is %d, want %d", v, BlockVersion)
	}
	b := &Block{
		GuestSVN: binary.LittleEndian.Uint32(data[offGuestSVN:]),
		Policy:   binary.LittleEndian.Uint64(data[offPolicy:]),
	}
	copy(b.Measurement[:], data[offLD:])
	copy(b.FamilyID[:], data[offFamilyID:])
	copy(b.ImageID[:], data[offImageID:])
	if err := checkPolicyBits(b.Policy); err != nil {
		return nil, err
	}
	return b, nil
}

// policyMustBeOne is bit 17 of the guest policy, reserved and set to one;
// bits 63..26 are reserved and zero.
const (
	policyMustBeOne  = 1 << 17
	policyReservedHi = uint64(0xffff_ffff_fc00_0000) // bits 63..26
)

func checkPolicyBits(p uint64) error {
	if p&policyMustBeOne == 0 {
		return attest.Fail(attest.ErrConfig, CheckPolicy, "guest policy 0x%x: bit 17 is reserved and must be 1", p)
	}
	if p&policyReservedHi != 0 {
		return attest.Fail(attest.ErrConfig, CheckPolicy, "guest policy 0x%x: bits 63-26 are reserved and must be 0", p)
	}
	return nil
}

// MatchLaunch checks what the firmware checks at SNP_LAUNCH_FINISH: that
// the block's launch digest equals the measured one (check
// idblock.measurement) and its POLICY the launch policy (idblock.policy),
// both ErrPolicy.
func (b *Block) MatchLaunch(measurement [DigestSize]byte, policy uint64) error {
	if b.Measurement != measurement {
		return attest.Fail(attest.ErrPolicy, CheckMeasurement, "the ID block vouches for launch digest %x, the guest measures %x", b.Measurement, measurement)
	}
	if b.policy() != policy {
		return attest.Fail(attest.ErrPolicy, CheckPolicy, "the ID block names guest policy 0x%x, the guest is launched with 0x%x", b.policy(), policy)
	}
	return nil
}

// Offsets in AMD's public-key and signature structures.
const (
	ecdsaIntSize = 72 // each of QX, QY, R, S, little-endian, zero-padded
	offCurve     = 0x00
	offQX        = 0x04
	offQY        = offQX + ecdsaIntSize
	offR         = 0x00
	offS         = offR + ecdsaIntSize
)

// MarshalPublicKey returns pub in AMD's 0x404-byte public-key format. It
// fails with check idblock.key (ErrConfig) unless pub is a P-384 key.
func MarshalPublicKey(pub *ecdsa.PublicKey) ([]byte, error) {
	if pub == nil || pub.Curve != elliptic.P384() {
		return nil, attest.Fail(attest.ErrConfig, CheckKey, "the key is not an ECDSA P-384 key")
	}
	// Bytes validates the point and gives 0x04 || X || Y, 48 bytes each.
	raw, err := pub.Bytes()
	if err != nil {
		return nil, attest.Wrap(attest.ErrConfig, CheckKey, err)
	}
	out := make([]byte, PublicKeySize)
	binary.LittleEndian.PutUint32(out[offCurve:], CurveP384)
	putLE(out[offQX:offQX+ecdsaIntSize], raw[1:49])
	putLE(out[offQY:offQY+ecdsaIntSize], raw[49:97])
	return out, nil
}

// ParsePublicKey decodes AMD's 0x404-byte public-key format. It fails
// with check idblock.auth (ErrMalformedEvidence) on another size, a curve
// other than P-384, a point not on the curve or non-zero padding.
func ParsePublicKey(data []byte) (*ecdsa.PublicKey, error) {
	if len(data) != PublicKeySize {
		return nil, attest.Fail(attest.ErrMalformedEvidence, CheckAuth, "public key is %d bytes, want %d", len(data), PublicKeySize)
	}
	if c := binary.LittleEndian.Uint32(data[offCurve:]); c != CurveP384 {
		return nil, attest.Fail(attest.ErrMalformedEvidence, CheckAuth, "public key curve is %d, want %d (P-384)", c, CurveP384)
	}
	x, errX := getLE(data[offQX:offQX+ecdsaIntSize], 48)
	y, errY := getLE(data[offQY:offQY+ecdsaIntSize], 48)
	if errX != nil || errY != nil || !allZero(data[offQY+ecdsaIntSize:]) {
		return nil, attest.Fail(attest.ErrMalformedEvidence, CheckAuth, "public key has non-zero padding")
	}
	raw := append(append([]byte{4}, x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P384(), raw)
	if err != nil {
		return nil, attest.Fail(attest.ErrMalformedEvidence, CheckAuth, "public key: %v", err)
	}
	return pub, nil
}

// KeyDigest is the SHA-384 digest of pub in AMD's public-key format: the
// ID_KEY_DIGEST or AUTHOR_KEY_DIGEST that reports of a guest launched
// with a block signed by pub carry. It fails with check idblock.key
// unless pub is a P-384 key.
func KeyDigest(pub *ecdsa.PublicKey) ([DigestSize]byte, error) {
	b, err := MarshalPublicKey(pub)
	if err != nil {
		return [DigestSize]byte{}, err
	}
	return sha512.Sum384(b), nil
}

// Signature is an ECDSA signature.
type Signature struct {
	R, S *big.Int
}

// MarshalBinary returns the signature in AMD's 512-byte format. R and S
// must be positive and fit in 72 bytes.
func (s Signature) MarshalBinary() ([]byte, error) {
	out := make([]byte, SignatureSize)
	for _, v := range []struct {
		n   *big.Int
		off int
	}{{s.R, offR}, {s.S, offS}} {
		if v.n == nil || v.n.Sign() <= 0 || v.n.BitLen() > 8*ecdsaIntSize {
			return nil, attest.Fail(attest.ErrConfig, CheckAuth, "signature component out of range")
		}
		be := v.n.FillBytes(make([]byte, ecdsaIntSize))
		putLE(out[v.off:v.off+ecdsaIntSize], be)
	}
	return out, nil
}

// ParseSignature decodes AMD's 512-byte signature format. It fails with
// check idblock.auth (ErrMalformedEvidence) on another size or non-zero
// bytes after S. It does not verify the signature.
func ParseSignature(data []byte) (Signature, error) {
	if len(data) != SignatureSize {
		return Signature{}, attest.Fail(attest.ErrMalformedEvidence, CheckAuth, "signature is %d bytes, want %d", len(data), SignatureSize)
	}
	if !allZero(data[offS+ecdsaIntSize:]) {
		return Signature{}, attest.Fail(attest.ErrMalformedEvidence, CheckAuth, "signature has non-zero reserved bytes")
	}
	r, _ := getLE(data[offR:offR+ecdsaIntSize], ecdsaIntSize)
	s, _ := getLE(data[offS:offS+ecdsaIntSize], ecdsaIntSize)
	return Signature{R: new(big.Int).SetBytes(r), S: new(big.Int).SetBytes(s)}, nil
}

// putLE writes the big-endian integer be into dst little-endian,
// zero-padded; len(be) <= len(dst).
func putLE(dst, be []byte) {
	clear(dst)
	for i, c := range be {
		dst[len(be)-1-i] = c
	}
}

// getLE reads a little-endian integer into n big-endian bytes; it fails
// if the value does not fit.
func getLE(src []byte, n int) ([]byte, error) {
	if !allZero(src[n:]) {
		return nil, attest.Fail(attest.ErrMalformedEvidence, CheckAuth, "integer wider than %d bytes", n)
	}
	be := make([]byte, n)
	for i := range n {
		be[n-1-i] = src[i]
	}
	return be, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
