// Package seal keeps data that only the same SEV-SNP guest can read
// again: it encrypts with AES-256-GCM under a key that the AMD secure
// processor derives (MSG_KEY_REQ) from a root key and the guest fields
// you select, so that a guest launched from another image, with another
// policy, at a lower guest SVN or on rolled-back firmware cannot derive
// the key, while the same guest can after a restart.
//
//	d, err := guest.NewKeyDeriver(guest.KeyDeriverOptions{}) // or a *snp.SimAttester
//	blob, err := seal.Seal(ctx, d, seal.Selection{Fields: snp.FieldMeasurement | snp.FieldGuestPolicy}, secret, nil)
//	secret, err = seal.Unseal(ctx, d, blob, nil)
//
// A sealed blob starts with a versioned header that records the selection
// and the values used (guest SVN, TCB), so that Unseal derives the same
// key without being told; the header is authenticated as GCM additional
// data. Unseal names the cause of a failure where it can be known: a
// different image (check seal.measurement), guest policy, family or image
// ID, ID key, a rolled-back TCB (seal.tcb) or guest SVN (seal.guest_svn),
// a damaged or tampered blob (seal.open), a format it does not know
// (seal.version). See docs/CHECKS.md.
//
// # Choosing what to select
//
//   - The root: RootVCEK (the default) survives restarts; a key from the
//     VMRK does not, since the firmware makes a new VMRK at every launch.
//     A VCEK-rooted key with no field selected is the same for every
//     guest on the chip: always select something that identifies your
//     image, at least the measurement or the family and image IDs.
//   - FieldMeasurement binds to one image: an upgrade cannot unseal.
//   - FieldFamilyID and FieldImageID, without the measurement, survive an
//     upgrade that keeps the IDs of the ID block. The firmware does not
//     mix the ID key into the key: whoever signs an ID block chooses its
//     IDs, so a guest launched with another owner's ID block carrying the
//     same IDs derives the same key. Selection.IDKey makes Unseal refuse
//     a guest whose reported ID key differs, and mixes the ID key digest
//     into the sealing key; it is enforced by this package, not by the
//     firmware, so it stops a mistaken upgrade but not an image written
//     to ask the secure processor for the key itself.
//   - FieldGuestSVN and FieldTCBVersion are floors: the blob unseals at
//     that guest SVN or TCB and any later one, never below.
//   - FieldGuestPolicy keeps a guest launched with debugging allowed from
//     reading what a production guest sealed.
//
// Each seal uses a fresh random 96-bit GCM nonce under a key that is the
// same for every seal with the same selection: keep the number of seals
// under one selection well below 2^32.
package seal

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// KeyDeriver asks the secure processor for a derived key (MSG_KEY_REQ).
// guest.KeyDeriver implements it on SEV-SNP hardware, snp.SimAttester in
// the simulator.
type KeyDeriver interface {
	DeriveKey(ctx context.Context, req snp.DerivedKeyRequest) ([32]byte, error)
}

// FieldReader is implemented by a KeyDeriver that can also report the
// current fields of its guest (from an attestation report). Seal then
// records them and fills in floors left at zero; Unseal names the field
// that differs when a blob does not open. Both implementations have it.
type FieldReader interface {
	GuestFields(ctx context.Context) (snp.GuestFields, error)
}

// Selection is what a sealing key depends on.
type Selection struct {
	// Root is the root key. Zero means snp.RootVCEK.
	Root snp.KeyRoot
	// KeySelect picks the VCEK or the VLEK. Zero lets the firmware
	// choose (the VLEK where the cloud provider installed one).
	KeySelect snp.KeySelect
	// Fields are the guest fields the secure processor mixes in. A
	// VCEK-rooted selection must include the measurement, the family ID
	// or the image ID: otherwise every guest on the chip with the same
	// policy and SVN would derive the key (IDKey does not change that:
	// the ID key digest is public). Zero is refused.
	Fields snp.KeyFields
	// VMPL is mixed into the key: the least privileged VMPL that may
	// derive it. Zero means VMPL 0, which only code at VMPL 0 can use.
	VMPL uint32
	// GuestSVN is the guest SVN floor when Fields has FieldGuestSVN.
	// Zero means the guest's launch SVN.
	GuestSVN uint32
	// TCB is the TCB floor when Fields has FieldTCBVersion. Zero means
	// the committed TCB of the platform.
	TCB uint64
	// LaunchMitVector is the mitigation vector mixed in when Fields has
	// FieldLaunchMitVector. Zero means the guest's launch vector.
	LaunchMitVector uint64
	// IDKey makes the key depend on the ID key digest that the secure
	// processor reports for this guest, checked and mixed in by this
	// package (see the package documentation for its limit).
	IDKey bool
}

