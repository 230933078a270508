package snp

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/confidential-go/atls/atls/attest"
)

// KeyRoot is the root key a derived key is mixed from: ROOT_KEY_SELECT,
// bit 0 of the first word of MSG_KEY_REQ, where 0 means the VCEK and 1
// the VMRK. The zero KeyRoot is no choice at all and is refused, so that
// the sense of that bit is never guessed.
type KeyRoot uint8

const (
	// RootVCEK derives from the chip's VCEK (or VLEK, see KeySelect): the
	// same on every boot of the chip, shared by every guest on the chip
	// that selects the same fields. The root for sealing.
	RootVCEK KeyRoot = 1
	// RootVMRK derives from the VM root key, which the firmware makes
	// afresh at every launch (or a migration agent provides): a key that
	// does not survive a restart of the guest.
	RootVMRK KeyRoot = 2
)

// String returns "vcek", "vmrk" or "root(N)".
func (r KeyRoot) String() string {
	switch r {
	case RootVCEK:
		return "vcek"
	case RootVMRK:
		return "vmrk"
	}
	return fmt.Sprintf("root(%d)", uint8(r))
}

// ParseKeyRoot reads "vcek" or "vmrk".
func ParseKeyRoot(s string) (KeyRoot, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "vcek":
		return RootVCEK, nil
	case "vmrk":
		return RootVMRK, nil
	}
	return 0, fmt.Errorf("unknown root key %q (want vcek or vmrk)", s)
}

// KeySelect is KEY_SEL, bits 2:1 of the first word of MSG_KEY_REQ: which
// chip key a VCEK-rooted key comes from where a VLEK is installed.
type KeySelect uint8

const (
	// KeySelDefault (0) lets the firmware choose: the VLEK if the cloud
	// provider installed one, otherwise the VCEK. A sealed blob records
	// it, but a VLEK installed later changes the key.
	KeySelDefault KeySelect = 0
	// KeySelVCEK (1) always uses the VCEK.
	KeySelVCEK KeySelect = 1
	// KeySelVLEK (2) always uses the VLEK; the firmware refuses it where
	// none is installed.
	KeySelVLEK KeySelect = 2
)

// KeyFields is GUEST_FIELD_SELECT: which guest fields the secure
// processor mixes into a derived key, bit for bit as in MSG_KEY_REQ.
type KeyFields uint64

// The GUEST_FIELD_SELECT bits. Bits 7 to 63 are reserved.
const (
	FieldGuestPolicy     KeyFields = 1 << 0 // the guest POLICY
	FieldImageID         KeyFields = 1 << 1 // IMAGE_ID of the ID block
	FieldFamilyID        KeyFields = 1 << 2 // FAMILY_ID of the ID block
	FieldMeasurement     KeyFields = 1 << 3 // the launch MEASUREMENT
	FieldGuestSVN        KeyFields = 1 << 4 // DerivedKeyRequest.GuestSVN
	FieldTCBVersion      KeyFields = 1 << 5 // DerivedKeyRequest.TCB
	FieldLaunchMitVector KeyFields = 1 << 6 // DerivedKeyRequest.LaunchMitVector (MSG_KEY_REQ version 2)

	// KnownKeyFields are the bits defined by the SEV-SNP ABI.
	KnownKeyFields KeyFields = 1<<7 - 1
)

// keyFieldNames are the names of the bits, in bit order.
var keyFieldNames = []string{"policy", "image-id", "family-id", "measurement", "guest-svn", "tcb", "launch-mit-vector"}

// String lists the selected fields by name, comma-separated ("" when none).
func (f KeyFields) String() string {
	var names []string
	for i, n := range keyFieldNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if rest := f &^ KnownKeyFields; rest != 0 {
		names = append(names, fmt.Sprintf("0x%x", uint64(rest)))
	}
	return strings.Join(names, ",")
}

