// Package measure computes the launch digest of an AMD SEV-SNP guest: the
// MEASUREMENT field of its attestation reports, from the inputs the guest
// owner controls (firmware image, kernel, initrd, command line, vCPUs), so
// that a policy can pin a reference value computed at build time instead of
// one read from a running VM.
//
// The package is pure: it talks to no device and no network. [SNP] replays
// the secure processor's SNP_LAUNCH_UPDATE chain (SEV-SNP ABI specification,
// AMD publication 56860, PAGE_INFO structure): the launch digest starts as
// 48 zero bytes and each 4 KiB page the hypervisor adds replaces it with
// SHA-384 over a 0x70-byte PAGE_INFO record (current digest, SHA-384 of the
// page contents, page type, guest physical address). The pages, in order:
//
//  1. every page of the OVMF firmware, which ends at 4 GiB;
//  2. the sections its SEV metadata lists: zero pages, the secrets page, the
//     CPUID page, and the kernel-hashes page that QEMU fills with the SHA-256
//     digests of the kernel, initrd and command line of a direct boot;
//  3. one VMSA page (initial register state) per vCPU.
//
// # Traps
//
//   - The CPUID signature of the vCPU model (QEMU's -cpu) is in every VMSA:
//     the same image on EPYC-v4 and EPYC-Milan vCPUs has two digests.
//   - SEV_FEATURES (the guest features the hypervisor enables, such as
//     DebugSwap) are in every VMSA too; recent hosts enable more than 0x1.
//   - QEMU hashes the kernel command line with its trailing NUL byte; an
//     absent command line is hashed as the single byte 0x00.
//   - EC2 and GCE set up the initial registers differently from QEMU; EC2
//     also measures the CPUID page after every other section. The RDX
//     value of the EC2 VMSA changed in the reference tools (see
//     [Inputs.LegacyEC2RDX]).
//   - A kernel is measured only by firmware with a kernel-hashes section
//     (OVMF's AmdSevX64 build); with other firmware, the kernel, initrd and
//     command line are not measured at all, and [SNP] refuses the inputs
//     rather than return a digest that ignores them.
//
// Every refusal is an *attest.CheckError of kind attest.ErrConfig (unusable
// inputs) or attest.ErrUnsupported (inputs this model cannot measure),
// naming one of the Check* constants.
package measure
