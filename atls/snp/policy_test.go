package snp

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
)

// examplePolicy is the policy of the documentation: every field set.
const examplePolicy = `{
  "measurements": [
    "4d4541000000000000000000000000000000000000000000000000000000000000000000000000000000000000000053",
    "5d4541000000000000000000000000000000000000000000000000000000000000000000000000000000000000000053"
  ],
  "host_data": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
  "family_id": "01000000000000000000000000000000",
  "image_id": "02000000000000000000000000000000",
  "report_ids": ["385eba81216de4776548fcb86f8ead03c1ebc92b6207f3210d9ccebb89c99005"],
  "report_id_ma": "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
  "chip_ids": ["d49554ec717f4e5b0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001"],
  "minimum_guest_svn": 1,
  "require_id_block": true,
  "require_author_key": false,
  "trusted_id_key_digests": ["0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca491ecdd7f336dc28a6e0b2bb57af7a44a3"],
  "trusted_author_key_digests": [],
  "denied_id_key_digests": ["1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d"],
  "denied_author_key_digests": [],
  "guest_policy": {
    "minimum_abi": "1.51",
    "allow_smt": true,
    "allow_cxl": false,
    "require_single_socket": false,
    "require_mem_aes_256_xts": false,
    "require_rapl_disabled": false,
    "require_ciphertext_hiding_dram": false,
    "require_page_swap_disabled": false
  },
  "allow_debug": false,
  "allow_migrate_ma": false,
  "allowed_vmpls": [0],
  "allow_vlek": false,
  "allowed_report_versions": [2, 3, 5],
  "minimum_tcb": {
    "Milan": {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219},
    "Genoa": "0x541700000000000a"
  },
  "minimum_launch_tcb": {"Milan": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}},
  "permit_provisional_firmware": false,
  "minimum_build": 20,
  "minimum_version": "1.55",
  "platform_info": {
    "allow_smt": true,
    "allow_tsme": true,
    "allow_tio": false,
    "require_ecc": false,
    "require_rapl_disabled": false,
    "require_ciphertext_hiding_dram": false,
    "require_alias_check_complete": false
  },
  "minimum_launch_mitigation_vector": 0,
  "minimum_current_mitigation_vector": 0
}`

func TestParsePolicyExample(t *testing.T) {
	p, err := ParsePolicy([]byte(examplePolicy))
	require.NoError(t, err)
	require.Len(t, p.Measurements, 2)
	require.Equal(t, vtMeasurement[:], []byte(p.Measurements[0]))
	require.Equal(t, TCB{Bootloader: 4, SNP: 24, Microcode: 219}, p.MinimumTCB["Milan"])
	require.Equal(t, TCB{Bootloader: 10, SNP: 23, Microcode: 84}, p.MinimumTCB["Genoa"])
	require.Equal(t, "1.51", p.GuestPolicy.MinimumABI)
	require.True(t, p.GuestPolicy.AllowSMT)
	require.Equal(t, uint8(20), p.MinimumBuild)
	require.NotNil(t, p.PlatformInfo)
	require.True(t, p.PlatformInfo.AllowTSME)
	require.True(t, p.RequireIDBlock)
	require.Equal(t, []uint32{0}, p.AllowedVMPLs)

	// It survives a round trip through JSON.
	b, err := json.Marshal(p)
	require.NoError(t, err)
	p2, err := ParsePolicy(b)
	require.NoError(t, err)
	b2, err := json.Marshal(p2)
	require.NoError(t, err)
	require.JSONEq(t, string(b), string(b2))

	// And LoadPolicy reads it from a file.
	path := filepath.Join(t.TempDir(), "policy.json")
	require.NoError(t, os.WriteFile(path, []byte(examplePolicy), 0o600))
	p3, err := LoadPolicy(path)
	require.NoError(t, err)
	require.Equal(t, p, p3)
	_, err = LoadPolicy(filepath.Join(t.TempDir(), "missing.json"))
	require.ErrorIs(t, err, attest.ErrConfig)
}

