package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
)

// baseSimDir holds the one simulated AMD chain of this test binary:
// making one takes seconds (RSA-4096), so tests copy it into their own
// simulator directories.
var baseSimDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "atls-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	baseSimDir = dir
	var out, errOut bytes.Buffer
	if code := run([]string{"roots", "export", "--simulate", "--sim-dir", dir}, &out, &errOut); code != 0 {
		fmt.Fprintf(os.Stderr, "creating the test chain: exit %d: %s\n", code, errOut.String())
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// simDir returns a fresh simulator directory holding the shared chain
// (and no VM yet).
func simDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(baseSimDir, simChainFile))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, simChainFile), data, 0o600))
	return dir
}

// result is the outcome of one in-process run of the command.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func atlsRun(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// mustRun runs the command and requires exit code want.
func mustRun(t *testing.T, want int, args ...string) result {
	t.Helper()
	r := atlsRun(t, args...)
	require.Equal(t, want, r.code, "atls %s\n%v", strings.Join(args, " "), r)
	return r
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers and readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// goSevGuestFlags are the flags go-sev-guest registers on
// flag.CommandLine; none may show in our help.
var goSevGuestFlags = []string{
	"sev_guest_device_path", "self_throttle_duration", "self_throttle_burst", "default_vmpl", "workaround_kds_productname",
}

func TestHelp(t *testing.T) {
	// The flags are there to leak (otherwise this test proves nothing).
	for _, f := range []string{"sev_guest_device_path", "workaround_kds_productname"} {
		require.NotNil(t, flag.CommandLine.Lookup(f), "go-sev-guest no longer registers -%s", f)
	}
	check := func(t *testing.T, text string) {
		t.Helper()
		for _, f := range goSevGuestFlags {
			require.NotContains(t, text, f)
		}
		require.NotContains(t, text, "Logging before logger.Init")
	}

	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		r := mustRun(t, exitOK, args...)
		check(t, r.stdout+r.stderr)
		for _, c := range commands() {
			require.Contains(t, r.stdout, "\n  "+c.name+" ", "help lists %s", c.name)
		}
		for _, code := range []string{"0  success", "3  not attested", "4  verification failed", "5  policy failed"} {
			require.Contains(t, r.stdout, code)
		}
	}
	r := mustRun(t, exitUsage)
	require.Contains(t, r.stderr, "Commands:")

	// Every command and subcommand has help with an example, on -h and
	// through "atls help".
	cmds := [][]string{
		{"serve"}, {"get"}, {"verify"}, {"inspect"}, {"certgen"}, {"version"},
		{"policy", "init"}, {"policy", "from-cert"}, {"roots", "export"},
	}
	for _, c := range cmds {
		name := strings.Join(c, " ")
		t.Run(name, func(t *testing.T) {
			for _, args := range [][]string{append(append([]string{}, c...), "-h"), append([]string{"help"}, c...)} {
				r := mustRun(t, exitOK, args...)
				check(t, r.stdout+r.stderr)
				require.Contains(t, r.stdout, "Usage:\n  atls "+name)
				require.Contains(t, r.stdout, "Examples:\n  ")
				require.Empty(t, r.stderr)
			}
		})
	}
	for _, group := range []string{"policy", "roots"} {
		r := mustRun(t, exitOK, group, "-h")
		check(t, r.stdout)
		require.Contains(t, r.stdout, "atls "+group+" ")
		r = mustRun(t, exitUsage, group)
		require.Contains(t, r.stderr, "missing subcommand")
	}
	// The demo prints its help on stderr.
	r = mustRun(t, exitOK, "demo", "-h")
	check(t, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "-product")

	r = mustRun(t, exitOK, "version")
	require.Equal(t, "atls "+version+"\n", r.stdout)
}

func TestUsageErrors(t *testing.T) {
	dir := simDir(t)
	for _, args := range [][]string{
		{"frobnicate"},
		{"verify"},
		{"verify", "a", "b"},
		{"verify", "--no-such-flag", "x"},
		{"verify", "--role", "server", "cert.pem"}, // not a file, not HOST:PORT
		{"verify", "--policy", "p.json", "no-such-file-and-not-host-port"}, // neither a file nor HOST:PORT
		{"get", "--policy", "p.json", "http://example.com/"},
		{"get", "--policy", "p.json", "--simulate", "https://example.com/"}, // --simulate without --attest
		{"get", "https://example.com/"},                                     // no --policy
		{"inspect"},
		{"certgen", "--simulate", "--sim-dir", dir},
		{"certgen", "--simulate", "--sim-dir", dir, "--out-cert", "c", "--out-key", "k", "--nonce", "00"},
		{"certgen", "--measurement", "00", "--out-cert", "c", "--out-key", "k"},
		{"serve", "--measurement", strings.Repeat("ab", 48)},
		{"serve", "--simulate", "--sim-dir", dir, "--mode", "sometimes"},
		{"serve", "--simulate", "--sim-dir", dir, "--policy", "p.json"}, // --policy without --mutual
		{"serve", "--simulate", "--sim-dir", dir, "--mutual"},           // --mutual without --policy
		{"policy"},
		{"policy", "frob"},
		{"policy", "init", "--measurement", "abc"},
		{"policy", "from-cert"},
		{"roots", "export", "extra"},
	} {
		r := atlsRun(t, args...)
		require.Equal(t, exitUsage, r.code, "atls %s\n%v", strings.Join(args, " "), r)
		require.NotEmpty(t, r.stderr)
		require.Empty(t, r.stdout)
	}
}