// ParseKeyFields reads a comma-separated list of field names: policy,
// image-id, family-id, measurement, guest-svn, tcb, launch-mit-vector.
// The empty string selects no field.
func ParseKeyFields(s string) (KeyFields, error) {
	var f KeyFields
	for _, name := range strings.Split(s, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		found := false
		for i, n := range keyFieldNames {
			if n == name {
				f |= 1 << i
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown key field %q (want %s)", name, strings.Join(keyFieldNames, ", "))
		}
	}
	return f, nil
}

// DerivedKeyRequest is one MSG_KEY_REQ: which root, which fields, and the
// values the guest supplies for the VMPL, the guest SVN, the TCB and the
// launch mitigation vector. The firmware refuses a GuestSVN above the
// guest's launch SVN, a TCB above the committed TCB, and a VMPL below the
// requesting code's: these are floors, so a key derived at SVN 2 or TCB t
// stays derivable after an upgrade, and not after a rollback.
type DerivedKeyRequest struct {
	// Root is the root key; zero is refused.
	Root KeyRoot
	// KeySelect picks VCEK or VLEK; zero lets the firmware choose.
	KeySelect KeySelect
	// Fields are the guest fields mixed in; zero mixes none.
	Fields KeyFields
	// VMPL is mixed in always: 0-3, at least the VMPL of the caller.
	VMPL uint32
	// GuestSVN is mixed in when Fields has FieldGuestSVN; otherwise it
	// must be zero.
	GuestSVN uint32
	// TCB is mixed in when Fields has FieldTCBVersion; otherwise it must
	// be zero.
	TCB uint64
	// LaunchMitVector is mixed in when Fields has FieldLaunchMitVector;
	// otherwise it must be zero.
	LaunchMitVector uint64
}

// Check reports a request that no firmware accepts, or whose values
// would be ignored (a guest SVN, TCB or mitigation vector given without
// its field selected), as an ErrConfig error for check "seal.request".
func (r DerivedKeyRequest) Check() error {
	fail := func(format string, args ...any) error {
		return attest.Fail(attest.ErrConfig, "seal.request", format, args...)
	}
	switch {
	case r.Root != RootVCEK && r.Root != RootVMRK:
		return fail("no root key chosen (vcek or vmrk)")
	case r.KeySelect > KeySelVLEK:
		return fail("KEY_SEL %d is reserved", r.KeySelect)
	case r.Fields&^KnownKeyFields != 0:
		return fail("reserved GUEST_FIELD_SELECT bits 0x%x", uint64(r.Fields&^KnownKeyFields))
	case r.VMPL > 3:
		return fail("VMPL %d is out of range (0-3)", r.VMPL)
	case r.Fields&FieldGuestSVN == 0 && r.GuestSVN != 0:
		return fail("a guest SVN of %d without the guest-svn field would not be mixed in", r.GuestSVN)
	case r.Fields&FieldTCBVersion == 0 && r.TCB != 0:
		return fail("a TCB of 0x%x without the tcb field would not be mixed in", r.TCB)
	case r.Fields&FieldLaunchMitVector == 0 && r.LaunchMitVector != 0:
		return fail("a mitigation vector of 0x%x without the launch-mit-vector field would not be mixed in", r.LaunchMitVector)
	}
	return nil
}

// GuestFields are the values of this guest that a derived key can
// depend on, as the secure processor reports them (from an attestation
// report of the guest itself). Sealing records them to explain a failure.
type GuestFields struct {
	Measurement     [48]byte
	GuestPolicy     uint64
	FamilyID        [16]byte
	ImageID         [16]byte
	IDKeyDigest     [48]byte
	AuthorKeyDigest [48]byte
	// GuestSVN is the guest SVN of the launch (from the ID block).
	GuestSVN uint32
	// VMPL is the VMPL of the code that asked for the report.
	VMPL uint32
	// CommittedTCB is the highest TCB a key can be derived at.
	CommittedTCB uint64
	// LaunchMitVector is the mitigation vector of the launch (report
	// version 5 and later; 0 before).
	LaunchMitVector uint64
	// ReportVersion is the version of the report the fields come from.
	ReportVersion uint32
}

// GuestFieldsFromReport reads the fields of a raw attestation report
// (ReportSize bytes, as the guest's own firmware returned it).
func GuestFieldsFromReport(report []byte) (GuestFields, error) {
	var g GuestFields
	if len(report) != ReportSize {
		return g, fmt.Errorf("snp: the report is %d bytes, want %d", len(report), ReportSize)
	}
	le := binary.LittleEndian
	g.ReportVersion = le.Uint32(report[0x00:])
	g.GuestSVN = le.Uint32(report[0x04:])
	g.GuestPolicy = le.Uint64(report[0x08:])
	copy(g.FamilyID[:], report[0x10:0x20])
	copy(g.ImageID[:], report[0x20:0x30])
	g.VMPL = le.Uint32(report[0x30:])
	copy(g.Measurement[:], report[0x90:0xC0])
	copy(g.IDKeyDigest[:], report[0xE0:0x110])
	copy(g.AuthorKeyDigest[:], report[0x110:0x140])
	g.CommittedTCB = le.Uint64(report[0x1E0:])
	if g.ReportVersion >= 5 {
		g.LaunchMitVector = le.Uint64(report[0x1F8:])
	}
	return g, nil
}

// TCBAtMost reports whether every component of the TCB value a is at
// most the same component of b. Components are whole bytes in every
// product line's layout (Milan, Genoa, Turin), and reserved bytes are
// zero, so comparing byte by byte needs no product.
func TCBAtMost(a, b uint64) bool {
	for i := 0; i < 64; i += 8 {
		if (a>>i)&0xff > (b>>i)&0xff {
			return false
		}
	}
	return true
}