// Fields left out keep NewPolicy's values.
func TestParsePolicyDefaults(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"measurements": ["` + hex.EncodeToString(vtMeasurement[:]) + `"]}`))
	require.NoError(t, err)
	want := NewPolicy()
	want.Measurements = []attest.HexBytes{vtMeasurement[:]}
	require.Equal(t, want, p)

	// Nested objects are merged field by field, too.
	p, err = ParsePolicy([]byte(`{"measurements": ["` + hex.EncodeToString(vtMeasurement[:]) + `"], "guest_policy": {"minimum_abi": "1.51"}}`))
	require.NoError(t, err)
	require.True(t, p.GuestPolicy.AllowSMT)
	require.Equal(t, "1.51", p.GuestPolicy.MinimumABI)
}

func TestNewPolicyIsSecureAndEmpty(t *testing.T) {
	p := NewPolicy()
	require.False(t, p.AllowDebug)
	require.False(t, p.AllowMigrateMA)
	require.False(t, p.AllowVLEK)
	require.False(t, p.PermitProvisionalFirmware)
	require.Equal(t, []uint32{0}, p.AllowedVMPLs)
	require.Equal(t, []uint32{2, 3, 5}, p.AllowedReportVersions)
	require.Nil(t, p.MinimumTCB)
	err := p.Validate()
	require.ErrorIs(t, err, attest.ErrConfig)
	require.ErrorContains(t, err, "empty policy")

	// The zero Policy uses the same defaults for its lists.
	var z Policy
	require.Equal(t, []uint32{0}, z.vmpls())
	require.Equal(t, DefaultReportVersions(), z.reportVersions())

	var nilPolicy *Policy
	require.ErrorIs(t, nilPolicy.Validate(), attest.ErrConfig)
}

func TestBaselineTCB(t *testing.T) {
	b := BaselineTCB()
	require.Equal(t, TCB{Bootloader: 3, TEE: 0, SNP: 8, Microcode: 115}, b["Milan"])
	require.Equal(t, uint64(0x7308000000000003), b["Milan"].Version())
	require.Equal(t, TCB{Bootloader: 10, TEE: 0, SNP: 23, Microcode: 84}, b["Genoa"])
	require.Equal(t, uint64(0x541700000000000a), b["Genoa"].Version())
	// Turin's baseline is the TCB of the real Turin report in
	// testdata/oak (fmc 0, bootloader 1, tee 0, snp 2, microcode 71).
	require.Equal(t, TCB{FMC: 0, Bootloader: 1, TEE: 0, SNP: 2, Microcode: 71}, b["Turin"])
	turin, err := ProductTurin.EncodeTCB(b["Turin"])
	require.NoError(t, err)
	require.Equal(t, uint64(0x4700000002000100), turin)
	require.Len(t, b, 3)
	b["Milan"] = TCB{}
	require.NotEqual(t, TCB{}, BaselineTCB()["Milan"], "BaselineTCB returns a copy")

	p := NewPolicy()
	got, ok := p.minimumTCB("Genoa")
	require.True(t, ok)
	require.Equal(t, BaselineTCB()["Genoa"], got)
	p.MinimumTCB = map[string]TCB{"Genoa": {Microcode: 1}}
	got, _ = p.minimumTCB("Genoa")
	require.Equal(t, TCB{Microcode: 1}, got)
	_, ok = p.minimumTCB("Rome")
	require.False(t, ok)
}

func TestTCBJSON(t *testing.T) {
	var tcb TCB
	require.NoError(t, json.Unmarshal([]byte(`{"bootloader":3,"tee":0,"snp":8,"microcode":115}`), &tcb))
	require.Equal(t, TCB{Bootloader: 3, SNP: 8, Microcode: 115}, tcb)
	require.NoError(t, json.Unmarshal([]byte(`"0x7308000000000003"`), &tcb))
	require.Equal(t, TCB{Bootloader: 3, SNP: 8, Microcode: 115}, tcb)
	require.Equal(t, TCBFromVersion(0x7308000000000003), tcb)
	b, err := json.Marshal(tcb)
	require.NoError(t, err)
	require.JSONEq(t, `{"bootloader":3,"tee":0,"snp":8,"microcode":115}`, string(b))
	for _, bad := range []string{
		`{"bootloader":3,"fmx":1}`,  // unknown member
		`"7308000000000003"`,        // no 0x
		`"0x"`,                      // no digits
		`"0x17308000000000003"`,     // too long
		`"0x7308000100000003"`,      // reserved byte (in every layout)
		`"0xzz"`,                    // not hex
		`{"microcode":256}`,         // out of range
		`[1,2,3,4]`,                 // not an object
		`{"bootloader":3} trailing`, // trailing data
		`null`,                      // names no level (issue 13, finding 1)
		`{}`,                        // names no level either
		` { } `,
	} {
		require.Error(t, json.Unmarshal([]byte(bad), &tcb), bad)
	}
}

// hexOf returns n bytes of b as hex.
func hexOf(b byte, n int) string { return strings.Repeat(fmt.Sprintf("%02x", b), n) }

func TestParsePolicyRejects(t *testing.T) {
	m := `"measurements": ["` + hexOf(0x4d, 48) + `"]`
	for name, doc := range map[string]string{
		"unknown field":                 `{` + m + `, "measurment": []}`,
		"unknown guest policy field":    `{` + m + `, "guest_policy": {"allow_debug": true}}`,
		"unknown platform info field":   `{` + m + `, "platform_info": {"allow_everything": true}}`,
		"unknown TCB field":             `{` + m + `, "minimum_tcb": {"Milan": {"fmc": 1}}}`,
		"duplicate field":               `{` + m + `, "allow_debug": false, "allow_debug": true}`,
		"duplicate field, other case":   `{` + m + `, "allow_debug": false, "Allow_Debug": true}`,
		"duplicate nested field":        `{` + m + `, "guest_policy": {"allow_smt": false, "allow_smt": true}}`,
		"non-ASCII field name":          `{"meaſurements": ["` + hexOf(0x4d, 48) + `"]}`,
		"trailing data":                 `{` + m + `} x`,
		"two objects":                   `{` + m + `} {}`,
		"not an object":                 `[]`,
		"null":                          `null`,
		"empty document":                ``,
		"empty object":                  `{}`,
		"bad hex":                       `{"measurements": ["` + hexOf(0x4d, 47) + `zz"]}`,
		"odd hex":                       `{"measurements": ["` + hexOf(0x4d, 48) + `0"]}`,
		"short measurement":             `{"measurements": ["` + hexOf(0x4d, 47) + `"]}`,
		"long measurement":              `{"measurements": ["` + hexOf(0x4d, 49) + `"]}`,
		"zero measurement":              `{"measurements": ["` + hexOf(0, 48) + `"]}`,
		"short host data":               `{` + m + `, "host_data": "` + hexOf(1, 31) + `"}`,
		"short family id":               `{` + m + `, "family_id": "` + hexOf(1, 15) + `"}`,
		"short image id":                `{` + m + `, "image_id": "` + hexOf(1, 17) + `"}`,
		"short report id":               `{` + m + `, "report_ids": ["` + hexOf(1, 31) + `"]}`,
		"short report id ma":            `{` + m + `, "report_id_ma": "` + hexOf(1, 31) + `"}`,
		"short chip id":                 `{` + m + `, "chip_ids": ["` + hexOf(1, 63) + `"]}`,
		"zero chip id":                  `{` + m + `, "chip_ids": ["` + hexOf(0, 64) + `"]}`,
		"zero trusted ID key":           `{"trusted_id_key_digests": ["` + hexOf(0, 48) + `"]}`,
		"short trusted author key":      `{"trusted_author_key_digests": ["` + hexOf(1, 32) + `"]}`,
		"short denied ID key":           `{` + m + `, "denied_id_key_digests": ["` + hexOf(1, 32) + `"]}`,
		"trusted and denied":            `{"trusted_id_key_digests": ["` + hexOf(1, 48) + `"], "denied_id_key_digests": ["` + hexOf(1, 48) + `"]}`,
		"author trusted and denied":     `{"trusted_author_key_digests": ["` + hexOf(1, 48) + `"], "denied_author_key_digests": ["` + hexOf(1, 48) + `"]}`,
		"author key required, none":     `{` + m + `, "require_author_key": true}`,
		"ID block required, no keys":    `{` + m + `, "require_id_block": true}`,
		"VMPL 4":                        `{` + m + `, "allowed_vmpls": [0, 4]}`,
		"negative VMPL":                 `{` + m + `, "allowed_vmpls": [-1]}`,
		"report version 1":              `{` + m + `, "allowed_report_versions": [1]}`,
		"report version 6":              `{` + m + `, "allowed_report_versions": [2, 6]}`,
		"Turin minimum TCB":             `{` + m + `, "minimum_tcb": {"Turin": {"snp": 1}}}`,
		"lower-case product":            `{` + m + `, "minimum_tcb": {"milan": {"snp": 1}}}`,
		"TCB part out of range":         `{` + m + `, "minimum_tcb": {"Milan": {"snp": 128}}}`,
		"launch TCB unknown product":    `{` + m + `, "minimum_launch_tcb": {"Rome": {"snp": 1}}}`,
		"minimum version without minor": `{` + m + `, "minimum_version": "1"}`,
		"minimum version not numbers":   `{` + m + `, "minimum_version": "one.two"}`,
		"minimum version too large":     `{` + m + `, "minimum_version": "1.256"}`,
		"minimum ABI not numbers":       `{` + m + `, "guest_policy": {"minimum_abi": "x.y"}}`,
		"minimum build too large":       `{` + m + `, "minimum_build": 256}`,
		"wrong type":                    `{` + m + `, "allow_debug": "yes"}`,
		"only zero host data":           `{"host_data": "` + hexOf(0, 32) + `"}`,
		"only family id":                `{"family_id": "` + hexOf(1, 16) + `"}`,
		"only denied keys":              `{"denied_id_key_digests": ["` + hexOf(1, 48) + `"]}`,
		"too large":                     `{` + m + `, "x": "` + strings.Repeat("a", maxPolicySize) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(doc))
			require.Nil(t, p)
			require.ErrorIs(t, err, attest.ErrConfig)
			var ce *attest.CheckError
			require.ErrorAs(t, err, &ce)
			require.True(t, strings.HasPrefix(ce.Check, "policy."), ce.Check)
		})
	}
}