func TestRootsExport(t *testing.T) {
	dir := simDir(t)
	r := mustRun(t, exitOK, "roots", "export", "--simulate", "--sim-dir", dir)
	data, err := os.ReadFile(filepath.Join(dir, simChainFile))
	require.NoError(t, err)
	store := &simStore{dir: dir}
	chain, err := store.existingChain()
	require.NoError(t, err)
	require.Equal(t, string(chain.Roots().PEM()), r.stdout)
	require.NotContains(t, r.stdout, "PRIVATE KEY")
	require.Contains(t, string(data), "PRIVATE KEY")
	require.Contains(t, r.stderr, "SIMULATED")

	// The exported roots load, as simulated ones.
	rootsFile := filepath.Join(t.TempDir(), "roots.pem")
	mustRun(t, exitOK, "roots", "export", "--simulate", "--sim-dir", dir, "--out", rootsFile)
	roots, err := loadRoots(rootsFile)
	require.NoError(t, err)
	require.True(t, roots.Simulated)
	require.Equal(t, []string{"Milan"}, roots.ProductLines())
	mustRun(t, exitFailure, "roots", "export", "--simulate", "--sim-dir", dir, "--out", rootsFile) // exists

	// AMD's roots, which are not simulated.
	r = mustRun(t, exitOK, "roots", "export")
	amdFile := filepath.Join(t.TempDir(), "amd.pem")
	require.NoError(t, os.WriteFile(amdFile, []byte(r.stdout), 0o644))
	roots, err = loadRoots(amdFile)
	require.NoError(t, err)
	require.False(t, roots.Simulated)
	require.Equal(t, []string{"Genoa", "Milan", "Turin"}, roots.ProductLines())
}

func TestSimulatorPersistence(t *testing.T) {
	// A fresh directory: the VM identity is created with private modes.
	dir := filepath.Join(t.TempDir(), "new", "sim")
	p1 := mustRun(t, exitOK, "policy", "init", "--simulate", "--sim-dir", dir)
	require.Contains(t, p1.stderr, "created a simulated VM")
	p2 := mustRun(t, exitOK, "policy", "init", "--simulate", "--sim-dir", dir)
	require.NotContains(t, p2.stderr, "created a simulated VM")
	require.Equal(t, p1.stdout, p2.stdout, "the same simulated VM in every run")
	st, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	st, err = os.Stat(filepath.Join(dir, simVMFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// Concurrent first uses agree on one identity.
	dir = t.TempDir()
	var wg sync.WaitGroup
	ms := make([]string, 8)
	for i := range ms {
		wg.Go(func() {
			vm, err := (&simStore{dir: dir, stderr: &lockedBuffer{}}).vm()
			if err == nil {
				ms[i] = vm.Measurement.String()
			}
		})
	}
	wg.Wait()
	for _, m := range ms {
		require.Len(t, m, 96)
		require.Equal(t, ms[0], m)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary files left")

	// A damaged file is reported, not replaced.
	require.NoError(t, os.WriteFile(filepath.Join(dir, simVMFile), []byte("{}"), 0o600))
	r := mustRun(t, exitFailure, "policy", "init", "--simulate", "--sim-dir", dir)
	require.Contains(t, r.stderr, simVMFile)
}

func TestExitCodeClasses(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{&atls.CheckError{Kind: atls.ErrNotAttested, Check: "x"}, exitNotAttested},
		{&atls.CheckError{Kind: atls.ErrMalformedEvidence, Check: "x"}, exitVerify},
		{&atls.CheckError{Kind: atls.ErrVerification, Check: "x"}, exitVerify},
		{&atls.CheckError{Kind: atls.ErrBinding, Check: "x"}, exitVerify},
		{&atls.CheckError{Kind: atls.ErrUnsupported, Check: "x"}, exitVerify},
		{&atls.CheckError{Kind: atls.ErrPolicy, Check: "x"}, exitPolicy},
		{&atls.CheckError{Kind: atls.ErrConfig, Check: "x"}, exitUsage},
		// The outermost check decides.
		{&atls.CheckError{Kind: atls.ErrBinding, Check: "x", Err: &atls.CheckError{Kind: atls.ErrPolicy}}, exitVerify},
		{fmt.Errorf("wrapped: %w", atls.ErrPolicy), exitPolicy},
		{os.ErrNotExist, exitFailure},
	} {
		require.Equal(t, c.code, verifyExitCode(c.err), "%v", c.err)
	}
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v), "JSON: %s", s)
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo makes its own simulated chain (RSA-4096)")
	}
	r := mustRun(t, exitOK, "demo", "-sp-profile", "serial-8ms")
	require.Contains(t, r.stdout, "Done: three attested connections accepted (TCP one-way, TCP mutual, QUIC mutual), one refused by policy.")
	require.Contains(t, r.stdout, "The server VM's secure processor: profile serial-8ms (8ms per report, serialized).")
	require.Regexp(t, `4 handshakes at once \(secure processor serial-8ms\): (\d[\d.]*m?s, ){3}\d[\d.]*m?s\n.*made [1-4] report\(s\) for them`, r.stdout)
}
