package main

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/atls/snp/measure"
)

// measureTestdata holds the known answers of package measure.
const measureTestdata = "../../atls/snp/measure/testdata"

// measureCase is one case of cases.json, as atls measure needs it.
type measureCase struct {
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

// measureArgs returns the atls measure flags of a case; empty files stand
// for the cases' 0-byte kernel and initrd.
func measureArgs(t *testing.T, c measureCase, empty string) []string {
	require.NotNil(t, c.VCPUs)
	args := []string{"--ovmf", filepath.Join(measureTestdata, *c.OVMF), "--vcpus", strconv.Itoa(*c.VCPUs)}
	if c.VCPUSig != nil {
		args = append(args, "--vcpu-sig", *c.VCPUSig)
	} else if c.VCPUType != nil {
		args = append(args, "--vcpu-type", *c.VCPUType)
	}
	args = append(args, "--vmm-type", strings.ToLower(c.VMMType))
	if c.GuestFeatures != nil {
		args = append(args, "--guest-features", *c.GuestFeatures)
	}
	if c.SNPOVMFHash != nil {
		args = append(args, "--snp-ovmf-hash", *c.SNPOVMFHash)
	}
	if c.Kernel != nil {
		require.Equal(t, "empty", *c.Kernel)
		args = append(args, "--kernel", empty)
		if c.Initrd != nil {
			args = append(args, "--initrd", empty)
		}
		if c.Append != nil {
			args = append(args, "--append", *c.Append)
		}
	}
	if c.EC2VMSARDX != nil && *c.EC2VMSARDX == "0x0" {
		args = append(args, "--ec2-legacy-rdx")
	}
	return args
}

// TestMeasureVectors: atls measure reproduces every SEV-SNP case of the
// package's known answers that has a firmware image.
func TestMeasureVectors(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(measureTestdata, "cases.json"))
	require.NoError(t, err)
	var f struct{ Cases []measureCase }
	require.NoError(t, json.Unmarshal(data, &f))
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))

	skip := map[string]string{
		"snp:svsm": "SVSM launches are not modelled (package measure)",
		"seves":    "SEV-ES digests, not SEV-SNP",
		"sev":      "SEV digests, not SEV-SNP",
	}
	ran, skipped := 0, 0
	for _, c := range f.Cases {
		reason := skip[c.Mode]
		if c.MetadataJSON != nil {
			reason = "no firmware image, only its metadata (package measure reproduces it with Inputs.Metadata)"
		}
		if reason != "" {
			skipped++
		} else {
			ran++
		}
		t.Run(c.Name, func(t *testing.T) {
			if reason != "" {
				t.Skip(reason)
			}
			if c.Mode == "snp:ovmf-hash" {
				r := mustRun(t, exitOK, "measure", "--ovmf", filepath.Join(measureTestdata, *c.OVMF), "--vcpus", "1", "--vcpu-type", "EPYC", "--json")
				var out launchResult
				decodeJSON(t, r.stdout, &out)
				require.Equal(t, c.Expected, out.Inputs.OVMFHash)
				return
			}
			args := append([]string{"measure"}, measureArgs(t, c, empty)...)
			if c.ExpectedError != "" {
				r := mustRun(t, exitFailure, args...)
				require.Empty(t, r.stdout)
				require.Contains(t, r.stderr, measure.CheckKernelHashes)
				return
			}
			r := mustRun(t, exitOK, args...)
			require.Equal(t, c.Expected+"\n", r.stdout)

			r = mustRun(t, exitOK, append(args, "--json")...)
			var out launchResult
			decodeJSON(t, r.stdout, &out)
			require.Equal(t, c.Expected, out.Measurement)
		})
	}
	t.Logf("%d cases reproduced, %d skipped", ran, skipped)
	require.Equal(t, 9, skipped)
	require.Equal(t, len(f.Cases)-9, ran)
}