// Any one identity pin makes a policy non-empty.
func TestParsePolicyPins(t *testing.T) {
	for name, doc := range map[string]string{
		"measurement":        `{"measurements": ["` + hexOf(0x4d, 48) + `"]}`,
		"trusted ID key":     `{"trusted_id_key_digests": ["` + hexOf(1, 48) + `"]}`,
		"trusted author key": `{"trusted_author_key_digests": ["` + hexOf(1, 48) + `"]}`,
		"report id":          `{"report_ids": ["` + hexOf(1, 32) + `"]}`,
	} {
		_, err := ParsePolicy([]byte(doc))
		require.NoError(t, err, name)
	}
	// Host data (chosen by the host) and chip IDs (a machine runs any
	// image) pin no guest code on their own.
	for name, doc := range map[string]string{
		"host data only":      `{"host_data": "` + hexOf(1, 32) + `"}`,
		"chip only":           `{"chip_ids": ["` + hexOf(1, 64) + `"]}`,
		"host data and chips": `{"host_data": "` + hexOf(1, 32) + `", "chip_ids": ["` + hexOf(1, 64) + `"]}`,
	} {
		_, err := ParsePolicy([]byte(doc))
		require.ErrorIs(t, err, attest.ErrConfig, name)
		require.ErrorContains(t, err, "empty policy", name)
	}
}

