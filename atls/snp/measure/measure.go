package measure

import (
	"github.com/confidential-go/atls/atls/attest"
)

// MaxVCPUs is the largest number of vCPUs [SNP] measures.
const MaxVCPUs = 4096

// GuestFeatureSNPActive is bit 0 of SEV_FEATURES, set in every SEV-SNP
// guest. [Inputs.GuestFeatures] 0 means this value.
const GuestFeatureSNPActive = 0x1

// Inputs are what determines the launch digest of an SEV-SNP guest.
type Inputs struct {
	// OVMF is the firmware image. When nil, Metadata and OVMFHash must
	// both be set.
	OVMF *OVMF
	// Metadata is the firmware's SEV metadata, for measuring without the
	// image (with OVMFHash); it must be nil when OVMF is set.
	Metadata *Metadata
	// OVMFHash, when set, is the digest after the firmware pages
	// ([OVMF.Hash]; sev-snp-measure's --snp-ovmf-hash): the chain starts
	// from it and the image's pages are not hashed again. Nil: hash OVMF.
	OVMFHash *[48]byte

	// Kernel holds the hashes of a direct boot (QEMU -kernel, -initrd,
	// -append), see [HashKernel]; the firmware must have a kernel-hashes
	// section. Nil: no direct boot.
	Kernel *KernelHashes

	// VCPUs is the number of vCPUs, 1 to MaxVCPUs.
	VCPUs int
	// VCPUType is the QEMU CPU model (-cpu), see [VCPUSig]; or set
	// VCPUSig. QEMU needs one of them; EC2 and GCE put a fixed value in
	// the VMSA and ignore both (a VCPUType given must still be known).
	VCPUType string
	// VCPUSig is the CPUID signature of the vCPUs (CPUID(1).EAX, see
	// [CPUSig]), when VCPUType is "". 0: not given.
	VCPUSig uint32
	// VMM is the monitor that launches the guest; the zero value is QEMU.
	VMM VMM
	// GuestFeatures is the SEV_FEATURES value the hypervisor puts in
	// every VMSA (0x1 SNP only, 0x21 with DebugSwap, ...). 0 means
	// GuestFeatureSNPActive; a value without that bit is refused.
	GuestFeatures uint64
	// LegacyEC2RDX, for EC2, puts 0 in the VMSA's RDX, as virtee/sev,
	// sev-snp-measure-go and sev-snp-measure before 2026-04 computed.
	// False: 0x600, as sev-snp-measure computes since then.
	LegacyEC2RDX bool
}

// SNP returns the launch digest (the MEASUREMENT of the guest's reports)
// of an SEV-SNP guest launched from in. It refuses inputs it cannot
// measure exactly, with an error of kind attest.ErrConfig or
// attest.ErrUnsupported naming the check (Check* constants), rather than
// return a digest the secure processor would not compute.
func SNP(in Inputs) ([48]byte, error) {
	l, err := newLaunch(&in)
	if err != nil {
		return [48]byte{}, err
	}
	l.firmware()
	if err := l.sections(); err != nil {
		return [48]byte{}, err
	}
	l.vmsas()
	return l.chain.digest, nil
}

// launch is the state of one measurement: checked inputs and the chain.
type launch struct {
	in          *Inputs
	meta        *Metadata
	vcpuSig     uint32
	sevFeatures uint64
	chain       chain
}

// newLaunch checks in and resolves its defaults.
func newLaunch(in *Inputs) (*launch, error) {
	l := &launch{in: in, sevFeatures: in.GuestFeatures}
	switch {
	case in.OVMF != nil && in.Metadata != nil:
		return nil, attest.Fail(attest.ErrConfig, CheckInputs, "give the firmware image or its metadata, not both")
	case in.OVMF != nil:
		l.meta = &in.OVMF.meta
	case in.Metadata == nil || in.OVMFHash == nil:
		return nil, attest.Fail(attest.ErrConfig, CheckInputs, "no firmware: give the image, or its metadata and its hash")
	default:
		l.meta = in.Metadata
	}
	if err := l.meta.check(); err != nil {
		return nil, err
	}
	if in.VCPUs < 1 || in.VCPUs > MaxVCPUs {
		return nil, attest.Fail(attest.ErrConfig, CheckVCPUs, "%d vCPUs: want 1 to %d", in.VCPUs, MaxVCPUs)
	}
	if in.VCPUs > 1 && l.meta.ResetEIP == 0 {
		return nil, attest.Fail(attest.ErrUnsupported, CheckVCPUs, "the firmware gives no reset address for application processors (SEV-ES reset block): only 1 vCPU can be measured")
	}
	if err := l.resolveVCPUSig(); err != nil {
		return nil, err
	}
	if in.VMM > GCE {
		return nil, attest.Fail(attest.ErrConfig, CheckVMM, "unknown VMM type %v", in.VMM)
	}
	if l.sevFeatures == 0 {
		l.sevFeatures = GuestFeatureSNPActive
	}
	if l.sevFeatures&GuestFeatureSNPActive == 0 {
		return nil, attest.Fail(attest.ErrConfig, CheckGuestFeatures, "guest features %#x lack SNPActive (bit 0): not an SEV-SNP guest", l.sevFeatures)
	}
	return l, nil
}