// TestMeasureJSON: --json shows what was measured.
func TestMeasureJSON(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	require.NoError(t, os.WriteFile(kernel, []byte("kernel"), 0o600))
	require.NoError(t, os.WriteFile(initrd, []byte("initrd"), 0o600))
	ovmf := filepath.Join(measureTestdata, "ovmf_AmdSev_suffix.bin")
	args := []string{"measure", "--ovmf", ovmf, "--kernel", kernel, "--initrd", initrd, "--append", "console=ttyS0",
		"--vcpus", "4", "--vcpu-type", "EPYC-Milan", "--guest-features", "21"}
	plain := mustRun(t, exitOK, args...)
	require.Regexp(t, `^[0-9a-f]{96}\n$`, plain.stdout)

	r := mustRun(t, exitOK, append(args, "--json")...)
	var out launchResult
	decodeJSON(t, r.stdout, &out)
	require.Equal(t, strings.TrimSpace(plain.stdout), out.Measurement)
	in := out.Inputs
	require.Equal(t, "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74", in.OVMFHash)
	require.Equal(t, "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c", in.OVMFSHA256)
	require.Equal(t, sha256Hex([]byte("kernel")), in.KernelSHA256)
	require.Equal(t, sha256Hex([]byte("initrd")), in.InitrdSHA256)
	require.Equal(t, sha256Hex([]byte("console=ttyS0\x00")), in.CmdlineSHA256)
	require.Equal(t, "console=ttyS0", in.Append)
	require.Equal(t, 4, in.VCPUs)
	require.Equal(t, "EPYC-Milan", in.VCPUType)
	require.Equal(t, "qemu", in.VMMType)
	require.Equal(t, "0x21", in.GuestFeatures)

	// The same through the package.
	o, err := measure.ParseOVMF(mustReadFile(t, ovmf))
	require.NoError(t, err)
	k, err := measure.HashKernel(strings.NewReader("kernel"), strings.NewReader("initrd"), "console=ttyS0")
	require.NoError(t, err)
	want, err := measure.SNP(measure.Inputs{OVMF: o, Kernel: k, VCPUs: 4, VCPUType: "EPYC-Milan", GuestFeatures: 0x21})
	require.NoError(t, err)
	require.Equal(t, hex.EncodeToString(want[:]), out.Measurement)

	// Another command line, another measurement.
	args[8] = "console=ttyS1"
	other := mustRun(t, exitOK, args...)
	require.NotEqual(t, plain.stdout, other.stdout)
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data
}

func TestMeasureErrors(t *testing.T) {
	ovmf := filepath.Join(measureTestdata, "ovmf_AmdSev_suffix.bin")
	x64 := filepath.Join(measureTestdata, "ovmf_OvmfX64_suffix.bin")
	notOVMF := filepath.Join(measureTestdata, "cases.json")
	for _, c := range []struct {
		code  int
		check string
		args  []string
	}{
		{exitUsage, "", []string{"--vcpus", "1", "--vcpu-type", "EPYC"}},                                                  // no --ovmf
		{exitUsage, "", []string{"--ovmf", ovmf, "--vcpu-type", "EPYC"}},                                                  // no --vcpus
		{exitUsage, "", []string{"--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC", "--append", "quiet"}},             // --append without --kernel
		{exitUsage, "", []string{"--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC", "--initrd", ovmf}},                // --initrd without --kernel
		{exitUsage, "", []string{"--ovmf", ovmf, "--vcpus", "1", "--vcpu-sig", "xyz"}},                                    // bad hex
		{exitUsage, "", []string{"--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC", "--guest-features", "0"}},         // no SNPActive
		{exitUsage, "", []string{"--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC", "--snp-ovmf-hash", "00"}},         // short hash
		{exitUsage, "", []string{"--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC", "--ec2-legacy-rdx"}},              // not ec2
		{exitUsage, "", []string{"--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC", "extra"}},                         // positional
		{exitUsage, measure.CheckVCPUType, []string{"--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC-Naples"}},        // unknown type
		{exitUsage, measure.CheckVCPUType, []string{"--ovmf", ovmf, "--vcpus", "1"}},                                      // QEMU needs a signature
		{exitUsage, measure.CheckVCPUs, []string{"--ovmf", ovmf, "--vcpus", "-2", "--vcpu-type", "EPYC"}},                 // negative
		{exitUsage, measure.CheckVMM, []string{"--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC", "--vmm-type", "x"}}, // unknown VMM
		{exitUsage, measure.CheckOVMF, []string{"--ovmf", notOVMF, "--vcpus", "1", "--vcpu-type", "EPYC"}},                // not whole pages
		{exitFailure, measure.CheckKernelHashes, []string{"--ovmf", x64, "--vcpus", "1", "--vcpu-type", "EPYC", "--kernel", ovmf}},
		{exitFailure, "", []string{"--ovmf", ovmf + ".missing", "--vcpus", "1", "--vcpu-type", "EPYC"}},
	} {
		r := atlsRun(t, append([]string{"measure"}, c.args...)...)
		require.Equal(t, c.code, r.code, "%v\n%v", c.args, r)
		require.Empty(t, r.stdout)
		require.Contains(t, r.stderr, "atls measure: ")
		if c.check != "" {
			require.Contains(t, r.stderr, `"`+c.check+`"`)
		}
	}
}