// rawValidate runs go-sev-guest's validation alone on a report.
func rawValidate(t *testing.T, report, vcek []byte, opts *validate.Options) error {
	t.Helper()
	pr, err := abi.ReportToProto(report)
	require.NoError(t, err)
	return validate.SnpAttestation(&spb.Attestation{Report: pr, CertificateChain: &spb.CertificateChain{VcekCert: vcek}}, opts)
}

// Each knob of the policy has an effect, and the options the policy hands
// to go-sev-guest's validation have the same effect where go-sev-guest can
// express the knob. Policies are written as JSON, so the field names are
// tested too.
func TestPolicyKnobs(t *testing.T) {
	ctx := context.Background()
	milan := testSimChain(t, "Milan")
	meas := `"measurements": ["` + hex.EncodeToString(vtMeasurement[:]) + `"]`
	var family, image [16]byte
	family[0], image[0] = 1, 2
	var reportID, hostData [32]byte
	reportID[0], hostData[0] = 0x38, 0x44
	policyBits := func(p abi.SnpPolicy) uint64 { p.SMT = true; return abi.SnpPolicyToBytes(p) }
	cases := []struct {
		name  string
		opts  SimOptions
		json  string // members added to the measurement
		check string // "" when accepted
		// gsg is true when go-sev-guest's validation with the policy's
		// options must reach the same verdict.
		gsg bool
	}{
		{"family id", SimOptions{FamilyID: family}, `"family_id": "` + hexOf(0, 16) + `"`, "policy.family_id", true},
		{"family id match", SimOptions{FamilyID: family}, `"family_id": "01` + hexOf(0, 15) + `"`, "", true},
		{"image id", SimOptions{ImageID: image}, `"image_id": "01` + hexOf(0, 15) + `"`, "policy.image_id", true},
		{"report id", SimOptions{}, `"report_ids": ["` + hexOf(0x38, 32) + `"]`, "policy.report_id", true},
		{"report id match", SimOptions{ReportID: reportID}, `"report_ids": ["` + hexOf(0x11, 32) + `", "38` + hexOf(0, 31) + `"]`, "", false},
		{"report id ma", SimOptions{}, `"report_id_ma": "` + hexOf(0, 32) + `"`, "policy.report_id_ma", true},
		{"report id ma match", SimOptions{}, `"report_id_ma": "` + hexOf(0xff, 32) + `"`, "", true},
		{"host data match", SimOptions{HostData: hostData}, `"host_data": "44` + hexOf(0, 31) + `"`, "", true},
		{"minimum guest svn", SimOptions{GuestSVN: 2}, `"minimum_guest_svn": 3`, "policy.guest_svn", true},
		{"minimum guest svn met", SimOptions{GuestSVN: 3}, `"minimum_guest_svn": 3`, "", true},
		{"minimum abi", SimOptions{GuestPolicy: policyBits(abi.SnpPolicy{ABIMajor: 1, ABIMinor: 50})}, `"guest_policy": {"minimum_abi": "1.51"}`, "policy.guest_policy", true},
		{"minimum abi met", SimOptions{GuestPolicy: policyBits(abi.SnpPolicy{ABIMajor: 1, ABIMinor: 51})}, `"guest_policy": {"minimum_abi": "1.51"}`, "", true},
		{"smt refused", SimOptions{}, `"guest_policy": {"allow_smt": false}`, "policy.guest_policy", true},
		{"cxl", SimOptions{GuestPolicy: policyBits(abi.SnpPolicy{CXLAllowed: true})}, ``, "policy.guest_policy", true},
		{"cxl allowed", SimOptions{GuestPolicy: policyBits(abi.SnpPolicy{CXLAllowed: true})}, `"guest_policy": {"allow_smt": true, "allow_cxl": true}`, "", true},
		{"single socket", SimOptions{}, `"guest_policy": {"allow_smt": true, "require_single_socket": true}`, "policy.guest_policy", true},
		{"single socket met", SimOptions{GuestPolicy: policyBits(abi.SnpPolicy{SingleSocket: true})}, `"guest_policy": {"require_single_socket": true}`, "", true},
		{"aes-256-xts", SimOptions{}, `"guest_policy": {"require_mem_aes_256_xts": true}`, "policy.guest_policy", true},
		{"rapl", SimOptions{}, `"guest_policy": {"require_rapl_disabled": true}`, "policy.guest_policy", true},
		{"ciphertext hiding", SimOptions{}, `"guest_policy": {"require_ciphertext_hiding_dram": true}`, "policy.guest_policy", true},
		{"page swap", SimOptions{}, `"guest_policy": {"require_page_swap_disabled": true}`, "policy.guest_policy", true},
		{"page swap met", SimOptions{GuestPolicy: policyBits(abi.SnpPolicy{PageSwapDisable: true})}, `"guest_policy": {"require_page_swap_disabled": true}`, "", true},
		{"minimum launch tcb", SimOptions{LaunchTCB: TCB{Bootloader: 4, SNP: 23, Microcode: 219}.Version()},
			`"minimum_launch_tcb": {"Milan": {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219}}`, "policy.tcb.launch", true},
		{"minimum launch tcb met", SimOptions{}, `"minimum_launch_tcb": {"Milan": "0xdb18000000000004"}`, "", true},
		{"minimum launch tcb of another product", SimOptions{}, `"minimum_launch_tcb": {"Genoa": {"snp": 127}}`, "", true},
		{"minimum tcb of another product", SimOptions{}, `"minimum_tcb": {"Genoa": {"snp": 127}}`, "", true},
		{"minimum tcb", SimOptions{}, `"minimum_tcb": {"Milan": {"bootloader": 4, "tee": 1, "snp": 24, "microcode": 219}}`, "policy.tcb.minimum", true},
		{"minimum build", SimOptions{}, `"minimum_build": 30`, "policy.firmware", true},
		{"minimum build met", SimOptions{}, `"minimum_build": 29`, "", true},
		{"minimum version", SimOptions{}, `"minimum_version": "1.56"`, "policy.firmware", true},
		{"minimum version met", SimOptions{}, `"minimum_version": "1.55"`, "", true},
		{"platform smt", SimOptions{}, `"platform_info": {}`, "policy.platform_info", true},
		{"platform smt allowed", SimOptions{}, `"platform_info": {"allow_smt": true}`, "", true},
		{"platform tsme", SimOptions{PlatformInfo: 0x3}, `"platform_info": {"allow_smt": true}`, "policy.platform_info", true},
		{"platform ecc", SimOptions{}, `"platform_info": {"allow_smt": true, "require_ecc": true}`, "policy.platform_info", true},
		{"platform ecc met", SimOptions{PlatformInfo: 0x5}, `"platform_info": {"allow_smt": true, "require_ecc": true}`, "", true},
		{"platform alias check", SimOptions{}, `"platform_info": {"allow_smt": true, "require_alias_check_complete": true}`, "policy.platform_info", true},
		{"platform rapl", SimOptions{}, `"platform_info": {"allow_smt": true, "require_rapl_disabled": true}`, "policy.platform_info", true},
		{"platform ciphertext hiding", SimOptions{}, `"platform_info": {"allow_smt": true, "require_ciphertext_hiding_dram": true}`, "policy.platform_info", true},
		{"platform tio", SimOptions{PlatformInfo: 0x81}, `"platform_info": {"allow_smt": true}`, "policy.platform_info", true},
		{"launch mitigation", SimOptions{ReportVersion: 5, LaunchMitVector: 0x1}, `"minimum_launch_mitigation_vector": 3`, "policy.mitigation", true},
		{"current mitigation", SimOptions{ReportVersion: 5, CurrentMitVector: 0x4}, `"minimum_current_mitigation_vector": 6`, "policy.mitigation", true},
		{"mitigation met", SimOptions{ReportVersion: 5, LaunchMitVector: 0x3, CurrentMitVector: 0x7}, `"minimum_launch_mitigation_vector": 3, "minimum_current_mitigation_vector": 6`, "", true},
		{"vmpl list", SimOptions{VMPL: 3}, `"allowed_vmpls": [1, 3]`, "", false},
		{"vmpl single", SimOptions{VMPL: 3}, `"allowed_vmpls": [3]`, "", true},
		{"vmpl single refused", SimOptions{VMPL: 2}, `"allowed_vmpls": [3]`, "policy.vmpl", true},
		{"report version 5 only", SimOptions{ReportVersion: 3}, `"allowed_report_versions": [5]`, "snp.report.version", false},
	}
	// Cases with the same simulator options share an attester: issuing a
	// VCEK costs an RSA-4096 signature.
	attesters := map[string]*SimAttester{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := "{" + meas
			if c.json != "" {
				doc += ", " + c.json
			}
			doc += "}"
			p, err := ParsePolicy([]byte(doc))
			require.NoError(t, err, doc)
			key := fmt.Sprintf("%+v", c.opts)
			a, ok := attesters[key]
			if !ok {
				a = vtAttester(t, milan, c.opts)
				attesters[key] = a
			}
			r, err := a.Report(vtReportData)
			require.NoError(t, err)
			v := vtVerifier(t, milan.Roots(), p)
			_, err = v.VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
			if c.check == "" {
				require.NoError(t, err)
			} else {
				var ce *attest.CheckError
				require.ErrorAs(t, err, &ce, "%v", err)
				require.Equal(t, c.check, ce.Check, "%v", err)
			}
			if c.gsg {
				gsgErr := rawValidate(t, r, a.VCEK(), p.validateOptions("Milan", vtReportData[:]))
				if c.check == "" {
					require.NoError(t, gsgErr, "go-sev-guest disagrees")
				} else {
					require.Error(t, gsgErr, "go-sev-guest disagrees")
				}
			}
		})
	}
}

