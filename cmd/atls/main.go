// Command atls works with attested TLS endpoints and certificates for AMD
// SEV-SNP confidential VMs.
//
// Usage:
//
//	atls <command> [flags]
//
// Commands:
//
//	demo     attested server and verifying client on loopback, with the simulator
//	version  print the version
//
// Run "atls <command> -h" for a command's flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

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

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"demo", "attested server and verifying client on loopback, with the simulator", runDemo},
		{"version", "print the version", func(_ []string, stdout, _ io.Writer) int {
			fmt.Fprintln(stdout, "atls", version)
			return exitOK
		}},
	}
}

func main() {
	// go-sev-guest logs through github.com/google/logger, which prints a
	// warning to stderr when used before Init. Route it nowhere: this
	// command reports errors itself. (go-sev-guest also registers flags
	// on flag.CommandLine; this command never parses that set, so they
	// do not appear in its help.)
	logger.Init("atls", false, false, io.Discard)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "atls: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "atls: attested TLS for AMD SEV-SNP confidential VMs")
	fmt.Fprintln(w, "\nUsage:\n  atls <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'atls <command> -h' for the flags of a command.")
	fmt.Fprintln(w, "\nExit codes:")
	fmt.Fprintln(w, "  0 success, 1 failure, 2 usage error, 3 not attested,")
	fmt.Fprintln(w, "  4 verification failed, 5 policy failed")
}

// newFlagSet returns a FlagSet that reports errors instead of exiting and
// prints usage with an example.
func newFlagSet(name, synopsis, example string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: atls %s\n\n", synopsis)
		if fs.NFlag() >= 0 {
			fmt.Fprintln(stderr, "Flags:")
			fs.PrintDefaults()
		}
		if example != "" {
			fmt.Fprintf(stderr, "\nExample:\n  %s\n", example)
		}
	}
	return fs
}

// parseFlags parses args; it returns the exit code to use when parsing
// ends the command (help or error), or -1 to go on.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	return -1
}
