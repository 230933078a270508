package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSealUnseal(t *testing.T) {
	dir := simDir(t)
	tmp := t.TempDir()
	in, sealed, out := filepath.Join(tmp, "secret"), filepath.Join(tmp, "secret.sealed"), filepath.Join(tmp, "secret.out")
	secret := []byte("disk key 0123456789")
	require.NoError(t, os.WriteFile(in, secret, 0o600))

	r := mustRun(t, exitOK, "seal", "--simulate", "--sim-dir", dir, "--select", "measurement,policy,tcb", "--in", in, "--out", sealed)
	require.Contains(t, r.stderr, "SIMULATED")
	blob, err := os.ReadFile(sealed)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(blob), "ATLSSEAL"))
	require.NotContains(t, string(blob), string(secret))

	// Another process (a restart): the same simulated VM unseals.
	mustRun(t, exitOK, "unseal", "--simulate", "--sim-dir", dir, "--in", sealed, "--out", out)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, secret, got)
	r = mustRun(t, exitOK, "unseal", "--simulate", "--sim-dir", dir, "--in", sealed, "--out", "-")
	require.Equal(t, string(secret), r.stdout)

	// Another image.
	r = mustRun(t, exitPolicy, "unseal", "--simulate", "--sim-dir", dir, "--measurement", strings.Repeat("ab", 48), "--in", sealed, "--out", "-")
	require.Contains(t, r.stderr, "seal.measurement")
	require.Empty(t, r.stdout)

	// Tampered.
	blob[len(blob)-1] ^= 1
	require.NoError(t, os.WriteFile(sealed, blob, 0o600))
	r = mustRun(t, exitVerify, "unseal", "--simulate", "--sim-dir", dir, "--in", sealed, "--out", "-")
	require.Contains(t, r.stderr, "seal.open")

	// Not a sealed file.
	r = mustRun(t, exitVerify, "unseal", "--simulate", "--sim-dir", dir, "--in", in, "--out", "-")
	require.Contains(t, r.stderr, "seal.format")
}

func TestSealUsage(t *testing.T) {
	dir := simDir(t)
	in := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(in, []byte("x"), 0o600))
	for _, args := range [][]string{
		{"seal", "--simulate", "--sim-dir", dir, "--in", in, "--out", "-"},                                   // no --select
		{"seal", "--simulate", "--sim-dir", dir, "--select", "measurement,colour", "--in", in, "--out", "-"}, // unknown field
		{"seal", "--simulate", "--sim-dir", dir, "--select", "measurement", "--root", "ark", "--in", in, "--out", "-"},
		{"seal", "--simulate", "--sim-dir", dir, "--select", "tcb", "--in", in, "--out", "-"}, // identifies no guest
		{"seal", "--simulate", "--sim-dir", dir, "--select", "measurement", "--in", in},       // no --out
		{"unseal", "--measurement", strings.Repeat("ab", 48), "--in", in, "--out", "-"},       // --measurement without --simulate
	} {
		r := atlsRun(t, args...)
		require.Equal(t, exitUsage, r.code, "atls %s\n%v", strings.Join(args, " "), r)
		require.Empty(t, r.stdout)
	}
}

func TestSealWithoutSEVSNP(t *testing.T) {
	if _, err := os.Stat("/dev/sev-guest"); err == nil {
		t.Skip("this machine has /dev/sev-guest")
	}
	in := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(in, []byte("x"), 0o600))
	r := atlsRun(t, "seal", "--select", "measurement", "--in", in, "--out", "-")
	require.NotEqual(t, exitOK, r.code)
	require.Contains(t, r.stderr, "--simulate")
}