// The options handed to go-sev-guest carry every knob.
func TestValidateOptions(t *testing.T) {
	p, err := ParsePolicy([]byte(examplePolicy))
	require.NoError(t, err)
	p.AllowDebug, p.AllowMigrateMA = true, true
	p.RequireAuthorKey = true
	p.TrustedAuthorKeyDigests = []attest.HexBytes{[]byte(strings.Repeat("a", 48))}
	p.PermitProvisionalFirmware = true
	p.MinimumLaunchMitigationVector, p.MinimumCurrentMitigationVector = 1, 2
	rd := vtReportData[:]
	o := p.validateOptions("Milan", rd)
	require.Equal(t, abi.SnpPolicy{ABIMajor: 1, ABIMinor: 51, SMT: true, Debug: true, MigrateMA: true}, o.GuestPolicy)
	require.Equal(t, uint32(1), o.MinimumGuestSvn)
	require.Equal(t, rd, o.ReportData)
	require.Equal(t, []byte(p.HostData), o.HostData)
	require.Equal(t, []byte(p.FamilyID), o.FamilyID)
	require.Equal(t, []byte(p.ImageID), o.ImageID)
	require.Equal(t, []byte(p.ReportIDs[0]), o.ReportID)
	require.Equal(t, []byte(p.ReportIDMA), o.ReportIDMA)
	require.Nil(t, o.Measurement, "two measurements cannot be expressed")
	require.Equal(t, []byte(p.ChipIDs[0]), o.ChipID)
	require.Equal(t, uint8(20), o.MinimumBuild)
	require.Equal(t, uint16(1<<8|55), o.MinimumVersion)
	require.Equal(t, p.MinimumTCB["Milan"].parts(), o.MinimumTCB)
	require.Equal(t, p.MinimumLaunchTCB["Milan"].parts(), o.MinimumLaunchTCB)
	require.True(t, o.PermitProvisionalFirmware)
	require.Equal(t, &abi.SnpPlatformInfo{SMTEnabled: true, TSMEEnabled: true}, o.PlatformInfo)
	require.True(t, o.RequireAuthorKey)
	require.True(t, o.RequireIDBlock)
	require.NotNil(t, o.VMPL)
	require.Equal(t, 0, *o.VMPL)
	require.Len(t, o.TrustedIDKeyHashes, 1)
	require.Len(t, o.TrustedAuthorKeyHashes, 1)
	require.Equal(t, uint64(1), o.MinimumLaunchMitigationVector)
	require.Equal(t, uint64(2), o.MinimumCurrentMitigationVector)

	// Genoa gets its own minimum and no launch minimum.
	o = p.validateOptions("Genoa", rd)
	require.Equal(t, BaselineTCB()["Genoa"].parts(), o.MinimumTCB)
	require.Equal(t, TCB{}.parts(), o.MinimumLaunchTCB)

	// Several VMPLs cannot be expressed; go-sev-guest is told nothing.
	p.AllowedVMPLs = []uint32{0, 1}
	require.Nil(t, p.validateOptions("Milan", rd).VMPL)

	// Each call builds fresh options: go-sev-guest appends to the hash
	// lists, which must not leak into the policy.
	o1, o2 := p.validateOptions("Milan", rd), p.validateOptions("Milan", rd)
	o1.TrustedIDKeyHashes[0][0] ^= 1
	require.NotEqual(t, o1.TrustedIDKeyHashes[0], o2.TrustedIDKeyHashes[0])
	require.Equal(t, []byte(p.TrustedIDKeyDigests[0]), o2.TrustedIDKeyHashes[0])
}

