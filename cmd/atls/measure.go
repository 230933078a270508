package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/atls/snp/measure"
)

const launchSynopsis = "--ovmf FILE [--snp-ovmf-hash HEX] [--kernel FILE [--initrd FILE] [--append STR]] --vcpus N (--vcpu-type NAME | --vcpu-sig HEX) [--vmm-type qemu|ec2|gce] [--guest-features HEX]"

const launchExits = `Exit codes:
  0  success
  1  failure: a file cannot be read, or the inputs cannot be measured exactly
     (for example a kernel with firmware that has no kernel-hashes section)
  2  usage or configuration error (flags, an unknown vCPU type, a malformed firmware image)`

var measureSpec = &cmdSpec{
	name:     "measure",
	synopsis: []string{"measure " + launchSynopsis + " [--json]"},
	summary: `Computes the SEV-SNP launch measurement (the MEASUREMENT field of the VM's
attestation reports) from the launch inputs, and prints it as 96 hex digits on
stdout. With --json it prints the inputs and the result instead.

The inputs are those of the QEMU command line (-bios or the OVMF pflash,
-kernel, -initrd, -append, -smp, -cpu, and the sev-snp-guest object's
SEV_FEATURES) or of the cloud that launches the VM (--vmm-type ec2 or gce).
The flags are those of virtee's sev-snp-measure. A kernel is measured only by
firmware built for direct boot (OVMF AmdSevX64); with other firmware the
command refuses rather than print a measurement that ignores the kernel.`,
	examples: []string{
		"# A direct-boot QEMU guest on 4 EPYC-Milan vCPUs, with DebugSwap:",
		"atls measure --ovmf OVMF.fd --kernel vmlinuz --initrd initrd.img --append 'console=ttyS0' \\",
		"    --vcpus 4 --vcpu-type EPYC-Milan --guest-features 0x21",
		"",
		"# Firmware only, on EC2:",
		"atls measure --ovmf ovmf_img.fd --vcpus 2 --vmm-type ec2",
	},
	exits: launchExits,
}

var policyFromLaunchSpec = &cmdSpec{
	name:     "policy from-launch",
	synopsis: []string{"policy from-launch " + launchSynopsis + " [--id-key-digest HEX] [--out FILE]"},
	summary: `Prints a policy that pins the launch measurement computed from the launch
inputs, as 'atls measure' computes it: a reference value from the image, not
from a running VM. The other fields are the secure defaults of 'policy init'.
With --id-key-digest the policy also requires an ID block signed by that ID key.`,
	examples: []string{
		"atls policy from-launch --ovmf OVMF.fd --kernel vmlinuz --initrd initrd.img --append 'console=ttyS0' --vcpus 4 --vcpu-type EPYC-Milan > policy.json",
	},
	exits: launchExits,
}

// launchFlags are the launch inputs of measure and policy from-launch.
type launchFlags struct {
	ovmf, ovmfHash          string
	kernel, initrd, cmdline string
	appendSet               bool
	vcpus                   int
	vcpuType, vcpuSig       string
	vmm, guestFeatures      string
	legacyEC2RDX            bool
}

func addLaunchFlags(fs *flag.FlagSet) *launchFlags {
	f := &launchFlags{}
	fs.StringVar(&f.ovmf, "ovmf", "", "the OVMF firmware image `file` (required)")
	fs.StringVar(&f.ovmfHash, "snp-ovmf-hash", "", "the digest after the firmware pages, 96 `hex` digits, if already computed:\nthe image is then read only for its metadata")
	fs.StringVar(&f.kernel, "kernel", "", "the kernel `file` of a direct boot (QEMU -kernel)")
	fs.StringVar(&f.initrd, "initrd", "", "the initrd `file` (QEMU -initrd); needs --kernel")
	fs.Func("append", "the kernel command `line` (QEMU -append); needs --kernel", func(s string) error {
		f.cmdline, f.appendSet = s, true
		return nil
	})
	fs.IntVar(&f.vcpus, "vcpus", 0, "the `number` of vCPUs (required)")
	fs.StringVar(&f.vcpuType, "vcpu-type", "", "the QEMU CPU `model` (-cpu): EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin, ...")
	fs.StringVar(&f.vcpuSig, "vcpu-sig", "", "instead of --vcpu-type: the vCPUs' CPUID(1).EAX signature in `hex`")
	fs.StringVar(&f.vmm, "vmm-type", "qemu", "the `VMM` that launches the VM: qemu, ec2 or gce")
	fs.StringVar(&f.guestFeatures, "guest-features", "0x1", "SEV_FEATURES of the VMSAs in `hex` (0x1: SNP only; 0x21: with DebugSwap)")
	fs.BoolVar(&f.legacyEC2RDX, "ec2-legacy-rdx", false, "with --vmm-type ec2: RDX 0 in the VMSA, as sev-snp-measure computed before 2026-04")
	return f
}

