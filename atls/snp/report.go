package snp

import (
	"fmt"
	"slices"
)

// Report format versions, as the VERSION field (offset 0x00) of the
// ATTESTATION_REPORT structure of AMD's SEV-SNP Firmware ABI
// Specification (publication 56860) names them.
//
// The layouts below are the ones that specification defines in public:
//
//   - Version 2 (ABI 1.51 to 1.54): the fields up to LAUNCH_TCB; bytes
//     0x188-0x19F and 0x1F8-0x29F are reserved.
//   - Version 3 (ABI 1.55): adds CPUID_FAM_ID, CPUID_MOD_ID and
//     CPUID_STEP at 0x188-0x18A (0x18B-0x19F stay reserved).
//   - Version 5 (ABI 1.58): adds LAUNCH_MIT_VECTOR at 0x1F8 and
//     CURRENT_MIT_VECTOR at 0x200 (0x208-0x29F stay reserved).
//
// Version 4 has been seen from firmware 1.55.31, but AMD has not
// published its layout (maintainers of virtee/sev describe it as under
// embargo), so it cannot be parsed exactly and is refused. No version
// after 5 is defined in a published revision of the specification; later
// versions are refused until their layout is published and added here.
const (
	ReportVersion2 uint32 = 2
	ReportVersion3 uint32 = 3
	ReportVersion5 uint32 = 5
)

// byteRange is the half-open range [lo, hi) of report offsets.
type byteRange struct{ lo, hi int }

// reportLayout lists, for one report version, the byte ranges that the
// specification reserves (must be zero) outside the signature.
type reportLayout struct {
	version  uint32
	reserved []byteRange
}

// Ranges common to every known version: the reserved word after the
// signer information, the bytes after the current and the committed
// firmware versions, and the signature area after R and S.
var commonReserved = []byteRange{
	{0x04C, 0x050},
	{0x1EB, 0x1EC},
	{0x1EF, 0x1F0},
	{0x2A0 + 2*0x48, ReportSize}, // ECDSA P-384: R and S take 72 bytes each
}

var reportLayouts = []reportLayout{
	{ReportVersion2, append(slices.Clone(commonReserved), byteRange{0x188, 0x1A0}, byteRange{0x1F8, 0x2A0})},
	{ReportVersion3, append(slices.Clone(commonReserved), byteRange{0x18B, 0x1A0}, byteRange{0x1F8, 0x2A0})},
	{ReportVersion5, append(slices.Clone(commonReserved), byteRange{0x18B, 0x1A0}, byteRange{0x208, 0x2A0})},
}

// KnownReportVersions returns the report versions whose layout this
// package parses: 2, 3 and 5. A policy may accept only these.
func KnownReportVersions() []uint32 {
	out := make([]uint32, 0, len(reportLayouts))
	for _, l := range reportLayouts {
		out = append(out, l.version)
	}
	return out
}

func layoutOf(version uint32) (reportLayout, bool) {
	for _, l := range reportLayouts {
		if l.version == version {
			return l, true
		}
	}
	return reportLayout{}, false
}

// checkReserved reports the first reserved byte of raw (a report of a
// known version) that is not zero.
func (l reportLayout) checkReserved(raw []byte) error {
	for _, r := range l.reserved {
		for i := r.lo; i < r.hi; i++ {
			if raw[i] != 0 {
				return fmt.Errorf("reserved byte 0x%x of a version %d report is %#02x, not zero", i, l.version, raw[i])
			}
		}
	}
	return nil
}
