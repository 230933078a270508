package measure

import "encoding/binary"

// bspEIP is where the bootstrap processor starts: the x86 reset vector.
const bspEIP = 0xffff_fff0

// Offsets in the VMSA (AMD64 APM vol. 2, table B-4, "VMSA layout, state
// save area for SEV-ES").
const (
	vmsaES, vmsaCS, vmsaSS, vmsaDS, vmsaFS, vmsaGS = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50
	vmsaGDTR, vmsaLDTR, vmsaIDTR, vmsaTR           = 0x60, 0x70, 0x80, 0x90
	vmsaEFER                                       = 0xd0
	vmsaCR4, vmsaCR0, vmsaDR7, vmsaDR6             = 0x148, 0x158, 0x160, 0x168
	vmsaRFLAGS, vmsaRIP                            = 0x170, 0x178
	vmsaGPAT                                       = 0x268
	vmsaRDX                                        = 0x310
	vmsaSEVFeatures                                = 0x3b0
	vmsaXCR0                                       = 0x3e8
	vmsaMXCSR                                      = 0x408
	vmsaX87FCW                                     = 0x410
)

// vmsaRegs are the initial register values that differ between VMMs.
type vmsaRegs struct {
	csAttrib, ssAttrib, trAttrib uint16
	gPAT                         uint64
	rdx                          uint64
	mxcsr                        uint32
	x87FCW                       uint16
}

// defaultGPAT is the reset value of the PAT MSR (AMD64 APM vol. 2, A.3).
const defaultGPAT = 0x0007_0406_0007_0406

// regs returns the register values vmm puts in the VMSA of a vCPU
// starting at eip.
func (vmm VMM) regs(eip uint32, vcpuSig uint32, legacyEC2RDX bool) vmsaRegs {
	switch vmm {
	case EC2:
		r := vmsaRegs{csAttrib: 0x9b, ssAttrib: 0x92, trAttrib: 0x83, gPAT: defaultGPAT, rdx: 0x600}
		if eip == bspEIP {
			r.csAttrib = 0x9a
		}
		if legacyEC2RDX {
			r.rdx = 0
		}
		return r
	case GCE:
		return vmsaRegs{csAttrib: 0x9b, ssAttrib: 0x93, trAttrib: 0x8b, gPAT: 0x0007_0106, rdx: 0x600}
	default:
		return vmsaRegs{csAttrib: 0x9b, ssAttrib: 0x93, trAttrib: 0x8b, gPAT: defaultGPAT, rdx: uint64(vcpuSig), mxcsr: 0x1f80, x87FCW: 0x37f}
	}
}

// vmsaPage returns the VMSA page of a vCPU starting at eip in real mode
// (CS base eip&0xffff0000, IP eip&0xffff), as KVM sets it up at reset.
func vmsaPage(eip uint32, sevFeatures uint64, r vmsaRegs) *[PageSize]byte {
	var p [PageSize]byte
	le := binary.LittleEndian
	seg := func(off int, selector, attrib uint16, limit uint32, base uint64) {
		le.PutUint16(p[off:], selector)
		le.PutUint16(p[off+2:], attrib)
		le.PutUint32(p[off+4:], limit)
		le.PutUint64(p[off+8:], base)
	}
	for _, off := range []int{vmsaES, vmsaDS, vmsaFS, vmsaGS} {
		seg(off, 0, 0x93, 0xffff, 0)
	}
	seg(vmsaCS, 0xf000, r.csAttrib, 0xffff, uint64(eip&0xffff_0000))
	seg(vmsaSS, 0, r.ssAttrib, 0xffff, 0)
	seg(vmsaGDTR, 0, 0, 0xffff, 0)
	seg(vmsaIDTR, 0, 0, 0xffff, 0)
	seg(vmsaLDTR, 0, 0x82, 0xffff, 0)
	seg(vmsaTR, 0, r.trAttrib, 0xffff, 0)
	le.PutUint64(p[vmsaEFER:], 0x1000) // SVME
	le.PutUint64(p[vmsaCR4:], 0x40)    // MCE
	le.PutUint64(p[vmsaCR0:], 0x10)    // ET
	le.PutUint64(p[vmsaDR7:], 0x400)
	le.PutUint64(p[vmsaDR6:], 0xffff_0ff0)
	le.PutUint64(p[vmsaRFLAGS:], 0x2)
	le.PutUint64(p[vmsaRIP:], uint64(eip&0xffff))
	le.PutUint64(p[vmsaGPAT:], r.gPAT)
	le.PutUint64(p[vmsaRDX:], r.rdx)
	le.PutUint64(p[vmsaSEVFeatures:], sevFeatures)
	le.PutUint64(p[vmsaXCR0:], 0x1)
	le.PutUint32(p[vmsaMXCSR:], r.mxcsr)
	le.PutUint16(p[vmsaX87FCW:], r.x87FCW)
	return &p
}