// request is the MSG_KEY_REQ of a resolved selection.
func (s Selection) request() snp.DerivedKeyRequest {
	return snp.DerivedKeyRequest{
		Root: s.Root, KeySelect: s.KeySelect, Fields: s.Fields, VMPL: s.VMPL,
		GuestSVN: s.GuestSVN, TCB: s.TCB, LaunchMitVector: s.LaunchMitVector,
	}
}

// resolve fills in the defaults of s from the guest's fields cur (nil
// when the deriver cannot report them).
func (s Selection) resolve(cur *snp.GuestFields) (Selection, error) {
	if s.Root == 0 {
		s.Root = snp.RootVCEK
	}
	need := func(what string) error {
		return attest.Fail(attest.ErrConfig, "seal.request", "%s, and the key deriver cannot report the guest's fields", what)
	}
	if s.Fields&snp.FieldGuestSVN != 0 && s.GuestSVN == 0 {
		if cur == nil {
			return s, need("no guest SVN floor given")
		}
		s.GuestSVN = cur.GuestSVN
	}
	if s.Fields&snp.FieldTCBVersion != 0 && s.TCB == 0 {
		if cur == nil {
			return s, need("no TCB floor given")
		}
		s.TCB = cur.CommittedTCB
	}
	if s.Fields&snp.FieldLaunchMitVector != 0 && s.LaunchMitVector == 0 {
		if cur == nil {
			return s, need("no mitigation vector given")
		}
		s.LaunchMitVector = cur.LaunchMitVector
	}
	if s.IDKey && cur == nil {
		return s, need("IDKey is set")
	}
	identifying := snp.FieldMeasurement | snp.FieldFamilyID | snp.FieldImageID
	if s.Root == snp.RootVCEK && s.Fields&identifying == 0 {
		return s, attest.Fail(attest.ErrConfig, "seal.request",
			"a VCEK-rooted key that selects no field identifying the guest (measurement, family or image ID) is the same for every guest on the chip with the same selected values")
	}
	return s, s.request().Check()
}

// guestFields returns the guest's fields if d can report them.
func guestFields(ctx context.Context, d KeyDeriver) (*snp.GuestFields, error) {
	r, ok := d.(FieldReader)
	if !ok {
		return nil, nil
	}
	g, err := r.GuestFields(ctx)
	if err != nil {
		return nil, attest.Fail(attest.ErrUnsupported, "seal.derive", "reading the guest's fields: %w", err)
	}
	return &g, nil
}

// DeriveKey returns the key sealing uses for sel on this guest (with the
// ID key digest mixed in if sel.IDKey), for callers that encrypt on their
// own, and the selection with its defaults filled in.
func DeriveKey(ctx context.Context, d KeyDeriver, sel Selection) ([32]byte, Selection, error) {
	cur, err := guestFields(ctx, d)
	if err != nil {
		return [32]byte{}, sel, err
	}
	sel, err = sel.resolve(cur)
	if err != nil {
		return [32]byte{}, sel, err
	}
	k, err := sealingKey(ctx, d, sel, cur)
	return k, sel, err
}