func TestCheckJSONKeys(t *testing.T) {
	for _, ok := range []string{`{}`, `[]`, `{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}`, `{"a": [[], {}], "b": null}`} {
		require.NoError(t, checkJSONKeys([]byte(ok)), ok)
	}
	for _, bad := range []string{`{"a": 1, "a": 2}`, `{"a": 1, "A": 2}`, `{"b": [{"a": 1, "a": 2}]}`, `{"é": 1}`, `{"a b": 1}`, `{"a": }`} {
		require.Error(t, checkJSONKeys([]byte(bad)), bad)
	}
}

// Issue 13, finding 1 (partial TCB floors lower the floor): a floor that
// names some components, an empty floor and a null floor each used to
// give the other components 0, so a genuine report below the Milan
// baseline was refused by the default policy and accepted by these.
// Now components left out keep the baseline, null and empty floors are
// refused at load, and only an explicit, reasoned opt-out lowers the
// floor.
func TestPartialTCBFloorKeepsBaseline(t *testing.T) {
	ctx := context.Background()
	milan := testSimChain(t, "Milan")
	// Below the Milan baseline in bootloader and microcode, at a current
	// SNP level: what the review's partial floor {"snp": 24} accepted.
	old := TCB{Bootloader: 1, TEE: 0, SNP: 24, Microcode: 100}
	require.Less(t, old.Bootloader, BaselineTCB()["Milan"].Bootloader)
	require.Less(t, old.Microcode, BaselineTCB()["Milan"].Microcode)
	a := vtAttester(t, milan, SimOptions{TCB: old.Version()})
	report, err := a.Report(vtReportData)
	require.NoError(t, err)
	m := `"measurements": ["` + hex.EncodeToString(vtMeasurement[:]) + `"]`
	verify := func(t *testing.T, doc string) error {
		t.Helper()
		p, err := ParsePolicy([]byte(doc))
		if err != nil {
			return err
		}
		v, err := NewVerifier(VerifierOptions{Roots: milan.Roots(), Policy: p})
		if err != nil {
			return err
		}
		_, err = v.VerifyReport(ctx, report, a.VCEK(), nil, vtReportData)
		return err
	}

	// The default policy refuses the report.
	requireCheck(t, verify(t, `{`+m+`}`), attest.ErrPolicy, "policy.tcb.minimum")

	// A partial floor raises what it names and keeps the baseline for
	// the rest: it refuses the report too.
	partial := `{` + m + `, "minimum_tcb": {"Milan": {"snp": 24}}}`
	p, err := ParsePolicy([]byte(partial))
	require.NoError(t, err)
	require.Equal(t, TCB{Bootloader: 3, TEE: 0, SNP: 24, Microcode: 115}, p.MinimumTCB["Milan"])
	requireCheck(t, verify(t, partial), attest.ErrPolicy, "policy.tcb.minimum")
	// Even naming the report's own SNP level keeps the other floors.
	requireCheck(t, verify(t, `{`+m+`, "minimum_tcb": {"Milan": {"snp": 24, "tee": 0}}}`), attest.ErrPolicy, "policy.tcb.minimum")

	// Null and empty floors are refused at load, at both levels.
	for name, floor := range map[string]string{
		"empty map":     `{}`,
		"null map":      `null`,
		"empty object":  `{"Milan": {}}`,
		"null object":   `{"Milan": null}`,
		"one of two {}": `{"Genoa": "0x541700000000000a", "Milan": {}}`,
	} {
		for _, field := range []string{"minimum_tcb", "minimum_launch_tcb"} {
			t.Run(field+" "+name, func(t *testing.T) {
				requireCheck(t, verify(t, `{`+m+`, "`+field+`": `+floor+`}`), attest.ErrConfig, "policy.parse")
			})
		}
	}

	// A floor below the baseline, partial or complete, object or hex, is
	// refused at load unless the policy states why.
	for _, floor := range []string{
		`{"Milan": {"bootloader": 1, "microcode": 100}}`,
		`{"Milan": {"bootloader": 1, "tee": 0, "snp": 8, "microcode": 100}}`,
		`{"Milan": {"bootloader": 0, "tee": 0, "snp": 0, "microcode": 0}}`,
		`{"Milan": "0x6408000000000001"}`,
		`{"Milan": "0x0"}`,
	} {
		requireCheck(t, verify(t, `{`+m+`, "minimum_tcb": `+floor+`}`), attest.ErrConfig, "policy.config")
	}
	_, err = NewVerifier(VerifierOptions{Roots: milan.Roots(), Policy: func() *Policy {
		p := vtPolicy()
		p.MinimumTCB = map[string]TCB{"Milan": {SNP: 24}} // partial in Go: the rest is 0
		return p
	}()})
	requireCheck(t, err, attest.ErrConfig, "policy.config")
	require.ErrorContains(t, err, "allow_tcb_below_baseline")

	// With the opt-out, the lowered floor accepts the report: the
	// refusals above are about the floor, not about the report.
	const reason = `"lab hosts stay on old firmware until the upgrade"`
	for _, floor := range []string{
		`{"Milan": {"bootloader": 1, "microcode": 100}}`,
		`{"Milan": "0x6408000000000001"}`,
	} {
		doc := `{` + m + `, "minimum_tcb": ` + floor + `, "allow_tcb_below_baseline": {"Milan": ` + reason + `}}`
		require.NoError(t, verify(t, doc), floor)
	}
	// The opt-out lowers only its own product line's floor.
	doc := `{` + m + `, "minimum_tcb": {"Milan": {"bootloader": 1, "microcode": 100}, "Genoa": {"bootloader": 1}}, "allow_tcb_below_baseline": {"Milan": ` + reason + `}}`
	requireCheck(t, verify(t, doc), attest.ErrConfig, "policy.config")
	// A lowered floor still refuses what is below it.
	doc = `{` + m + `, "minimum_tcb": {"Milan": {"bootloader": 1, "microcode": 101}}, "allow_tcb_below_baseline": {"Milan": ` + reason + `}}`
	requireCheck(t, verify(t, doc), attest.ErrPolicy, "policy.tcb.minimum")
}