// TestPolicyFromLaunch: the policy pins the computed measurement; it
// accepts a simulated VM launched from the same inputs and refuses one
// launched from another command line.
func TestPolicyFromLaunch(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	require.NoError(t, os.WriteFile(kernel, []byte("kernel"), 0o600))
	ovmf := filepath.Join(measureTestdata, "ovmf_AmdSev_suffix.bin")
	launch := []string{"--ovmf", ovmf, "--kernel", kernel, "--append", "root=/dev/vda ro", "--vcpus", "2", "--vcpu-type", "EPYC-Milan"}

	m := strings.TrimSpace(mustRun(t, exitOK, append([]string{"measure"}, launch...)...).stdout)
	policyFile := filepath.Join(dir, "policy.json")
	r := mustRun(t, exitOK, append([]string{"policy", "from-launch", "--out", policyFile}, launch...)...)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, m)
	policy, err := snp.LoadPolicy(policyFile)
	require.NoError(t, err)
	require.Len(t, policy.Measurements, 1)
	require.Equal(t, m, policy.Measurements[0].String())
	require.Empty(t, policy.TrustedIDKeyDigests)
	require.False(t, policy.AllowDebug)

	// To stdout, with an ID key.
	idKey := sha512.Sum384([]byte("id key"))
	r = mustRun(t, exitOK, append([]string{"policy", "from-launch", "--id-key-digest", hex.EncodeToString(idKey[:])}, launch...)...)
	withKey, err := snp.ParsePolicy([]byte(r.stdout))
	require.NoError(t, err)
	require.Equal(t, m, withKey.Measurements[0].String())
	require.Len(t, withKey.TrustedIDKeyDigests, 1)
	require.Equal(t, idKey[:], []byte(withKey.TrustedIDKeyDigests[0]))
	mustRun(t, exitUsage, append([]string{"policy", "from-launch", "--id-key-digest", "abcd"}, launch...)...)
	r = mustRun(t, exitFailure, "policy", "from-launch", "--ovmf", filepath.Join(measureTestdata, "ovmf_OvmfX64_suffix.bin"), "--kernel", kernel, "--vcpus", "1", "--vcpu-type", "EPYC")
	require.Empty(t, r.stdout)

	// Simulated VMs launched from image A (the policy's) and image B.
	store, err := openSimStore(simDir(t), io.Discard)
	require.NoError(t, err)
	chain, err := store.chain()
	require.NoError(t, err)
	ver, err := snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: policy})
	require.NoError(t, err)
	o, err := measure.ParseOVMF(mustReadFile(t, ovmf))
	require.NoError(t, err)
	appraise := func(cmdline string) error {
		k, err := measure.HashKernel(strings.NewReader("kernel"), nil, cmdline)
		require.NoError(t, err)
		digest, err := measure.SNP(measure.Inputs{OVMF: o, Kernel: k, VCPUs: 2, VCPUType: "EPYC-Milan"})
		require.NoError(t, err)
		vm, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: digest})
		require.NoError(t, err)
		reportData := sha512.Sum512([]byte(cmdline))
		ev, err := vm.Attest(context.Background(), reportData)
		require.NoError(t, err)
		_, err = ver.Verify(context.Background(), ev, reportData)
		return err
	}
	require.NoError(t, appraise("root=/dev/vda ro"))
	err = appraise("root=/dev/vda ro init=/bin/sh")
	require.ErrorIs(t, err, attest.ErrPolicy)
	require.Equal(t, "policy.measurement", attest.FailedCheck(err))
}

func TestMeasureHelp(t *testing.T) {
	for _, c := range [][]string{{"measure"}, {"policy", "from-launch"}} {
		r := mustRun(t, exitOK, append(c, "-h")...)
		require.Contains(t, r.stdout, "Usage:\n  atls "+strings.Join(c, " "))
		require.Contains(t, r.stdout, "Examples:\n  ")
		require.Contains(t, r.stdout, "--vcpu-type")
	}
	require.Contains(t, mustRun(t, exitOK, "help").stdout, "\n  measure ")
	require.Contains(t, mustRun(t, exitOK, "policy", "-h").stdout, "policy from-launch")
}
