package measure

import (
	"crypto/sha512"
	"encoding/binary"
)

// pageType is the PAGE_TYPE field of SNP_LAUNCH_UPDATE.
type pageType uint8

const (
	pageNormal     pageType = 1
	pageVMSA       pageType = 2
	pageZero       pageType = 3
	pageUnmeasured pageType = 4
	pageSecrets    pageType = 5
	pageCPUID      pageType = 6
)

// vmsaGPA is the GPA recorded for VMSA pages: the secure processor takes
// the address as all ones, page-aligned and cut to 52 bits.
const vmsaGPA = 0x0000_ffff_ffff_f000

// pageInfoSize is the size of the PAGE_INFO record.
const pageInfoSize = 0x70

// chain is the launch digest being extended page by page.
type chain struct {
	digest [48]byte
	pages  int // records hashed so far
}

// add extends the digest with the PAGE_INFO record of one page:
// DIGEST_CUR, CONTENTS, LENGTH, PAGE_TYPE, IMI_PAGE (0), the VMPL 3, 2
// and 1 permissions (0), a reserved byte and the GPA.
func (c *chain) add(t pageType, gpa uint64, contents *[48]byte) {
	var rec [pageInfoSize]byte
	copy(rec[0x00:], c.digest[:])
	copy(rec[0x30:], contents[:])
	binary.LittleEndian.PutUint16(rec[0x60:], pageInfoSize)
	rec[0x62] = byte(t)
	binary.LittleEndian.PutUint64(rec[0x68:], gpa)
	c.digest = sha512.Sum384(rec[:])
	c.pages++
}

// addNormalPages adds data (a whole number of pages) from gpa on.
func (c *chain) addNormalPages(gpa uint64, data []byte) {
	for off := 0; off < len(data); off += PageSize {
		h := sha512.Sum384(data[off : off+PageSize])
		c.add(pageNormal, gpa+uint64(off), &h)
	}
}

// addEmptyPages adds size bytes of pages of type t, whose contents are
// not hashed (zero, unmeasured, secrets, CPUID).
func (c *chain) addEmptyPages(t pageType, gpa uint64, size uint32) {
	var zero [48]byte
	for off := uint64(0); off < uint64(size); off += PageSize {
		c.add(t, gpa+off, &zero)
	}
}

// addVMSA adds one VMSA page.
func (c *chain) addVMSA(page *[PageSize]byte) {
	h := sha512.Sum384(page[:])
	c.add(pageVMSA, vmsaGPA, &h)
}