// launchResult is the result of the launch inputs: what was measured and the
// measurement.
type launchResult struct {
	Inputs struct {
		OVMF          string `json:"ovmf"`
		OVMFSHA256    string `json:"ovmf_sha256"`
		OVMFHash      string `json:"snp_ovmf_hash"`
		Kernel        string `json:"kernel,omitempty"`
		KernelSHA256  string `json:"kernel_sha256,omitempty"`
		Initrd        string `json:"initrd,omitempty"`
		InitrdSHA256  string `json:"initrd_sha256,omitempty"`
		Append        string `json:"append,omitempty"`
		CmdlineSHA256 string `json:"cmdline_sha256,omitempty"`
		VCPUs         int    `json:"vcpus"`
		VCPUType      string `json:"vcpu_type,omitempty"`
		VCPUSig       string `json:"vcpu_sig,omitempty"`
		VMMType       string `json:"vmm_type"`
		GuestFeatures string `json:"guest_features"`
		LegacyEC2RDX  bool   `json:"ec2_legacy_rdx,omitempty"`
	} `json:"inputs"`
	Measurement string `json:"measurement"`
}

// check reports usage errors that need no file.
func (f *launchFlags) check() error {
	switch {
	case f.ovmf == "":
		return usageErrorf("--ovmf is required")
	case f.vcpus == 0:
		return usageErrorf("--vcpus is required")
	case f.kernel == "" && (f.initrd != "" || f.appendSet):
		return usageErrorf("--initrd and --append need --kernel")
	case f.legacyEC2RDX && !strings.EqualFold(f.vmm, "ec2"):
		return usageErrorf("--ec2-legacy-rdx needs --vmm-type ec2")
	}
	return nil
}

// inputs reads the files and builds the package's inputs; r records them.
func (f *launchFlags) inputs(r *launchResult) (measure.Inputs, error) {
	var in measure.Inputs
	if err := f.check(); err != nil {
		return in, err
	}
	var err error
	if in.VMM, err = measure.ParseVMM(f.vmm); err != nil {
		return in, err
	}
	if in.GuestFeatures, err = parseHexUint(f.guestFeatures, "--guest-features"); err != nil {
		return in, err
	}
	if in.GuestFeatures&measure.GuestFeatureSNPActive == 0 {
		// The package reads 0 as its default; on the command line it is a mistake.
		return in, usageErrorf("--guest-features %s: SNPActive (bit 0) must be set", f.guestFeatures)
	}
	if f.vcpuSig != "" {
		sig, err := parseHexUint(f.vcpuSig, "--vcpu-sig")
		if err != nil {
			return in, err
		}
		if sig > 0xffff_ffff {
			return in, usageErrorf("--vcpu-sig %s: more than 32 bits", f.vcpuSig)
		}
		in.VCPUSig = uint32(sig)
	}
	in.VCPUs, in.VCPUType, in.LegacyEC2RDX = f.vcpus, f.vcpuType, f.legacyEC2RDX
	if f.ovmfHash != "" {
		h, err := parseMeasurement(f.ovmfHash)
		if err != nil {
			return in, usageErrorf("--snp-ovmf-hash: %v", err)
		}
		in.OVMFHash = &h
	}
	data, err := readLaunchFile(f.ovmf, measure.MaxOVMFSize)
	if err != nil {
		return in, err
	}
	if in.OVMF, err = measure.ParseOVMF(data); err != nil {
		return in, fmt.Errorf("%s: %w", f.ovmf, err)
	}
	r.Inputs.OVMF, r.Inputs.OVMFSHA256 = f.ovmf, sha256Hex(data)
	if f.kernel != "" {
		if in.Kernel, err = f.hashKernel(r); err != nil {
			return in, err
		}
	}
	r.Inputs.VCPUs, r.Inputs.VCPUType, r.Inputs.VMMType = in.VCPUs, in.VCPUType, in.VMM.String()
	if f.vcpuSig != "" {
		r.Inputs.VCPUSig = fmt.Sprintf("%#x", in.VCPUSig)
	}
	r.Inputs.GuestFeatures = fmt.Sprintf("%#x", in.GuestFeatures)
	r.Inputs.LegacyEC2RDX = in.LegacyEC2RDX
	return in, nil
}

// hashKernel streams the kernel and initrd into their hashes.
func (f *launchFlags) hashKernel(r *launchResult) (*measure.KernelHashes, error) {
	kernel, err := os.Open(f.kernel)
	if err != nil {
		return nil, err
	}
	defer kernel.Close()
	var initrd io.Reader
	if f.initrd != "" {
		file, err := os.Open(f.initrd)
		if err != nil {
			return nil, err
		}
		defer file.Close()
		initrd = file
	}
	k, err := measure.HashKernel(kernel, initrd, f.cmdline)
	if err != nil {
		return nil, err
	}
	r.Inputs.Kernel, r.Inputs.KernelSHA256 = f.kernel, hex.EncodeToString(k.Kernel[:])
	if f.initrd != "" {
		r.Inputs.Initrd, r.Inputs.InitrdSHA256 = f.initrd, hex.EncodeToString(k.Initrd[:])
	}
	r.Inputs.Append, r.Inputs.CmdlineSHA256 = f.cmdline, hex.EncodeToString(k.Cmdline[:])
	return k, nil
}

