package snp

import (
	"fmt"
)

// ProductLine is an AMD EPYC product line with SEV-SNP, as AMD's Key
// Distribution Service names it ("Milan", "Genoa", "Turin"). Each product
// line has its own root key (ARK) and intermediate (ASK), and its own
// TCB_VERSION layout: decode TCB values with [ProductLine.DecodeTCB], never
// by hand.
//
// A Verifier decides the product line of a report from the signed
// evidence: the product name of the VCEK (or VLEK) that chains to that
// product line's ARK, checked against the CPUID family and model that
// version 3 and later reports carry.
type ProductLine uint8

// The product lines. ProductUnknown is the zero value: no product line.
const (
	ProductUnknown ProductLine = iota
	// ProductMilan is EPYC 7003 (Zen 3, CPUID family 19h, model 01h),
	// and the parts whose VCEKs AMD issues as "Milan".
	ProductMilan
	// ProductGenoa is EPYC 9004 (Zen 4, family 19h, model 11h), and the
	// parts whose VCEKs AMD issues as "Genoa" (Bergamo, Siena: family
	// 19h, models A0h-AFh).
	ProductGenoa
	// ProductTurin is EPYC 9005 (Zen 5, family 1Ah, model 02h), and the
	// parts whose VCEKs AMD issues as "Turin". Its TCB_VERSION adds the
	// FMC (first mutable code) level.
	ProductTurin
)

// productLines lists the known product lines, in order.
var productLines = []ProductLine{ProductMilan, ProductGenoa, ProductTurin}

// ProductLines returns the product lines this library verifies.
func ProductLines() []ProductLine { return append([]ProductLine(nil), productLines...) }

// String returns the KDS name of p: "Milan", "Genoa", "Turin", or
// "Unknown".
func (p ProductLine) String() string {
	switch p {
	case ProductMilan:
		return "Milan"
	case ProductGenoa:
		return "Genoa"
	case ProductTurin:
		return "Turin"
	}
	return "Unknown"
}

// ParseProductLine returns the product line named s ("Milan", "Genoa",
// "Turin"; case-sensitive, as AMD writes them), or an error.
func ParseProductLine(s string) (ProductLine, error) {
	for _, p := range productLines {
		if p.String() == s {
			return p, nil
		}
	}
	return ProductUnknown, fmt.Errorf("unknown product line %q (want Milan, Genoa or Turin)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (p ProductLine) MarshalText() ([]byte, error) {
	if p == ProductUnknown {
		return nil, fmt.Errorf("snp: cannot marshal an unknown product line")
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *ProductLine) UnmarshalText(b []byte) error {
	v, err := ParseProductLine(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// The byte positions of the TCB_VERSION components. Milan and Genoa:
// bootloader, TEE, four reserved bytes, SNP, microcode (byte 0 is the
// least significant). Turin: FMC, bootloader, TEE, SNP, three reserved
// bytes, microcode (AMD SEV-SNP ABI specification, TCB_VERSION, and the
// VCEK certificate specification for Turin).
type tcbLayout struct {
	fmc, bootloader, tee, snp, microcode int // byte index; fmc -1 when absent
	reserved                             uint64
}

var (
	layoutMilanGenoa = tcbLayout{fmc: -1, bootloader: 0, tee: 1, snp: 6, microcode: 7, reserved: 0x0000_ffff_ffff_0000}
	layoutTurin      = tcbLayout{fmc: 0, bootloader: 1, tee: 2, snp: 3, microcode: 7, reserved: 0x00ff_ffff_0000_0000}
)

func (p ProductLine) layout() tcbLayout {
	if p == ProductTurin {
		return layoutTurin
	}
	return layoutMilanGenoa
}

// HasFMC reports whether p's TCB_VERSION has an FMC component.
func (p ProductLine) HasFMC() bool { return p.layout().fmc >= 0 }

// DecodeTCB splits a raw TCB_VERSION of product line p into its security
// patch levels. Reserved bytes are dropped (see [ProductLine.TCBReserved]).
// ProductUnknown decodes in the Milan and Genoa layout.
func (p ProductLine) DecodeTCB(v uint64) TCB {
	l := p.layout()
	b := func(i int) uint8 { return uint8(v >> (8 * i)) }
	t := TCB{Bootloader: b(l.bootloader), TEE: b(l.tee), SNP: b(l.snp), Microcode: b(l.microcode)}
	if l.fmc >= 0 {
		t.FMC = b(l.fmc)
	}
	return t
}

// TCBReserved returns the bits of v that are reserved in p's layout.
// AMD firmware sets none of them.
func (p ProductLine) TCBReserved(v uint64) uint64 { return v & p.layout().reserved }

// EncodeTCB returns the raw TCB_VERSION of t in p's layout. It fails when
// t has an FMC level and p has no FMC component.
func (p ProductLine) EncodeTCB(t TCB) (uint64, error) {
	l := p.layout()
	if l.fmc < 0 && t.FMC != 0 {
		return 0, fmt.Errorf("TCB %v has an FMC level, which %v TCBs do not have", t, p)
	}
	v := uint64(t.Bootloader)<<(8*l.bootloader) | uint64(t.TEE)<<(8*l.tee) |
		uint64(t.SNP)<<(8*l.snp) | uint64(t.Microcode)<<(8*l.microcode)
	if l.fmc >= 0 {
		v |= uint64(t.FMC) << (8 * l.fmc)
	}
	return v, nil
}

// tcbLE reports whether every component of the raw TCB a is at most the
// same component of b, both in p's layout.
func (p ProductLine) tcbLE(a, b uint64) bool {
	return p.DecodeTCB(b).AtLeast(p.DecodeTCB(a))
}

// AtLeast reports whether every component of t is at least the same
// component of floor.
func (t TCB) AtLeast(floor TCB) bool {
	return t.FMC >= floor.FMC && t.Bootloader >= floor.Bootloader && t.TEE >= floor.TEE &&
		t.SNP >= floor.SNP && t.Microcode >= floor.Microcode
}

// cpuidLine is the product line that a report's CPUID family and model
// name in AMD's table (the KDS specification's "Determining the Product
// Name", as go-sev-guest encodes it); known is false for a family and
// model not in the table (a variant, such as family 19h model A0h, whose
// VCEKs AMD issues as "Genoa"). familyLines are the product lines of the
// family, empty for an unknown family.
func cpuidLine(family, model uint8) (line ProductLine, known bool, familyLines []ProductLine) {
	switch family {
	case 0x19: // Zen 3 and Zen 4
		familyLines = []ProductLine{ProductMilan, ProductGenoa}
		switch model {
		case 0x01:
			return ProductMilan, true, familyLines
		case 0x11:
			return ProductGenoa, true, familyLines
		}
	case 0x1A: // Zen 5
		familyLines = []ProductLine{ProductTurin}
		if model == 0x02 {
			return ProductTurin, true, familyLines
		}
	}
	return ProductUnknown, false, familyLines
}