// sealingKey derives the hardware key for sel and turns it into the
// AES key.
func sealingKey(ctx context.Context, d KeyDeriver, sel Selection, cur *snp.GuestFields) ([32]byte, error) {
	var key [32]byte
	hw, err := d.DeriveKey(ctx, sel.request())
	if err != nil {
		if attest.FailedCheck(err) != "" {
			return key, err
		}
		return key, attest.Fail(attest.ErrUnsupported, "seal.derive", "the secure processor derived no key: %w", err)
	}
	info := []byte("atls seal v1 aes-256-gcm")
	if sel.IDKey {
		info = append(info, cur.IDKeyDigest[:]...)
	}
	k, err := hkdf.Key(sha256.New, hw[:], nil, string(info), len(key))
	clear(hw[:])
	if err != nil {
		return key, attest.Fail(attest.ErrConfig, "seal.derive", "%w", err)
	}
	copy(key[:], k)
	clear(k)
	return key, nil
}

// Seal encrypts plaintext under a key derived for sel and returns the
// sealed blob: the header, then the GCM ciphertext. additionalData, which
// may be nil, is authenticated but not stored: Unseal needs the same.
func Seal(ctx context.Context, d KeyDeriver, sel Selection, plaintext, additionalData []byte) ([]byte, error) {
	cur, err := guestFields(ctx, d)
	if err != nil {
		return nil, err
	}
	sel, err = sel.resolve(cur)
	if err != nil {
		return nil, err
	}
	key, err := sealingKey(ctx, d, sel, cur)
	if err != nil {
		return nil, err
	}
	defer clear(key[:])
	h := Header{Version: Version, Selection: sel}
	if cur != nil {
		h.Recorded = true
		h.Guest = recordOf(*cur)
	}
	if _, err := rand.Read(h.Nonce[:]); err != nil {
		return nil, attest.Fail(attest.ErrConfig, "seal.derive", "random nonce: %w", err)
	}
	hdr := h.marshal()
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return aead.Seal(hdr, h.Nonce[:], plaintext, aad(hdr, additionalData)), nil
}

// Unseal derives the key the header of blob names and decrypts. A blob
// that does not open fails with the cause it can tell: a field of this
// guest that differs from the one recorded at sealing (seal.measurement,
// seal.guest_policy, seal.family_id, seal.image_id, seal.id_key, kind
// ErrPolicy), a TCB or guest SVN below the floor (seal.tcb,
// seal.guest_svn), otherwise seal.open (ErrVerification: tampered, or
// sealed on another chip or, for VMRK keys, another launch). A blob in a
// newer format fails with seal.version (ErrUnsupported), one that is not
// a sealed blob with seal.format (ErrMalformedEvidence).
func Unseal(ctx context.Context, d KeyDeriver, blob, additionalData []byte) ([]byte, error) {
	h, body, err := ParseHeader(blob)
	if err != nil {
		return nil, err
	}
	sel := h.Selection
	if err := sel.request().Check(); err != nil {
		return nil, attest.Fail(attest.ErrMalformedEvidence, "seal.format", "the header's key request is invalid: %w", err)
	}
	cur, err := guestFields(ctx, d)
	if err != nil {
		return nil, err
	}
	if sel.IDKey && cur == nil {
		return nil, attest.Fail(attest.ErrConfig, "seal.request", "the blob is bound to the ID key, and the key deriver cannot report it")
	}
	// A rollback makes the secure processor refuse the request; say so
	// before asking it.
	if cur != nil {
		if err := h.floors(*cur); err != nil {
			return nil, err
		}
	}
	key, err := sealingKey(ctx, d, sel, cur)
	if err != nil {
		return nil, err
	}
	defer clear(key[:])
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	hdr := blob[:len(blob)-len(body)]
	plaintext, err := aead.Open(nil, h.Nonce[:], body, aad(hdr, additionalData))
	if err == nil {
		return plaintext, nil
	}
	if cur != nil {
		if err := h.differs(*cur); err != nil {
			return nil, err
		}
	}
	return nil, attest.Fail(attest.ErrVerification, "seal.open",
		"the blob does not open: it was tampered with, the additional data differs, or it was sealed on another chip (or, with the VMRK, in another launch of the guest)")
}

func newGCM(key [32]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, attest.Fail(attest.ErrConfig, "seal.derive", "%w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, attest.Fail(attest.ErrConfig, "seal.derive", "%w", err)
	}
	return aead, nil
}

