package measure

// Names of the checks whose failure [SNP], [ParseOVMF] and the other
// functions of this package report (attest.CheckError.Check). They are
// listed in docs/CHECKS.md.
const (
	// CheckInputs: Inputs names no firmware, or is inconsistent.
	CheckInputs = "measure.inputs"
	// CheckOVMF: the firmware image is malformed (size, footer table).
	CheckOVMF = "measure.ovmf"
	// CheckMetadata: the firmware's SEV metadata is missing, malformed or
	// lists a section this model does not know.
	CheckMetadata = "measure.metadata"
	// CheckKernelHashes: a kernel was given but the firmware cannot
	// measure it (no kernel-hashes section or hash table), or the table
	// does not fit its page.
	CheckKernelHashes = "measure.kernel_hashes"
	// CheckCmdline: the kernel command line cannot be passed by QEMU.
	CheckCmdline = "measure.cmdline"
	// CheckVCPUs: the number of vCPUs is out of range, or the firmware
	// gives no reset address for the application processors.
	CheckVCPUs = "measure.vcpus"
	// CheckVCPUType: the vCPU model or CPUID signature is unknown,
	// missing or contradictory.
	CheckVCPUType = "measure.vcpu_type"
	// CheckVMM: an unknown VMM type.
	CheckVMM = "measure.vmm"
	// CheckGuestFeatures: SEV_FEATURES without the SNP-active bit.
	CheckGuestFeatures = "measure.guest_features"
)
