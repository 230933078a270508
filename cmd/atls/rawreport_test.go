package main

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify/testdata"
	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/snp"
)

// realDir holds reports from real AMD hardware with their VCEKs, shared
// with package snp's tests (its README names each file's source and
// license).
const realDir = "../../atls/snp/testdata"

// rawVector is a real report file and the certificate that signed it.
type rawVector struct {
	report, vcek string
	version      uint32
}

var rawVectors = []rawVector{
	{report: "virtee/report_milan.bin", vcek: "virtee/vcek_milan.der", version: 2},
	{report: "microsoft-tav/milan_attestation_report.bin", vcek: "microsoft-tav/milan_vcek.pem", version: 3},
	{report: "microsoft-tav/genoa_attestation_report.bin", vcek: "microsoft-tav/genoa_vcek.pem", version: 3},
	{report: "oak/genoa_oc_report.bin", vcek: "oak/genoa_oc_vcek.der", version: 5},
}

func (v rawVector) paths() (report, vcek string) {
	return filepath.Join(realDir, v.report), filepath.Join(realDir, v.vcek)
}

// policyFromReport runs 'policy from-cert --report' and returns the
// policy file.
func policyFromReport(t *testing.T, report, vcek string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "policy.json")
	mustRun(t, exitOK, "policy", "from-cert", "--out", out, "--report", report, "--vcek", vcek)
	return out
}

// 'atls verify --report' accepts each genuine report under AMD's roots
// with the policy 'policy from-cert --report' wrote for it, and refuses
// with the exit code of the failed check's kind.
func TestVerifyRawReport(t *testing.T) {
	for _, v := range rawVectors {
		t.Run(v.report, func(t *testing.T) {
			report, vcek := v.paths()
			policy := policyFromReport(t, report, vcek)

			res := mustRun(t, exitOK, "verify", "--policy", policy, "--report", report, "--vcek", vcek)
			var claims struct {
				Role *string `json:"role"`
				Mode *string `json:"mode"`
				SNP  struct {
					ReportVersion uint32 `json:"report_version"`
					Measurement   string `json:"measurement"`
				} `json:"snp"`
				Simulated bool `json:"simulated"`
			}
			require.NoError(t, json.Unmarshal([]byte(res.stdout), &claims), res.stdout)
			raw, err := os.ReadFile(report)
			require.NoError(t, err)
			require.Equal(t, v.version, claims.SNP.ReportVersion)
			require.Equal(t, hex.EncodeToString(raw[0x90:0xC0]), claims.SNP.Measurement)
			require.False(t, claims.Simulated)
			require.Nil(t, claims.Role, "a raw report has no binding role")
			require.Nil(t, claims.Mode, "a raw report has no binding mode")
			require.Contains(t, res.stderr, "REPORT_DATA was not checked")

			// --report-data pins REPORT_DATA.
			rd := hex.EncodeToString(raw[0x50:0x90])
			res = mustRun(t, exitOK, "verify", "--policy", policy, "--report", report, "--vcek", vcek, "--report-data", rd)
			require.NotContains(t, res.stderr, "REPORT_DATA was not checked")
			wrong := []byte(rd)
			wrong[0] ^= 1 // still a hex digit
			res = mustRun(t, exitVerify, "verify", "--policy", policy, "--report", report, "--vcek", vcek, "--report-data", string(wrong))
			require.Contains(t, res.stderr, `"snp.report_data"`)

			// A changed signed byte (the guest SVN) breaks the signature.
			bad := append([]byte(nil), raw...)
			bad[0x04] ^= 1
			badPath := filepath.Join(t.TempDir(), "bad.bin")
			require.NoError(t, os.WriteFile(badPath, bad, 0o600))
			res = mustRun(t, exitVerify, "verify", "--policy", policy, "--report", badPath, "--vcek", vcek)
			require.Contains(t, res.stderr, `"snp.report.signature"`)

			// Another measurement: a policy failure.
			other := filepath.Join(t.TempDir(), "other.json")
			data, err := os.ReadFile(policy)
			require.NoError(t, err)
			m := hex.EncodeToString(raw[0x90:0xC0])
			m2 := strings.Repeat("ab", 48)
			require.NoError(t, os.WriteFile(other, []byte(strings.Replace(string(data), m, m2, 1)), 0o600))
			res = mustRun(t, exitPolicy, "verify", "--policy", other, "--report", report, "--vcek", vcek)
			require.Contains(t, res.stderr, `"policy.measurement"`)
		})
	}
}