// measurement computes the launch measurement of the flags' inputs.
func (f *launchFlags) measurement() (*launchResult, error) {
	r := &launchResult{}
	in, err := f.inputs(r)
	if err != nil {
		return nil, launchError(err)
	}
	if in.OVMFHash == nil {
		h := in.OVMF.Hash() // hashed once, for the output and the digest
		in.OVMFHash = &h
	}
	r.Inputs.OVMFHash = hex.EncodeToString(in.OVMFHash[:])
	m, err := measure.SNP(in)
	if err != nil {
		return nil, launchError(err)
	}
	r.Measurement = hex.EncodeToString(m[:])
	return r, nil
}

// launchError gives a measurement failure its exit code: 2 for unusable
// inputs, 1 for inputs that cannot be measured or files that cannot be
// read.
func launchError(err error) error {
	var ue *usageErr
	switch {
	case errors.As(err, &ue):
		return err
	case errors.Is(err, atls.ErrConfig):
		return &cliError{code: exitUsage, err: err}
	}
	return &cliError{code: exitFailure, err: err}
}

// readLaunchFile reads a file of at most limit bytes.
func readLaunchFile(path string, limit int64) ([]byte, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}

func sha256Hex(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// parseHexUint reads a hexadecimal number, with or without 0x.
func parseHexUint(s, flagName string) (uint64, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X"), 16, 64)
	if err != nil {
		return 0, usageErrorf("%s %q: want a hexadecimal number", flagName, s)
	}
	return v, nil
}

func runMeasure(e *env, args []string) int {
	fs := newFlags(e, measureSpec)
	lf := addLaunchFlags(fs)
	asJSON := fs.Bool("json", false, "print the inputs and the measurement as JSON")
	if _, code := parseArgs(e, fs, measureSpec, args, 0, 0); code >= 0 {
		return code
	}
	r, err := lf.measurement()
	if err == nil {
		if *asJSON {
			err = writeJSON(e.stdout, r)
		} else {
			_, err = fmt.Fprintln(e.stdout, r.Measurement)
		}
	}
	return finish(e, measureSpec, err)
}

func runPolicyFromLaunch(e *env, args []string) int {
	fs := newFlags(e, policyFromLaunchSpec)
	lf := addLaunchFlags(fs)
	idKey := fs.String("id-key-digest", "", "also require an ID block signed by the ID key with this SHA-384 digest, 96 `hex` digits")
	out := fs.String("out", "", "write the policy to `file` instead of stdout")
	force := fs.Bool("force", false, "overwrite --out if it exists")
	if _, code := parseArgs(e, fs, policyFromLaunchSpec, args, 0, 0); code >= 0 {
		return code
	}
	err := func() error {
		var idKeyDigest *[48]byte
		if *idKey != "" {
			d, err := parseMeasurement(*idKey)
			if err != nil || d == ([48]byte{}) {
				return usageErrorf("--id-key-digest: want 96 hex digits, not all zero")
			}
			idKeyDigest = &d
		}
		r, err := lf.measurement()
		if err != nil {
			return err
		}
		data, err := launchPolicy(r.Measurement, idKeyDigest)
		if err != nil {
			return err
		}
		if err := writeOutput(e, *out, data, *force); err != nil {
			return err
		}
		dest := "stdout"
		if *out != "" {
			dest = *out
		}
		fmt.Fprintf(e.stderr, "atls policy from-launch: wrote a policy pinning measurement %s to %s.\n", r.Measurement, printable(dest))
		if idKeyDigest != nil {
			fmt.Fprintln(e.stderr, "It also requires an ID block signed by the given ID key.")
		}
		return nil
	}()
	return finish(e, policyFromLaunchSpec, err)
}

// launchPolicy returns the JSON of a policy with secure defaults that
// pins measurement (hex) and, when set, an ID key.
func launchPolicy(measurement string, idKeyDigest *[48]byte) ([]byte, error) {
	m, err := hex.DecodeString(measurement)
	if err != nil {
		return nil, err
	}
	p := snp.NewPolicy()
	p.Measurements = []attest.HexBytes{m}
	if idKeyDigest != nil {
		p.TrustedIDKeyDigests = []attest.HexBytes{idKeyDigest[:]}
		p.RequireIDBlock = true
	}
	p.MinimumTCB = snp.BaselineTCB()
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	data = append(data, '\n')
	loaded, err := snp.ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("internal error: the policy does not load: %w", err)
	}
	if len(loaded.Measurements) != 1 || !bytes.Equal(loaded.Measurements[0], m) {
		return nil, errors.New("internal error: the policy does not pin the measurement")
	}
	return data, nil
}
