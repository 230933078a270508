// Package guest produces SEV-SNP evidence inside a confidential VM: the
// hardware attester, which asks the AMD secure processor for attestation
// reports through Linux's configfs-tsm interface or /dev/sev-guest, and
// finds the certificate of the key that signed them.
//
//	att, err := guest.NewAttester(guest.AttesterOptions{CertCacheDir: "/var/cache/atls"})
//	srv, err := atls.NewServer(atls.ServerOptions{Attester: att})
//
// [KeyDeriver] asks the same secure processor for derived keys
// (MSG_KEY_REQ through /dev/sev-guest), which package seal uses to seal
// data to this guest.
//
// Verifying evidence is package snp's job, which a verify-only program
// (the common client) imports without this package. The simulator
// (snp.NewSimAttester) stands in for this package off SEV-SNP hardware.
//
// # Global state
//
// This package reaches the hardware through go-sev-guest's client
// package, which has global state that importing this package brings in
// and that cannot be avoided:
//
//   - At init, go-sev-guest's client package registers four flags on
//     flag.CommandLine: sev_guest_device_path, self_throttle_duration,
//     self_throttle_burst and default_vmpl. A program that defines a flag
//     of one of these names panics at start. Nothing here calls flag.Parse
//     or needs them set, and the atls command parses its own flag.FlagSet,
//     so they never show in its usage. Nor does this package read them:
//     it talks to configfs-tsm and /dev/sev-guest through its own
//     providers, so in a program that parses flag.CommandLine they change
//     nothing here (the device is always /dev/sev-guest,
//     [AttesterOptions.DeviceInterval] spaces its commands, and a nil
//     [AttesterOptions.VMPL] is the driver's default).
//   - go-sev-guest logs through github.com/google/logger, which prints
//     "Logging before logger.Init" to stderr on first use. The attester
//     avoids the go-sev-guest calls that log (CertTable.Proto,
//     GetQuoteProto) and does not call logger.Init, which would change
//     process-wide state; it logs through [AttesterOptions.Logger].
//
// Package snp (verification) imports neither go-sev-guest's client
// package nor this one. Both import go-sev-guest's verify package, which
// registers one more flag, workaround_kds_productname, which package
// snp's verifier keeps from relaxing its checks.
package guest