// The mitigation-vector minimums work on a real version 5 report from
// the command line.
func TestVerifyRawReportMitigation(t *testing.T) {
	report, vcek := rawVectors[3].paths()
	policy := policyFromReport(t, report, vcek)
	data, err := os.ReadFile(policy)
	require.NoError(t, err)
	var p map[string]any
	require.NoError(t, json.Unmarshal(data, &p))
	write := func(launch, current uint64) string {
		p["minimum_launch_mitigation_vector"] = launch
		p["minimum_current_mitigation_vector"] = current
		b, err := json.Marshal(p)
		require.NoError(t, err)
		path := filepath.Join(t.TempDir(), "policy.json")
		require.NoError(t, os.WriteFile(path, b, 0o600))
		return path
	}
	res := mustRun(t, exitOK, "verify", "--policy", write(1, 1), "--report", report, "--vcek", vcek)
	require.Contains(t, res.stdout, `"launch_mit_vector": 1`)
	require.Contains(t, res.stdout, `"current_mit_vector": 1`)
	res = mustRun(t, exitPolicy, "verify", "--policy", write(1, 3), "--report", report, "--vcek", vcek)
	require.Contains(t, res.stderr, `"policy.mitigation"`)
}

func TestVerifyRawReportUsage(t *testing.T) {
	report, vcek := rawVectors[3].paths()
	policy := policyFromReport(t, report, vcek)
	short := filepath.Join(t.TempDir(), "short.bin")
	raw, err := os.ReadFile(report)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(short, raw[:1000], 0o600))
	notCRL := filepath.Join(t.TempDir(), "crl.der")
	require.NoError(t, os.WriteFile(notCRL, []byte("not a CRL"), 0o600))

	for _, c := range []struct {
		want int
		args []string
		msg  string
	}{
		{exitUsage, []string{"--report", report}, "--vcek"},
		{exitUsage, []string{"--report", report, "--vcek", vcek, report}, "exclude"},
		{exitUsage, []string{"--vcek", vcek, report}, "needs --report"},
		{exitUsage, []string{"--report-data", "00", "x.pem"}, "needs --report"},
		{exitUsage, []string{"--report", report, "--vcek", vcek, "--report-data", "abcd"}, "--report-data"},
		{exitUsage, []string{"--report", report, "--vcek", vcek, "--nonce", strings.Repeat("00", 32)}, "--nonce"},
		{exitUsage, []string{"--report", report, "--vcek", vcek, "--accept-static"}, "--accept-static"},
		{exitUsage, nil, "--report"},
		{exitFailure, []string{"--report", filepath.Join(t.TempDir(), "missing.bin"), "--vcek", vcek}, "missing.bin"},
		{exitFailure, []string{"--report", report, "--vcek", vcek, "--crl", notCRL}, "CRL"},
		{exitVerify, []string{"--report", short, "--vcek", vcek}, `"snp.report.size"`},
		// A VCEK of another chip: the report's signature does not verify.
		{exitVerify, []string{"--report", report, "--vcek", filepath.Join(realDir, "trustee/vcek-genoa.pem")}, `"snp.`},
	} {
		res := atlsRun(t, append([]string{"verify", "--policy", policy}, c.args...)...)
		require.Equal(t, c.want, res.code, "%v: %s", c.args, res)
		require.Contains(t, res.stderr, c.msg, "%v", c.args)
	}
}

