package measure

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"strings"

	"github.com/confidential-go/atls/atls/attest"
)

// KernelHashes are the SHA-256 digests of a direct boot (QEMU -kernel,
// -initrd, -append) that QEMU writes into the firmware's kernel-hashes
// page, where the launch digest covers them.
type KernelHashes struct {
	Kernel  [32]byte // SHA-256 of the kernel image
	Initrd  [32]byte // SHA-256 of the initrd (of nothing when there is none)
	Cmdline [32]byte // SHA-256 of the command line and its trailing NUL byte
}

// HashKernel reads the kernel and the initrd (nil: none, hashed as empty)
// and returns their hashes with the command line's. QEMU passes the
// command line as a C string: it is hashed with its trailing NUL, "" as
// the single byte 0x00, and one containing a NUL byte is refused
// ([CheckCmdline]).
func HashKernel(kernel, initrd io.Reader, cmdline string) (*KernelHashes, error) {
	if kernel == nil {
		return nil, attest.Fail(attest.ErrConfig, CheckInputs, "HashKernel needs a kernel")
	}
	if strings.IndexByte(cmdline, 0) >= 0 {
		return nil, attest.Fail(attest.ErrConfig, CheckCmdline, "the kernel command line contains a NUL byte")
	}
	var k KernelHashes
	h := sha256.New()
	if _, err := io.Copy(h, kernel); err != nil {
		return nil, err
	}
	h.Sum(k.Kernel[:0])
	h.Reset()
	if initrd != nil {
		if _, err := io.Copy(h, initrd); err != nil {
			return nil, err
		}
	}
	h.Sum(k.Initrd[:0])
	k.Cmdline = sha256.Sum256(append([]byte(cmdline), 0))
	return &k, nil
}

// GUIDs of QEMU's SEV hash table (target/i386/sev.c), in firmware order.
var (
	guidHashTable     = guidLE("9438d606-4f22-4cc9-b479-a793d411fd21")
	guidHashCmdline   = guidLE("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
	guidHashInitrd    = guidLE("44baf731-3a2f-4bd7-9af1-41e29169781d")
	guidHashKernel    = guidLE("4de79437-abd2-427f-b835-d5b172d2045b")
	hashTableLen      = 16 + 2 + 3*hashTableEntryLen // 168
	hashTableEntryLen = 16 + 2 + 32                  // 50
	paddedHashTable   = (hashTableLen + 15) &^ 15    // 176
)

// table returns QEMU's padded hash table: {GUID, u16 length} then the
// entries {GUID, u16 length, SHA-256} of the command line, the initrd and
// the kernel, zero-padded to a multiple of 16 bytes.
func (k *KernelHashes) table() []byte {
	t := make([]byte, 0, paddedHashTable)
	t = append(t, guidHashTable[:]...)
	t = binary.LittleEndian.AppendUint16(t, uint16(hashTableLen))
	for _, e := range []struct {
		guid [16]byte
		hash *[32]byte
	}{{guidHashCmdline, &k.Cmdline}, {guidHashInitrd, &k.Initrd}, {guidHashKernel, &k.Kernel}} {
		t = append(t, e.guid[:]...)
		t = binary.LittleEndian.AppendUint16(t, uint16(hashTableEntryLen))
		t = append(t, e.hash[:]...)
	}
	return t[:paddedHashTable]
}

// hashesPage returns the contents of the kernel-hashes section s: the
// table at the hash table's offset in the page, zeros elsewhere.
func (k *KernelHashes) hashesPage(m *Metadata, s Section) ([]byte, error) {
	fail := func(format string, args ...any) error {
		return attest.Fail(attest.ErrUnsupported, CheckKernelHashes, format, args...)
	}
	switch {
	case m.HashTableGPA == 0:
		return nil, fail("a kernel was given but the firmware has no SEV hash table: it cannot measure a kernel, initrd or command line")
	case m.HashTableSize < uint32(paddedHashTable):
		return nil, fail("the firmware's SEV hash table is %d bytes, QEMU needs %d", m.HashTableSize, paddedHashTable)
	case s.Size != PageSize:
		return nil, fail("the kernel-hashes section is %#x bytes, want one page", s.Size)
	case m.HashTableGPA < s.GPA || uint64(m.HashTableGPA)+uint64(paddedHashTable) > uint64(s.GPA)+PageSize:
		return nil, fail("the SEV hash table (%#x) is not inside the kernel-hashes section (%#x)", m.HashTableGPA, s.GPA)
	}
	page := make([]byte, PageSize)
	copy(page[m.HashTableGPA-s.GPA:], k.table())
	return page, nil
}
