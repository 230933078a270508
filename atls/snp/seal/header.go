package seal

import (
	"encoding/binary"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// Version is the format version Seal writes and the newest Unseal reads.
const Version = 1

// magic starts every sealed blob.
const magic = "ATLSSEAL"

// Format version 1, all integers little-endian:
//
//	offset size
//	0      8    "ATLSSEAL"
//	8      2    format version (1)
//	10     2    header size (196)
//	12     1    root key (1 VCEK, 2 VMRK)
//	13     1    KEY_SEL
//	14     1    flags: bit 0 ID key bound, bit 1 guest values recorded; others zero
//	15     1    zero
//	16     8    GUEST_FIELD_SELECT
//	24     4    VMPL
//	28     4    guest SVN
//	32     8    TCB
//	40     8    launch mitigation vector
//	48     48   recorded measurement
//	96     8    recorded guest policy
//	104    16   recorded family ID
//	120    16   recorded image ID
//	136    48   recorded ID key digest
//	184    12   GCM nonce
//	196         ciphertext and 16-byte tag
//
// The recorded values are zero when not recorded. The whole header is
// GCM additional data.
const (
	headerSizeV1 = 196
	tagSize      = 16

	flagIDKey    = 1 << 0
	flagRecorded = 1 << 1
)

// Record holds the guest's values at sealing, for Unseal to say which one
// differs when a blob does not open.
type Record struct {
	Measurement [48]byte
	GuestPolicy uint64
	FamilyID    [16]byte
	ImageID     [16]byte
	IDKeyDigest [48]byte
}

func recordOf(g snp.GuestFields) Record {
	return Record{Measurement: g.Measurement, GuestPolicy: g.GuestPolicy, FamilyID: g.FamilyID, ImageID: g.ImageID, IDKeyDigest: g.IDKeyDigest}
}

// Header is the header of a sealed blob.
type Header struct {
	// Version is the format version.
	Version uint16
	// Selection is the key selection, with the guest SVN, TCB and
	// mitigation vector the key was derived at.
	Selection Selection
	// Recorded says whether Guest holds the guest's values at sealing.
	Recorded bool
	// Guest are the guest's values at sealing.
	Guest Record
	// Nonce is the GCM nonce.
	Nonce [12]byte
}

func (h *Header) marshal() []byte {
	b := make([]byte, headerSizeV1)
	le := binary.LittleEndian
	copy(b, magic)
	le.PutUint16(b[8:], Version)
	le.PutUint16(b[10:], headerSizeV1)
	s := h.Selection
	b[12] = byte(s.Root)
	b[13] = byte(s.KeySelect)
	if s.IDKey {
		b[14] |= flagIDKey
	}
	if h.Recorded {
		b[14] |= flagRecorded
	}
	le.PutUint64(b[16:], uint64(s.Fields))
	le.PutUint32(b[24:], s.VMPL)
	le.PutUint32(b[28:], s.GuestSVN)
	le.PutUint64(b[32:], s.TCB)
	le.PutUint64(b[40:], s.LaunchMitVector)
	copy(b[48:96], h.Guest.Measurement[:])
	le.PutUint64(b[96:], h.Guest.GuestPolicy)
	copy(b[104:120], h.Guest.FamilyID[:])
	copy(b[120:136], h.Guest.ImageID[:])
	copy(b[136:184], h.Guest.IDKeyDigest[:])
	copy(b[184:196], h.Nonce[:])
	return b
}

// ParseHeader reads the header of a sealed blob and returns it with the
// ciphertext that follows. Nothing in it is authenticated until Unseal
// opens the ciphertext. It fails with seal.format (ErrMalformedEvidence,
// wrapping ErrNotSealed when the magic is missing) or, for a format newer
// than Version, seal.version (ErrUnsupported, wrapping ErrNewerVersion).
func ParseHeader(blob []byte) (*Header, []byte, error) {
	bad := func(format string, args ...any) (*Header, []byte, error) {
		return nil, nil, attest.Fail(attest.ErrMalformedEvidence, "seal.format", format, args...)
	}
	if len(blob) < len(magic)+4 || string(blob[:len(magic)]) != magic {
		return nil, nil, attest.Wrap(attest.ErrMalformedEvidence, "seal.format", ErrNotSealed)
	}
	le := binary.LittleEndian
	h := &Header{Version: le.Uint16(blob[8:])}
	switch {
	case h.Version == 0:
		return bad("format version 0 does not exist")
	case h.Version > Version:
		return nil, nil, attest.Fail(attest.ErrUnsupported, "seal.version",
			"%w: the blob is in format %d, and this version of atls reads format %d at most; unseal it with a newer atls", ErrNewerVersion, h.Version, Version)
	}
	if n := le.Uint16(blob[10:]); n != headerSizeV1 {
		return bad("a format 1 header is %d bytes, not %d", headerSizeV1, n)
	}
	if len(blob) < headerSizeV1+tagSize {
		return bad("%d bytes is too short for a sealed blob (at least %d)", len(blob), headerSizeV1+tagSize)
	}
	b := blob[:headerSizeV1]
	if b[14]&^(flagIDKey|flagRecorded) != 0 || b[15] != 0 {
		return bad("reserved header bits are set")
	}
	s := &h.Selection
	s.Root = snp.KeyRoot(b[12])
	s.KeySelect = snp.KeySelect(b[13])
	s.IDKey = b[14]&flagIDKey != 0
	h.Recorded = b[14]&flagRecorded != 0
	s.Fields = snp.KeyFields(le.Uint64(b[16:]))
	s.VMPL = le.Uint32(b[24:])
	s.GuestSVN = le.Uint32(b[28:])
	s.TCB = le.Uint64(b[32:])
	s.LaunchMitVector = le.Uint64(b[40:])
	copy(h.Guest.Measurement[:], b[48:96])
	h.Guest.GuestPolicy = le.Uint64(b[96:])
	copy(h.Guest.FamilyID[:], b[104:120])
	copy(h.Guest.ImageID[:], b[120:136])
	copy(h.Guest.IDKeyDigest[:], b[136:184])
	copy(h.Nonce[:], b[184:196])
	if !h.Recorded && h.Guest != (Record{}) {
		return bad("values recorded in a header that says none are")
	}
	if s.IDKey && !h.Recorded {
		return bad("an ID-key-bound blob without the recorded ID key")
	}
	return h, blob[headerSizeV1:], nil
}
