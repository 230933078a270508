package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/confidential-go/atls/atls/attest"
)

// cmdSpec is the help of a command.
type cmdSpec struct {
	name     string   // "verify", "policy init"
	synopsis []string // usage lines, without the leading "atls "
	summary  string   // a paragraph (may have several lines)
	examples []string // "# comment" lines and commands
	exits    string   // exit codes specific to the command, if any
}

// newFlags returns a FlagSet for spec that reports errors instead of
// exiting and never prints by itself: parseArgs prints.
func newFlags(e *env, spec *cmdSpec) *flag.FlagSet {
	fs := flag.NewFlagSet("atls "+spec.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseArgs parses args, flags and positional arguments in any order
// ("--" ends the flags), and checks the number of positional arguments
// (maxPos < 0: no limit). It returns the positional arguments, and an exit
// code >= 0 when the command must end now: after -h (help on stdout) or
// a usage error (on stderr).
func parseArgs(e *env, fs *flag.FlagSet, spec *cmdSpec, args []string, minPos, maxPos int) ([]string, int) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			printHelp(e.stdout, fs, spec)
			return nil, exitOK
		}
		if err != nil {
			return nil, usageFail(e, spec, "%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < minPos:
		return nil, usageFail(e, spec, "missing arguments")
	case maxPos >= 0 && len(pos) > maxPos:
		return nil, usageFail(e, spec, "unexpected arguments %q", pos[maxPos:])
	}
	return pos, -1
}

// usageFail prints a usage error and returns exitUsage.
func usageFail(e *env, spec *cmdSpec, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "atls %s: %s\n", spec.name, fmt.Sprintf(format, args...))
	for i, s := range spec.synopsis {
		if i == 0 {
			fmt.Fprintf(e.stderr, "Usage: atls %s\n", s)
		} else {
			fmt.Fprintf(e.stderr, "       atls %s\n", s)
		}
	}
	fmt.Fprintf(e.stderr, "Run 'atls %s -h' for help.\n", spec.name)
	return exitUsage
}

// printHelp writes the help of a command: usage, summary, flags (with
// the double dash, which the flag package accepts like the single one),
// examples and exit codes.
func printHelp(w io.Writer, fs *flag.FlagSet, spec *cmdSpec) {
	fmt.Fprintln(w, "Usage:")
	for _, s := range spec.synopsis {
		fmt.Fprintf(w, "  atls %s\n", s)
	}
	if spec.summary != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(spec.summary, "\n"))
	}
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(w, "\nFlags:")
		printFlags(w, fs)
	}
	if len(spec.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, ex := range spec.examples {
			if ex == "" {
				fmt.Fprintln(w)
				continue
			}
			fmt.Fprintf(w, "  %s\n", ex)
		}
	}
	if spec.exits != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(spec.exits, "\n"))
	}
}

// printFlags is flag.PrintDefaults with "--" (but "-v" for one-letter
// flags) and without the zero defaults.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if len(f.Name) == 1 {
			line = "  -" + f.Name
		}
		if name != "" {
			line += " " + name
		}
		fmt.Fprintln(w, line)
		usage = strings.ReplaceAll(usage, "\n", "\n        ")
		fmt.Fprintf(w, "        %s", usage)
		switch f.DefValue {
		case "", "false", "0", "0s", "[]":
		default:
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// newFlagSet and parseFlags are the simpler interface the demo command
// uses: a FlagSet printing its help (with one example) to stderr.
func newFlagSet(name, synopsis, example string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		spec := &cmdSpec{name: name, synopsis: []string{synopsis}}
		if example != "" {
			spec.examples = []string{example}
		}
		printHelp(stderr, fs, spec)
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

// parseNonce reads a 32-byte nonce in hex.
func parseNonce(s string) (*[attest.NonceSize]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != attest.NonceSize {
		return nil, fmt.Errorf("--nonce must be %d hex digits (%d bytes)", 2*attest.NonceSize, attest.NonceSize)
	}
	var n [attest.NonceSize]byte
	copy(n[:], b)
	if n == ([attest.NonceSize]byte{}) {
		return nil, errors.New("--nonce must not be all zeros")
	}
	return &n, nil
}

// parseMeasurement reads a 48-byte launch measurement in hex.
func parseMeasurement(s string) ([48]byte, error) {
	var m [48]byte
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != len(m) {
		return m, fmt.Errorf("measurement %q: want %d hex digits (%d bytes)", s, 2*len(m), len(m))
	}
	copy(m[:], b)
	return m, nil
}

// listFlag is a repeatable flag that also splits on commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}
