package measure

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/google/uuid"

	"github.com/confidential-go/atls/atls/attest"
)

// PageSize is the size of a guest page: the unit of measurement.
const PageSize = 4096

// MaxOVMFSize is the largest firmware image [ParseOVMF] accepts.
const MaxOVMFSize = 64 << 20

// fourGiB is where the firmware image ends in guest physical memory.
const fourGiB = 1 << 32

// GUIDs of the OVMF footer table (edk2 OvmfPkg ResetVector), in the
// firmware's byte order (the first three fields little-endian).
var (
	guidFooterTable   = guidLE("96b582de-1fb2-45f7-baea-a366c55a082d")
	guidSEVESReset    = guidLE("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
	guidSEVHashTable  = guidLE("7255371f-3a3b-4b04-927b-1da6efa8d454")
	guidSEVMetadata   = guidLE("dc886566-984a-4798-a75e-5585a7bf67cc")
	footerEntryHeader = 2 + 16 // u16 size, GUID
	footerTrailer     = 32     // bytes after the table's own footer entry
)

// guidLE returns the firmware (Microsoft, mixed-endian) encoding of a GUID.
func guidLE(s string) [16]byte {
	u := uuid.MustParse(s)
	var b [16]byte
	copy(b[:], u[:])
	b[0], b[1], b[2], b[3] = b[3], b[2], b[1], b[0]
	b[4], b[5] = b[5], b[4]
	b[6], b[7] = b[7], b[6]
	return b
}

// SectionType is the type of a section of the OVMF SEV metadata.
type SectionType uint32

// Section types of the OVMF SEV metadata (edk2 OvmfPkg, "ASEV" table).
const (
	// SectionSNPSecMem is memory the firmware uses before it validates
	// memory itself: measured as zero pages (GCE: unmeasured pages).
	SectionSNPSecMem SectionType = 1
	// SectionSNPSecrets is the secrets page the secure processor fills.
	SectionSNPSecrets SectionType = 2
	// SectionCPUID is the CPUID page the secure processor checks.
	SectionCPUID SectionType = 3
	// SectionSVSMCAA is the SVSM calling area: zero pages.
	SectionSVSMCAA SectionType = 4
	// SectionKernelHashes is the page holding the kernel, initrd and
	// command line hashes of a direct boot (QEMU -kernel).
	SectionKernelHashes SectionType = 0x10
)

// String returns the edk2 name of t.
func (t SectionType) String() string {
	switch t {
	case SectionSNPSecMem:
		return "SNP_SEC_MEM"
	case SectionSNPSecrets:
		return "SNP_SECRETS"
	case SectionCPUID:
		return "CPUID"
	case SectionSVSMCAA:
		return "SVSM_CAA"
	case SectionKernelHashes:
		return "SNP_KERNEL_HASHES"
	}
	return fmt.Sprintf("SectionType(%#x)", uint32(t))
}

// Section is one entry of the OVMF SEV metadata: a range of guest memory
// that the hypervisor adds to the guest at launch.
type Section struct {
	GPA  uint32 // guest physical address, page-aligned
	Size uint32 // bytes, a multiple of PageSize
	Type SectionType
}

// Metadata is what the digest needs from the firmware besides its pages.
// [OVMF.Metadata] reads it from an image; give it directly, with
// Inputs.OVMFHash, to measure without the image.
type Metadata struct {
	// Sections are the SEV metadata sections, in the firmware's order.
	Sections []Section
	// ResetEIP is the address where the application processors start
	// (SEV-ES reset block); 0: the firmware gives none, and only one
	// vCPU can be measured.
	ResetEIP uint32
	// HashTableGPA and HashTableSize locate the table of kernel hashes
	// (SEV hash table entry); 0: the firmware has none, and no kernel
	// can be measured.
	HashTableGPA, HashTableSize uint32
}

// check refuses metadata this model cannot measure correctly.
func (m *Metadata) check() error {
	if len(m.Sections) == 0 {
		return attest.Fail(attest.ErrUnsupported, CheckMetadata, "the firmware has no SEV metadata sections: not an SEV-SNP firmware build")
	}
	for i, s := range m.Sections {
		switch {
		case s.GPA%PageSize != 0 || s.Size%PageSize != 0 || s.Size == 0:
			return attest.Fail(attest.ErrConfig, CheckMetadata, "section %d (%v at %#x, %#x bytes) is not a whole number of pages", i, s.Type, s.GPA, s.Size)
		case uint64(s.GPA)+uint64(s.Size) > fourGiB:
			return attest.Fail(attest.ErrConfig, CheckMetadata, "section %d (%v at %#x, %#x bytes) extends beyond 4 GiB", i, s.Type, s.GPA, s.Size)
		}
		switch s.Type {
		case SectionSNPSecMem, SectionSVSMCAA, SectionKernelHashes:
		case SectionSNPSecrets, SectionCPUID:
			if s.Size != PageSize {
				return attest.Fail(attest.ErrUnsupported, CheckMetadata, "section %d (%v) is %#x bytes: only one page is supported", i, s.Type, s.Size)
			}
		default:
			return attest.Fail(attest.ErrUnsupported, CheckMetadata, "section %d has unknown type %#x", i, uint32(s.Type))
		}
	}
	return nil
}

// OVMF is a parsed OVMF firmware image (edk2 OvmfPkg, a build for SEV:
// AmdSevX64 or OvmfPkgX64). It is not modified after ParseOVMF.
type OVMF struct {
	data []byte
	meta Metadata
}

// ParseOVMF parses a firmware image: its footer table (reset address of
// the application processors, kernel hash table) and its SEV metadata.
// It keeps a copy of data. Errors are of kind attest.ErrConfig (a
// malformed image, [CheckOVMF] or [CheckMetadata]) or attest.ErrUnsupported
// (an image without SEV metadata, [CheckMetadata]).
func ParseOVMF(data []byte) (*OVMF, error) {
	if len(data) == 0 || len(data)%PageSize != 0 || len(data) > MaxOVMFSize {
		return nil, attest.Fail(attest.ErrConfig, CheckOVMF, "the firmware image is %d bytes: want a non-zero multiple of %d, at most %d", len(data), PageSize, MaxOVMFSize)
	}
	o := &OVMF{data: bytes.Clone(data)}
	table, err := parseFooterTable(o.data)
	if err != nil {
		return nil, err
	}
	if v, ok := table[guidSEVESReset]; ok {
		if len(v) < 4 {
			return nil, attest.Fail(attest.ErrConfig, CheckOVMF, "the SEV-ES reset block entry is %d bytes, want at least 4", len(v))
		}
		o.meta.ResetEIP = binary.LittleEndian.Uint32(v)
	}
	if v, ok := table[guidSEVHashTable]; ok {
		if len(v) < 8 {
			return nil, attest.Fail(attest.ErrConfig, CheckOVMF, "the SEV hash table entry is %d bytes, want at least 8", len(v))
		}
		o.meta.HashTableGPA = binary.LittleEndian.Uint32(v)
		o.meta.HashTableSize = binary.LittleEndian.Uint32(v[4:])
	}
	v, ok := table[guidSEVMetadata]
	if !ok {
		return nil, attest.Fail(attest.ErrUnsupported, CheckMetadata, "the firmware has no SEV metadata entry: not an SEV-SNP firmware build")
	}
	if len(v) < 4 {
		return nil, attest.Fail(attest.ErrConfig, CheckMetadata, "the SEV metadata entry is %d bytes, want at least 4", len(v))
	}
	if o.meta.Sections, err = parseSEVMetadata(o.data, binary.LittleEndian.Uint32(v)); err != nil {
		return nil, err
	}
	if err := o.meta.check(); err != nil {
		return nil, err
	}
	return o, nil
}

// parseFooterTable reads the GUIDed table that ends 32 bytes before the
// end of the image. It is read backwards: each entry is its data followed
// by {u16 size (data and header), GUID}; the last entry's size covers the
// whole table.
func parseFooterTable(data []byte) (map[[16]byte][]byte, error) {
	bad := func(format string, args ...any) error {
		return attest.Fail(attest.ErrConfig, CheckOVMF, "footer table: "+format, args...)
	}
	end := len(data) - footerTrailer
	if end < footerEntryHeader {
		return nil, bad("the image is too small")
	}
	footer := data[end-footerEntryHeader : end]
	if [16]byte(footer[2:]) != guidFooterTable {
		return nil, attest.Fail(attest.ErrUnsupported, CheckOVMF, "no OVMF footer table: not an OVMF build for SEV")
	}
	size := int(binary.LittleEndian.Uint16(footer))
	if size < footerEntryHeader || size > end {
		return nil, bad("size %d out of range", size)
	}
	rest := data[end-size : end-footerEntryHeader]
	table := map[[16]byte][]byte{}
	for len(rest) > 0 {
		if len(rest) < footerEntryHeader {
			return nil, bad("%d trailing bytes", len(rest))
		}
		hdr := rest[len(rest)-footerEntryHeader:]
		n := int(binary.LittleEndian.Uint16(hdr))
		if n < footerEntryHeader || n > len(rest) {
			return nil, bad("entry size %d out of range", n)
		}
		guid := [16]byte(hdr[2:])
		if _, dup := table[guid]; dup {
			return nil, bad("duplicate entry %x", guid)
		}
		table[guid] = rest[len(rest)-n : len(rest)-footerEntryHeader]
		rest = rest[:len(rest)-n]
	}
	return table, nil
}

// parseSEVMetadata reads the "ASEV" table at offsetFromEnd bytes before
// the end of the image: {signature, u32 size, u32 version 1, u32 count}
// then count items {u32 GPA, u32 size, u32 type}.
func parseSEVMetadata(data []byte, offsetFromEnd uint32) ([]Section, error) {
	bad := func(format string, args ...any) error {
		return attest.Fail(attest.ErrConfig, CheckMetadata, "SEV metadata: "+format, args...)
	}
	const headerSize, itemSize = 16, 12
	if uint64(offsetFromEnd) > uint64(len(data)) || offsetFromEnd < headerSize {
		return nil, bad("offset %#x out of range", offsetFromEnd)
	}
	m := data[len(data)-int(offsetFromEnd):]
	if string(m[:4]) != "ASEV" {
		return nil, bad("bad signature %q", m[:4])
	}
	size := binary.LittleEndian.Uint32(m[4:])
	version := binary.LittleEndian.Uint32(m[8:])
	count := binary.LittleEndian.Uint32(m[12:])
	if version != 1 {
		return nil, attest.Fail(attest.ErrUnsupported, CheckMetadata, "SEV metadata version %d, want 1", version)
	}
	if uint64(size) > uint64(len(m)) || uint64(count) > (uint64(size)-headerSize)/itemSize || size < headerSize {
		return nil, bad("%d items in %d bytes do not fit", count, size)
	}
	sections := make([]Section, count)
	for i := range sections {
		it := m[headerSize+itemSize*i:]
		sections[i] = Section{
			GPA:  binary.LittleEndian.Uint32(it),
			Size: binary.LittleEndian.Uint32(it[4:]),
			Type: SectionType(binary.LittleEndian.Uint32(it[8:])),
		}
	}
	return sections, nil
}

// Metadata returns what the digest needs from the image besides its pages.
func (o *OVMF) Metadata() Metadata {
	m := o.meta
	m.Sections = append([]Section(nil), o.meta.Sections...)
	return m
}

// Size returns the size of the image in bytes.
func (o *OVMF) Size() int { return len(o.data) }

// GPA returns the guest physical address of the image's first byte: the
// image ends at 4 GiB.
func (o *OVMF) GPA() uint64 { return fourGiB - uint64(len(o.data)) }

// Hash returns the launch digest after the image's pages: the value
// sev-snp-measure calls the OVMF hash (--snp-ovmf-hash), which
// Inputs.OVMFHash takes so that the image need not be hashed again.
func (o *OVMF) Hash() [48]byte {
	var c chain
	c.addNormalPages(o.GPA(), o.data)
	return c.digest
}
