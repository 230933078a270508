// Command atls works with attested TLS endpoints and certificates for AMD
// SEV-SNP confidential VMs.
//
// Usage:
//
//	atls <command> [flags] [arguments]
//
// Commands:
//
//	serve    run an attested HTTPS or HTTP/3 server (in a confidential VM, or simulated)
//	get      fetch a URL from an attested server, verifying its evidence
//	verify   verify an attested certificate or endpoint against a policy
//	inspect  decode the evidence of a certificate or endpoint, without verifying it
//	certgen  write an attested certificate and private key
//	measure  compute the launch measurement of a VM image
//	idblock  sign an ID block for a launch measurement (files for QEMU)
//	policy   write a policy: "policy init", "policy from-cert", "policy from-launch"
//	roots    print the AMD roots in use: "roots export"
//	seal     encrypt a file under a key only this guest's secure processor derives
//	unseal   decrypt a file sealed by 'atls seal' on this guest
//	demo     attested server and verifying client on loopback, with the simulator
//	version  print the version
//	help     show the help of a command
//
// Run "atls help <command>" or "atls <command> -h" for a command's flags
// and examples. "atls serve --quic" and "atls get --quic" speak HTTP/3
// over QUIC instead of HTTPS over TCP.
//
// Exit codes:
//
//	0  success
//	1  failure (I/O, network, a handshake the peer refused, an HTTP error status)
//	2  usage or configuration error (flags, arguments, policy or roots file)
//	3  not attested: the certificate or peer carries no attestation evidence
//	4  verification failed: evidence malformed, not authentic, or not bound
//	   to this certificate, nonce, role or time
//	5  policy failed: authentic evidence that the policy does not accept
//
// The simulator (--simulate) keeps a simulated AMD key hierarchy and the
// identity of a simulated VM in the user's configuration directory
// (atls/sim, or --sim-dir), so that separate runs agree on them.
// Everything it produces is labelled SIMULATED.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/google/logger"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1 // the command ran and failed (I/O, handshake...)
	exitUsage       = 2 // bad flags or arguments
	exitNotAttested = 3 // the peer or certificate carries no evidence
	exitVerify      = 4 // the evidence is not authentic or not bound
	exitPolicy      = 5 // authentic evidence that the policy refuses
)

const version = "0.1.0"

// exitCodesHelp is the exit code table shown by "atls help".
const exitCodesHelp = `Exit codes:
  0  success
  1  failure (I/O, network, a handshake the peer refused, an HTTP error status)
  2  usage or configuration error (flags, arguments, policy or roots file)
  3  not attested: the certificate or peer carries no attestation evidence
  4  verification failed: evidence malformed, not authentic, or not bound
     to this certificate, nonce, role or time
  5  policy failed: authentic evidence that the policy does not accept
`

// env is what a command runs with.
type env struct {
	ctx            context.Context
	stdout, stderr io.Writer
	// listening, when set, is called by serve with the address it bound
	// (tests listen on port 0).
	listening func(net.Addr)
}

type command struct {
	name    string
	summary string
	run     func(e *env, args []string) int
}

func commands() []command {
	return []command{
		{"serve", "run an attested HTTPS or HTTP/3 server (in a confidential VM, or simulated)", runServe},
		{"get", "fetch a URL from an attested server, verifying its evidence", runGet},
		{"verify", "verify an attested certificate or endpoint against a policy", runVerify},
		{"inspect", "decode the evidence of a certificate or endpoint, without verifying it", runInspect},
		{"certgen", "write an attested certificate and private key", runCertgen},
		{"measure", "compute the launch measurement of a VM image", runMeasure},
		{"idblock", "sign an ID block for a launch measurement (files for QEMU)", runIDBlock},
		{"policy", `write a policy: "policy init", "policy from-cert", "policy from-launch"`, runPolicy},
		{"roots", `print the AMD roots in use: "roots export"`, runRoots},
		{"seal", "encrypt a file under a key only this guest's secure processor derives", runSeal},
		{"unseal", "decrypt a file sealed by 'atls seal' on this guest", runUnseal},
		{"demo", "attested server and verifying client on loopback, with the simulator", func(e *env, args []string) int {
			return runDemo(args, e.stdout, e.stderr)
		}},
		{"version", "print the version", runVersion},
		{"help", "show the help of a command", runHelp},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

var initLogger sync.Once

func run(args []string, stdout, stderr io.Writer) int {
	return runEnv(&env{ctx: context.Background(), stdout: stdout, stderr: stderr}, args)
}

func runEnv(e *env, args []string) int {
	// go-sev-guest logs through github.com/google/logger, which prints a
	// warning to stderr when used before Init. Route it nowhere: this
	// command reports errors itself. (go-sev-guest also registers flags
	// on flag.CommandLine; this command never parses or prints that set,
	// so they do not appear in its help.)
	initLogger.Do(func() { logger.Init("atls", false, false, io.Discard) })

	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(e.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "atls: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "atls: attested TLS for AMD SEV-SNP confidential VMs")
	fmt.Fprintln(w, "\nUsage:\n  atls <command> [flags] [arguments]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'atls help <command>' or 'atls <command> -h' for a command's flags and examples.")
	fmt.Fprintln(w, "\nQuick start, on one machine with the simulator (for HTTP/3, add --quic to serve and get):")
	fmt.Fprintln(w, "  atls serve --simulate --addr 127.0.0.1:8443 &")
	fmt.Fprintln(w, "  atls roots export --simulate > sim-roots.pem")
	fmt.Fprintln(w, "  atls policy init --simulate > policy.json")
	fmt.Fprintln(w, "  atls get --policy policy.json --roots sim-roots.pem --show-attestation https://127.0.0.1:8443/")
	fmt.Fprintln(w)
	fmt.Fprint(w, exitCodesHelp)
}

func runVersion(e *env, args []string) int {
	spec := &cmdSpec{name: "version", synopsis: []string{"version"}, summary: "Print the version of atls.", examples: []string{"atls version"}}
	fs := newFlags(e, spec)
	if _, code := parseArgs(e, fs, spec, args, 0, 0); code >= 0 {
		return code
	}
	fmt.Fprintln(e.stdout, "atls", version)
	return exitOK
}

func runHelp(e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stdout)
		return exitOK
	}
	if args[0] == "help" {
		fmt.Fprintln(e.stdout, "Usage: atls help [command [subcommand]]\n\nShows the list of commands, or the help of one command.\n\nExample:\n  atls help verify")
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(e, append(args[1:], "-h"))
		}
	}
	fmt.Fprintf(e.stderr, "atls help: unknown command %q\n", args[0])
	return exitUsage
}