// The opt-out of finding 1 is strict: it must give a reason in words, and
// it must be needed.
func TestPartialTCBFloorOptOutRejects(t *testing.T) {
	m := `"measurements": ["` + hexOf(0x4d, 48) + `"]`
	low := `"minimum_tcb": {"Milan": {"bootloader": 1}}`
	for name, doc := range map[string]string{
		"empty reason":          `{` + m + `, ` + low + `, "allow_tcb_below_baseline": {"Milan": ""}}`,
		"blank reason":          `{` + m + `, ` + low + `, "allow_tcb_below_baseline": {"Milan": "   "}}`,
		"one word":              `{` + m + `, ` + low + `, "allow_tcb_below_baseline": {"Milan": "yes"}}`,
		"no letters":            `{` + m + `, ` + low + `, "allow_tcb_below_baseline": {"Milan": "1 2 3 4 5"}}`,
		"control characters":    `{` + m + `, ` + low + `, "allow_tcb_below_baseline": {"Milan": "old lab hosts\u001b[2J"}}`,
		"not a string":          `{` + m + `, ` + low + `, "allow_tcb_below_baseline": {"Milan": true}}`,
		"not lowered":           `{` + m + `, "allow_tcb_below_baseline": {"Milan": "old lab hosts here"}}`,
		"at the baseline":       `{` + m + `, "minimum_tcb": {"Milan": {"snp": 8}}, "allow_tcb_below_baseline": {"Milan": "old lab hosts here"}}`,
		"above the baseline":    `{` + m + `, "minimum_tcb": {"Milan": {"snp": 24}}, "allow_tcb_below_baseline": {"Milan": "old lab hosts here"}}`,
		"other product lowered": `{` + m + `, ` + low + `, "allow_tcb_below_baseline": {"Genoa": "old lab hosts here"}}`,
		"unknown product":       `{` + m + `, ` + low + `, "allow_tcb_below_baseline": {"Milan": "old lab hosts here", "Turin": "old lab hosts here"}}`,
		"launch floor only":     `{` + m + `, "minimum_launch_tcb": {"Milan": {"bootloader": 1}}, "allow_tcb_below_baseline": {"Milan": "old lab hosts here"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(doc))
			require.Nil(t, p)
			require.ErrorIs(t, err, attest.ErrConfig)
			var ce *attest.CheckError
			require.ErrorAs(t, err, &ce)
			require.True(t, strings.HasPrefix(ce.Check, "policy."), ce.Check)
			if name != "not a string" {
				require.Equal(t, "policy.config", ce.Check)
				require.ErrorContains(t, err, "allow_tcb_below_baseline")
			}
		})
	}

	// The accepted form survives a round trip and a clone.
	doc := `{` + m + `, ` + low + `, "allow_tcb_below_baseline": {"Milan": "old lab hosts here"}}`
	p, err := ParsePolicy([]byte(doc))
	require.NoError(t, err)
	require.Equal(t, TCB{Bootloader: 1, TEE: 0, SNP: 8, Microcode: 115}, p.MinimumTCB["Milan"])
	b, err := json.Marshal(p)
	require.NoError(t, err)
	p2, err := ParsePolicy(b)
	require.NoError(t, err)
	require.Equal(t, p, p2)
	c := p.clone()
	c.AllowTCBBelowBaseline["Milan"] = "changed"
	require.Equal(t, "old lab hosts here", p.AllowTCBBelowBaseline["Milan"])
}

// Finding 1 for LAUNCH_TCB: a partial launch floor keeps the baseline for
// the components it leaves out.
func TestPartialTCBFloorLaunch(t *testing.T) {
	ctx := context.Background()
	milan := testSimChain(t, "Milan")
	// Reported at a current TCB, launched on firmware whose bootloader is
	// below the baseline.
	a := vtAttester(t, milan, SimOptions{LaunchTCB: TCB{Bootloader: 1, SNP: 24, Microcode: 219}.Version()})
	report, err := a.Report(vtReportData)
	require.NoError(t, err)
	m := `"measurements": ["` + hex.EncodeToString(vtMeasurement[:]) + `"]`
	p, err := ParsePolicy([]byte(`{` + m + `, "minimum_launch_tcb": {"Milan": {"snp": 24}}}`))
	require.NoError(t, err)
	require.Equal(t, TCB{Bootloader: 3, TEE: 0, SNP: 24, Microcode: 115}, p.MinimumLaunchTCB["Milan"])
	_, err = vtVerifier(t, milan.Roots(), p).VerifyReport(ctx, report, a.VCEK(), nil, vtReportData)
	requireCheck(t, err, attest.ErrPolicy, "policy.tcb.launch")

	// Naming the bootloader level explicitly accepts it, without an
	// opt-out: no launch floor at all is the default.
	p, err = ParsePolicy([]byte(`{` + m + `, "minimum_launch_tcb": {"Milan": {"bootloader": 1, "snp": 24}}}`))
	require.NoError(t, err)
	_, err = vtVerifier(t, milan.Roots(), p).VerifyReport(ctx, report, a.VCEK(), nil, vtReportData)
	require.NoError(t, err)
}