// aad is the GCM additional data: the header (of a fixed size for its
// format version, so the boundary is unambiguous), then the caller's
// data.
func aad(hdr, additionalData []byte) []byte {
	return append(bytes.Clone(hdr), additionalData...)
}

// floors reports a guest SVN, TCB or mitigation vector below what the
// blob was sealed at.
func (h *Header) floors(cur snp.GuestFields) error {
	s := h.Selection
	switch {
	case s.Fields&snp.FieldTCBVersion != 0 && !snp.TCBAtMost(s.TCB, cur.CommittedTCB):
		return attest.Fail(attest.ErrPolicy, "seal.tcb",
			"sealed at TCB 0x%016x, and this platform's committed TCB 0x%016x is lower in some component: the firmware was rolled back", s.TCB, cur.CommittedTCB)
	case s.Fields&snp.FieldGuestSVN != 0 && s.GuestSVN > cur.GuestSVN:
		return attest.Fail(attest.ErrPolicy, "seal.guest_svn",
			"sealed at guest SVN %d, and this guest was launched at SVN %d", s.GuestSVN, cur.GuestSVN)
	case s.Fields&snp.FieldLaunchMitVector != 0 && s.LaunchMitVector&^cur.LaunchMitVector != 0:
		return attest.Fail(attest.ErrPolicy, "seal.launch_mit_vector",
			"sealed with mitigation bits 0x%x that this launch did not verify", s.LaunchMitVector&^cur.LaunchMitVector)
	}
	return nil
}

// differs names the first selected field whose recorded value differs
// from the guest's.
func (h *Header) differs(cur snp.GuestFields) error {
	if !h.Recorded {
		return nil
	}
	s, rec, now := h.Selection, h.Guest, recordOf(cur)
	fail := func(check, what string, was, is any) error {
		return attest.Fail(attest.ErrPolicy, check, "sealed by a guest with %s %x; this guest has %x", what, was, is)
	}
	switch {
	case s.Fields&snp.FieldMeasurement != 0 && rec.Measurement != now.Measurement:
		return fail("seal.measurement", "measurement", rec.Measurement, now.Measurement)
	case s.Fields&snp.FieldGuestPolicy != 0 && rec.GuestPolicy != now.GuestPolicy:
		return fail("seal.guest_policy", "guest policy", rec.GuestPolicy, now.GuestPolicy)
	case s.Fields&snp.FieldFamilyID != 0 && rec.FamilyID != now.FamilyID:
		return fail("seal.family_id", "family ID", rec.FamilyID, now.FamilyID)
	case s.Fields&snp.FieldImageID != 0 && rec.ImageID != now.ImageID:
		return fail("seal.image_id", "image ID", rec.ImageID, now.ImageID)
	case s.IDKey && rec.IDKeyDigest != now.IDKeyDigest:
		return fail("seal.id_key", "ID key digest", rec.IDKeyDigest, now.IDKeyDigest)
	}
	return nil
}

// ErrNotSealed is the cause of a seal.format failure: the data does not
// start with the sealed-blob magic.
var ErrNotSealed = errors.New("seal: not a sealed blob")

// ErrNewerVersion is the cause of a seal.version failure.
var ErrNewerVersion = errors.New("seal: sealed in a newer format")

// ParseFields reads a comma-separated selection as the atls command takes
// it: the names of snp.ParseKeyFields (measurement, policy, family-id,
// image-id, guest-svn, tcb, launch-mit-vector) and id-key, which sets
// Selection.IDKey. It sets only Fields and IDKey.
func ParseFields(s string) (Selection, error) {
	var sel Selection
	var rest []string
	for _, name := range strings.Split(s, ",") {
		if strings.EqualFold(strings.TrimSpace(name), "id-key") {
			sel.IDKey = true
			continue
		}
		rest = append(rest, name)
	}
	f, err := snp.ParseKeyFields(strings.Join(rest, ","))
	if err != nil {
		return sel, attest.Fail(attest.ErrConfig, "seal.request", "%w (or id-key)", err)
	}
	sel.Fields = f
	return sel, nil
}
