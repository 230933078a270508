package measure

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// Intermediate values of case snp_default (testdata/cases.json), derived
// with sev-snp-measure @8f2b337 and stated in the vectors' README:
// ovmf_AmdSev_suffix.bin, 1 vCPU, 0x800f12, QEMU, 0x21, empty kernel and
// initrd, append "console=ttyS0 loglevel=7".
const (
	wantFirmwareDigest   = "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"
	wantHashTable        = "06d63894224fc94cb479a793d411fd21a800d82dd09720bd944caa78e7714d36ab2a3200321c8eec6a77bad179511397f913a083067ad8cb737bb260aacbfe8df70fc50a31f7ba442f3ad74b9af141e29169781d3200e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8553794e74dd2ab7f42b835d5b172d2045b3200e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8550000000000000000"
	wantHashesPageSHA384 = "adbef9bc7385f7a6dcb8774523cf024b403f193a47962309b277c4109aa70b4ba0355d1657b50e9625d5bd1129e7fd27"
	wantSectionsDigest   = "36fcd572bd473b23cdcce6f078026377e7b2d18ede30fe022d371f062ac1fbd73ba70c6286951b488c864e3ff9392f43"
	wantSectionsNoKernel = "2a436bb1f7bd08b3888d20579f83961e6cd34b45f10bfa96bfb8086d15e258e407b2b04f62e1e6536aa64ba1b16dd65c"
	wantBSPVMSASHA384    = "ae79efa6efbe1594a2717dfd42af495a0e4ed37b00e529a5fdf349bea04c3513962ffb0c74cf65b0d9a1857271833d6e"
	wantAPVMSASHA384     = "180ef2675dc01615d31b3e84ef27a0a69d08bfbbb58ea4f6a0188f08884ab6407591ada42f99749ce9a406fb4e5d8355"
)

func snpDefault(t *testing.T, withKernel bool) Inputs {
	t.Helper()
	data, err := os.ReadFile("testdata/ovmf_AmdSev_suffix.bin")
	require.NoError(t, err)
	o, err := ParseOVMF(data)
	require.NoError(t, err)
	in := Inputs{OVMF: o, VCPUs: 1, VCPUSig: 0x800f12, GuestFeatures: 0x21}
	if withKernel {
		in.Kernel, err = HashKernel(bytes.NewReader(nil), bytes.NewReader(nil), "console=ttyS0 loglevel=7")
		require.NoError(t, err)
	}
	return in
}

func TestIntermediateValues(t *testing.T) {
	in := snpDefault(t, true)
	require.Equal(t, wantHashTable, hex.EncodeToString(in.Kernel.table()))

	meta := in.OVMF.Metadata()
	var kernelSection Section
	for _, s := range meta.Sections {
		if s.Type == SectionKernelHashes {
			kernelSection = s
		}
	}
	page, err := in.Kernel.hashesPage(&meta, kernelSection)
	require.NoError(t, err)
	h := sha512.Sum384(page)
	require.Equal(t, wantHashesPageSHA384, hex.EncodeToString(h[:]))

	l, err := newLaunch(&in)
	require.NoError(t, err)
	l.firmware()
	require.Equal(t, wantFirmwareDigest, hex.EncodeToString(l.chain.digest[:]))
	require.NoError(t, l.sections())
	require.Equal(t, wantSectionsDigest, hex.EncodeToString(l.chain.digest[:]))
	require.Equal(t, 1+31, l.chain.pages, "one firmware record, 31 section records")

	in = snpDefault(t, false)
	l, err = newLaunch(&in)
	require.NoError(t, err)
	l.firmware()
	require.NoError(t, l.sections())
	require.Equal(t, wantSectionsNoKernel, hex.EncodeToString(l.chain.digest[:]))

	bsp := vmsaPage(bspEIP, 0x21, QEMU.regs(bspEIP, 0x800f12, false))
	h = sha512.Sum384(bsp[:])
	require.Equal(t, wantBSPVMSASHA384, hex.EncodeToString(h[:]))
	ap := vmsaPage(0x80b004, 0x21, QEMU.regs(0x80b004, 0x800f12, false))
	h = sha512.Sum384(ap[:])
	require.Equal(t, wantAPVMSASHA384, hex.EncodeToString(h[:]))
}

// TestPageInfoRecord checks the first record of the chain byte for byte,
// as the vectors' README writes it out.
func TestPageInfoRecord(t *testing.T) {
	data, err := os.ReadFile("testdata/ovmf_AmdSev_suffix.bin")
	require.NoError(t, err)
	contents := sha512.Sum384(data)
	require.Equal(t, "161ace084859674ded7322ad102eb33f49457e0f7845a8f9ad0e03a59eac3e3e360f8b78345363feaeac956ebba2d894", hex.EncodeToString(contents[:]))
	rec, err := hex.DecodeString(
		"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
			hex.EncodeToString(contents[:]) + "7000010000000000" + "00f0ffff00000000")
	require.NoError(t, err)
	require.Len(t, rec, pageInfoSize)
	var c chain
	c.add(pageNormal, 0xfffff000, &contents)
	require.Equal(t, sha512.Sum384(rec), c.digest)
	require.Equal(t, wantFirmwareDigest, hex.EncodeToString(c.digest[:]))
}
