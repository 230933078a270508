package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestServeSPProfile runs the server with a modelled secure processor and
// checks that its reports went through the model.
func TestServeSPProfile(t *testing.T) {
	s := newSetup(t)
	srv := startServe(t, "--simulate", "--sim-dir", s.dir, "--sp-profile", "serial-8ms")
	mustRun(t, exitOK, "get", "--policy", s.policy, "--roots", s.roots, srv.url+"/")
	mustRun(t, exitOK, "get", "--policy", s.policy, "--roots", s.roots, srv.url+"/")
	require.Equal(t, exitOK, srv.stop())
	log := srv.stderr.String()
	require.Contains(t, log, `sp_profile="serial-8ms (8ms per report, serialized)"`)
	// Two nonce handshakes, each with a report of its own or a share of a
	// batch, and perhaps the static fallback certificate.
	require.Regexp(t, `simulated secure processor" profile=serial-8ms reports=[1-9]\d* failed=0 throttled=0`, log)
}

func TestServeSPProfileUsage(t *testing.T) {
	r := mustRun(t, exitUsage, "serve", "--addr", "127.0.0.1:0", "--sp-profile", "gcp")
	require.Contains(t, r.stderr, "--sp-profile")
	require.Contains(t, r.stderr, "--simulate")

	r = mustRun(t, exitUsage, "serve", "--simulate", "--sim-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--sp-profile", "aws")
	require.Contains(t, r.stderr, `"aws"`)
	require.Contains(t, r.stderr, "none, serial-8ms, gcp")

	r = mustRun(t, exitOK, "serve", "-h")
	for _, want := range []string{"--sp-profile", "none (no latency, no throttle)", "serial-8ms (8ms per report, serialized)", "gcp (8ms per report, serialized, burst 10, 1/s"} {
		require.Contains(t, r.stdout+r.stderr, want)
	}
}

func TestDemoSPProfileUsage(t *testing.T) {
	r := mustRun(t, exitUsage, "demo", "-sp-profile", "aws")
	require.Contains(t, r.stderr, "none, serial-8ms, gcp")
	r = mustRun(t, exitOK, "demo", "-h")
	require.Contains(t, r.stderr, "-sp-profile")
	require.Contains(t, r.stderr, "gcp (8ms per report")
}
