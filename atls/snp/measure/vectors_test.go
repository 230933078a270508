package measure_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp/measure"
)

// vectorCase is one case of testdata/cases.json.
type vectorCase struct {
	Name          string  `json:"name"`
	Mode          string  `json:"mode"`
	VCPUs         *int    `json:"vcpus"`
	VCPUType      *string `json:"vcpu_type"`
	VCPUSig       *string `json:"vcpu_sig"`
	VMMType       string  `json:"vmm_type"`
	OVMF          *string `json:"ovmf"`
	Kernel        *string `json:"kernel"`
	Initrd        *string `json:"initrd"`
	Append        *string `json:"append"`
	GuestFeatures *string `json:"guest_features"`
	SNPOVMFHash   *string `json:"snp_ovmf_hash"`
	MetadataJSON  *string `json:"metadata_json"`
	EC2VMSARDX    *string `json:"ec2_vmsa_rdx"`
	Expected      string  `json:"expected"`
	ExpectedError string  `json:"expected_error"`
}

// unsupportedModes are the modes of cases.json this package does not
// measure, with the reason.
var unsupportedModes = map[string]string{
	"snp:svsm": "SVSM launches (Coconut SVSM image below the firmware, SVSM VMSA) are not modelled, and the 4.7 MB of fixtures are not in the repository",
	"seves":    "SEV-ES launch digests are SHA-256 over the firmware and VMSAs, not the SEV-SNP chain; this package measures SEV-SNP only",
	"sev":      "SEV launch digests are SHA-256 over the firmware, not the SEV-SNP chain; this package measures SEV-SNP only",
}

// wantUnsupported is the number of cases skipped for those reasons: a new
// case skipped by mistake changes it.
const wantUnsupported = 7