// 'atls inspect --report' decodes a raw report, with or without its
// certificate, and verifies nothing.
func TestInspectRawReport(t *testing.T) {
	report, vcek := rawVectors[3].paths()
	res := mustRun(t, exitOK, "inspect", "--report", report)
	require.Contains(t, res.stdout, "NOT VERIFIED")
	require.Contains(t, res.stdout, "not given (--vcek)")
	require.NotContains(t, res.stdout, "Could not decode")

	res = mustRun(t, exitOK, "inspect", "--json", "--report", report, "--vcek", vcek)
	var out struct {
		Verified    bool            `json:"verified"`
		Certificate json.RawMessage `json:"certificate"`
		Evidence    snp.Description `json:"evidence"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &out), res.stdout)
	require.False(t, out.Verified)
	require.Nil(t, out.Certificate)
	require.Equal(t, uint32(5), out.Evidence.Report.Version)
	require.Equal(t, "Genoa", out.Evidence.SignerCert.ProductName)
	require.NotNil(t, out.Evidence.Report.LaunchMitVector)
	require.Equal(t, snp.Hex64(1), *out.Evidence.Report.LaunchMitVector)
	require.Empty(t, out.Evidence.Problems)

	short := filepath.Join(t.TempDir(), "short.bin")
	require.NoError(t, os.WriteFile(short, []byte("short"), 0o600))
	mustRun(t, exitVerify, "inspect", "--report", short)
	mustRun(t, exitUsage, "inspect", "--vcek", vcek, report)
	mustRun(t, exitUsage, "inspect", "--report", report, report)
}

// A report whose TCB is below the library's baseline gives a policy that
// loads: its minimum_tcb keeps the reported TCB, with the exception
// stated and the evidence named, and a warning.
func TestPolicyFromReportBelowBaseline(t *testing.T) {
	dir := t.TempDir()
	// go-sev-guest's test report: Milan, 2022 firmware, a debug guest.
	report := filepath.Join(dir, "old-milan.bin")
	vcek := filepath.Join(dir, "old-milan-vcek.der")
	require.NoError(t, os.WriteFile(report, testdata.AttestationBytes[:abi.ReportSize], 0o600))
	require.NoError(t, os.WriteFile(vcek, testdata.VcekBytes, 0o600))

	out := filepath.Join(dir, "policy.json")
	res := mustRun(t, exitOK, "policy", "from-cert", "--out", out, "--report", report, "--vcek", vcek)
	require.Contains(t, res.stderr, "below the library's Milan baseline")
	require.Contains(t, res.stderr, "allow_debug")
	pol, err := snp.LoadPolicy(out)
	require.NoError(t, err)
	reason := pol.AllowTCBBelowBaseline["Milan"]
	require.Contains(t, reason, "old-milan.bin")
	require.False(t, pol.MinimumTCB["Milan"].AtLeast(snp.BaselineTCB()["Milan"]))

	// The policy accepts the report it was made from.
	mustRun(t, exitOK, "verify", "--policy", out, "--report", report, "--vcek", vcek)

	// A report at or above the baseline gets no exception.
	r2, v2 := rawVectors[3].paths()
	pol2, err := snp.LoadPolicy(policyFromReport(t, r2, v2))
	require.NoError(t, err)
	require.Empty(t, pol2.AllowTCBBelowBaseline)
}

// The same holds for the certificate form: the exception names the
// certificate the floor was copied from, and the policy loads.
func TestPolicyFromDescriptionBelowBaseline(t *testing.T) {
	ev := snp.NewEvidence(testdata.AttestationBytes[:abi.ReportSize], testdata.VcekBytes, nil)
	d, err := snp.DescribeEvidence(ev)
	require.NoError(t, err)
	p, warnings, err := policyFromDescription(d, "/srv/known-good/cert.pem")
	require.NoError(t, err)
	require.Contains(t, p.AllowTCBBelowBaseline["Milan"], `"/srv/known-good/cert.pem"`)
	require.True(t, slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "below the library's Milan baseline") }), "%q", warnings)
	data, err := json.Marshal(p)
	require.NoError(t, err)
	_, err = snp.ParsePolicy(data)
	require.NoError(t, err)
}