// resolveVCPUSig sets vcpuSig from VCPUType or VCPUSig.
func (l *launch) resolveVCPUSig() error {
	l.vcpuSig = l.in.VCPUSig
	if l.in.VCPUType != "" {
		sig, err := VCPUSig(l.in.VCPUType)
		if err != nil {
			return err
		}
		if l.in.VCPUSig != 0 && l.in.VCPUSig != sig {
			return attest.Fail(attest.ErrConfig, CheckVCPUType, "vCPU type %s has signature %#x, not the %#x given", l.in.VCPUType, sig, l.in.VCPUSig)
		}
		l.vcpuSig = sig
	}
	if l.vcpuSig == 0 && l.in.VMM == QEMU {
		return attest.Fail(attest.ErrConfig, CheckVCPUType, "QEMU puts the vCPU's CPUID signature in the VMSA: give the vCPU type or signature")
	}
	return nil
}

// firmware adds the firmware pages, or starts from their hash.
func (l *launch) firmware() {
	if l.in.OVMFHash != nil {
		l.chain.digest = *l.in.OVMFHash
		return
	}
	l.chain.addNormalPages(l.in.OVMF.GPA(), l.in.OVMF.data)
}

// sections adds the pages of the SEV metadata sections, in order.
func (l *launch) sections() error {
	hasKernelSection := false
	for _, s := range l.meta.Sections {
		gpa := uint64(s.GPA)
		switch s.Type {
		case SectionSNPSecMem:
			if l.in.VMM == GCE {
				l.chain.addEmptyPages(pageUnmeasured, gpa, s.Size)
			} else {
				l.chain.addEmptyPages(pageZero, gpa, s.Size)
			}
		case SectionSNPSecrets:
			l.chain.addEmptyPages(pageSecrets, gpa, s.Size)
		case SectionCPUID:
			if l.in.VMM != EC2 {
				l.chain.addEmptyPages(pageCPUID, gpa, s.Size)
			}
		case SectionSVSMCAA:
			l.chain.addEmptyPages(pageZero, gpa, s.Size)
		case SectionKernelHashes:
			if l.in.Kernel == nil {
				l.chain.addEmptyPages(pageZero, gpa, s.Size)
				break
			}
			if hasKernelSection {
				return attest.Fail(attest.ErrUnsupported, CheckKernelHashes, "the firmware has more than one kernel-hashes section")
			}
			page, err := l.in.Kernel.hashesPage(l.meta, s)
			if err != nil {
				return err
			}
			l.chain.addNormalPages(gpa, page)
		}
		hasKernelSection = hasKernelSection || s.Type == SectionKernelHashes
	}
	if l.in.Kernel != nil && !hasKernelSection {
		return attest.Fail(attest.ErrUnsupported, CheckKernelHashes, "a kernel was given but the firmware has no kernel-hashes section: it would boot the kernel without measuring it, initrd or command line (use a firmware built for direct boot, such as OVMF AmdSevX64)")
	}
	if l.in.VMM == EC2 {
		for _, s := range l.meta.Sections {
			if s.Type == SectionCPUID {
				l.chain.addEmptyPages(pageCPUID, uint64(s.GPA), s.Size)
			}
		}
	}
	return nil
}

// vmsas adds one VMSA page per vCPU: the bootstrap processor starts at
// the reset vector, the others at the firmware's reset address.
func (l *launch) vmsas() {
	bsp := vmsaPage(bspEIP, l.sevFeatures, l.in.VMM.regs(bspEIP, l.vcpuSig, l.in.LegacyEC2RDX))
	l.chain.addVMSA(bsp)
	if l.in.VCPUs == 1 {
		return
	}
	eip := l.meta.ResetEIP
	ap := vmsaPage(eip, l.sevFeatures, l.in.VMM.regs(eip, l.vcpuSig, l.in.LegacyEC2RDX))
	for range l.in.VCPUs - 1 {
		l.chain.addVMSA(ap)
	}
}