func loadCases(t testing.TB) []vectorCase {
	t.Helper()
	data, err := os.ReadFile("testdata/cases.json")
	require.NoError(t, err)
	var f struct {
		Cases []vectorCase `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(data, &f))
	require.NotEmpty(t, f.Cases)
	return f.Cases
}

func parseHex48(t testing.TB, s string) *[48]byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	require.Len(t, b, 48)
	return (*[48]byte)(b)
}

func parseUint(t testing.TB, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 0, 64)
	require.NoError(t, err, s)
	return v
}

func loadOVMF(t testing.TB, name string) *measure.OVMF {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	o, err := measure.ParseOVMF(data)
	require.NoError(t, err)
	return o
}

// loadMetadataJSON reads the sev-snp-measure-go form of a firmware's
// metadata: its sections, reset EIP and hash.
func loadMetadataJSON(t testing.TB, name string) (*measure.Metadata, *[48]byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	var f struct {
		MetadataItems []struct {
			GPA            string
			SectionTypeInt uint32
			Size           string
		}
		ResetEIP string
		OVMFHash string
	}
	require.NoError(t, json.Unmarshal(data, &f))
	m := &measure.Metadata{ResetEIP: uint32(parseUint(t, f.ResetEIP))}
	for _, it := range f.MetadataItems {
		m.Sections = append(m.Sections, measure.Section{
			GPA: uint32(parseUint(t, it.GPA)), Size: uint32(parseUint(t, it.Size)), Type: measure.SectionType(it.SectionTypeInt),
		})
	}
	return m, parseHex48(t, f.OVMFHash)
}

// inputsFor turns a case into Inputs. Kernel and initrd "empty" are
// 0-byte files; append null and "" are the same empty command line.
func inputsFor(t testing.TB, c vectorCase) measure.Inputs {
	t.Helper()
	var in measure.Inputs
	if c.MetadataJSON != nil {
		in.Metadata, in.OVMFHash = loadMetadataJSON(t, *c.MetadataJSON)
	} else {
		require.NotNil(t, c.OVMF)
		in.OVMF = loadOVMF(t, *c.OVMF)
	}
	if c.SNPOVMFHash != nil {
		in.OVMFHash = parseHex48(t, *c.SNPOVMFHash)
	}
	if c.Kernel != nil {
		require.Equal(t, "empty", *c.Kernel)
		var initrd *bytes.Reader
		if c.Initrd != nil {
			require.Equal(t, "empty", *c.Initrd)
			initrd = bytes.NewReader(nil)
		}
		cmdline := ""
		if c.Append != nil {
			cmdline = *c.Append
		}
		var err error
		if initrd == nil {
			in.Kernel, err = measure.HashKernel(bytes.NewReader(nil), nil, cmdline)
		} else {
			in.Kernel, err = measure.HashKernel(bytes.NewReader(nil), initrd, cmdline)
		}
		require.NoError(t, err)
	}
	require.NotNil(t, c.VCPUs)
	in.VCPUs = *c.VCPUs
	if c.VCPUType != nil {
		in.VCPUType = *c.VCPUType
	}
	if c.VCPUSig != nil {
		in.VCPUSig = uint32(parseUint(t, *c.VCPUSig))
	}
	vmm, err := measure.ParseVMM(c.VMMType)
	require.NoError(t, err)
	in.VMM = vmm
	if c.GuestFeatures != nil {
		in.GuestFeatures = parseUint(t, *c.GuestFeatures)
	}
	if c.EC2VMSARDX != nil {
		switch *c.EC2VMSARDX {
		case "0x0":
			in.LegacyEC2RDX = true
		case "0x600":
		default:
			t.Fatalf("ec2_vmsa_rdx %s", *c.EC2VMSARDX)
		}
	}
	return in
}

// TestVectors reproduces every SEV-SNP case of testdata/cases.json.
func TestVectors(t *testing.T) {
	cases := loadCases(t)
	ran, skipped := 0, 0
	for _, c := range cases {
		if _, ok := unsupportedModes[c.Mode]; ok {
			skipped++
		} else {
			ran++
		}
		t.Run(c.Name, func(t *testing.T) {
			if reason, ok := unsupportedModes[c.Mode]; ok {
				t.Skipf("mode %s: %s", c.Mode, reason)
			}
			if c.Mode == "snp:ovmf-hash" {
				got := loadOVMF(t, *c.OVMF).Hash()
				require.Equal(t, c.Expected, hex.EncodeToString(got[:]))
				return
			}
			require.Equal(t, "snp", c.Mode)
			got, err := measure.SNP(inputsFor(t, c))
			if c.ExpectedError != "" {
				require.Error(t, err)
				require.ErrorIs(t, err, attest.ErrUnsupported)
				require.Equal(t, measure.CheckKernelHashes, attest.FailedCheck(err))
				require.Equal(t, [48]byte{}, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.Expected, hex.EncodeToString(got[:]))
		})
	}
	t.Logf("%d cases reproduced, %d unsupported (listed in unsupportedModes)", ran, skipped)
	require.Equal(t, wantUnsupported, skipped, "unsupported cases")
	require.Equal(t, len(cases)-wantUnsupported, ran)
}

// TestTestdataIntegrity: the fixtures are the files testdata/README.md
// names, byte for byte.
func TestTestdataIntegrity(t *testing.T) {
	readme, err := os.ReadFile("testdata/README.md")
	require.NoError(t, err)
	for name, sum := range map[string]string{
		"ovmf_AmdSev_suffix.bin":  "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c",
		"ovmf_OvmfX64_suffix.bin": "b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da",
		"ovmf_img_1.json":         "1283afd8d4f53821ea9a21e139704ef11587a0936d461b43eb2baf62e4b642c6",
		"ovmf_img_2.json":         "438ac5a20d2458149169507bf35c2c2a804056ab5eb3b57042bc5e82f4011abc",
		"cases.json":              "5d591cb7f5a09720a4b4d69e2a098de4368b2e8f71c54b87b1c04ecfa908c935",
	} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		require.NoError(t, err)
		got := sha256.Sum256(data)
		require.Equal(t, sum, hex.EncodeToString(got[:]), name)
		require.Contains(t, string(readme), sum, "README names %s", name)
	}
}
