package measure

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/confidential-go/atls/atls/attest"
)

// CPUSig returns the CPUID signature (CPUID Fn0000_0001_EAX) of a
// processor family, model and stepping, encoded as in AMD's CPUID
// specification (publication 25481): families above 0xf put 0xf in the
// base family and the rest in the extended family.
func CPUSig(family, model, stepping uint32) uint32 {
	famLow, famHigh := family, uint32(0)
	if family > 0xf {
		famLow, famHigh = 0xf, (family-0xf)&0xff
	}
	return famHigh<<20 | (model>>4&0xf)<<16 | famLow<<8 | (model&0xf)<<4 | stepping&0xf
}

// qemuCPUModels are the family, model and stepping of QEMU's AMD EPYC CPU
// models (target/i386/cpu.c, builtin_x86_defs); their versions (-v1,
// -v2, ...) keep them.
var qemuCPUModels = []struct {
	name                    string
	family, model, stepping uint32
}{
	{"EPYC", 23, 1, 2},
	{"EPYC-IBPB", 23, 1, 2},
	{"EPYC-Rome", 23, 49, 0},
	{"EPYC-Milan", 25, 1, 1},
	{"EPYC-Genoa", 25, 17, 0},
	{"EPYC-Turin", 26, 0, 0},
}

// VCPUSig returns the CPUID signature of a QEMU CPU model name (-cpu):
// EPYC, EPYC-Rome, EPYC-Milan, EPYC-Genoa or EPYC-Turin, optionally with a
// version suffix such as -v4. The name is matched without regard to case.
// An unknown name is an error of kind attest.ErrConfig ([CheckVCPUType]).
func VCPUSig(name string) (uint32, error) {
	base := name
	if i := strings.LastIndex(name, "-v"); i > 0 {
		if n, err := strconv.ParseUint(name[i+2:], 10, 8); err == nil && n >= 1 {
			base = name[:i]
		}
	}
	for _, m := range qemuCPUModels {
		if strings.EqualFold(base, m.name) {
			return CPUSig(m.family, m.model, m.stepping), nil
		}
	}
	return 0, attest.Fail(attest.ErrConfig, CheckVCPUType, "unknown vCPU type %q (known: %s; or give the CPUID signature)", name, knownCPUModels())
}

func knownCPUModels() string {
	names := make([]string, len(qemuCPUModels))
	for i, m := range qemuCPUModels {
		names[i] = m.name
	}
	return strings.Join(names, ", ")
}

// VMM is the virtual machine monitor that launches the guest: each sets up
// the initial vCPU registers slightly differently.
type VMM uint8

// VMM types.
const (
	// QEMU (with KVM): the VMSA carries the vCPU's CPUID signature.
	QEMU VMM = iota
	// EC2 is Amazon EC2: a fixed RDX, its own segment attributes, and the
	// CPUID page measured after every other section.
	EC2
	// GCE is Google Compute Engine: a fixed RDX, its own PAT, and the
	// firmware's pre-validated memory left unmeasured.
	GCE
)

// String returns the name ParseVMM accepts.
func (v VMM) String() string {
	switch v {
	case QEMU:
		return "qemu"
	case EC2:
		return "ec2"
	case GCE:
		return "gce"
	}
	return fmt.Sprintf("VMM(%d)", uint8(v))
}

// ParseVMM parses "qemu", "ec2" or "gce" (any case). Anything else is an
// error of kind attest.ErrConfig ([CheckVMM]).
func ParseVMM(s string) (VMM, error) {
	for _, v := range []VMM{QEMU, EC2, GCE} {
		if strings.EqualFold(s, v.String()) {
			return v, nil
		}
	}
	return 0, attest.Fail(attest.ErrConfig, CheckVMM, "unknown VMM type %q (want qemu, ec2 or gce)", s)
}
