package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
)

// policy from-cert takes HOST:PORT (and an https:// URL) like verify and
// inspect: the policy it writes pins the server's report and accepts it.
func TestPolicyFromCertEndpoint(t *testing.T) {
	s := newSetup(t)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	// A nonce-mode server without static fallback: only a client that
	// sends a nonce gets a certificate.
	base := startAttested(t, s, nil, atls.ServerOptions{}, handler, false)
	addr := strings.TrimPrefix(base, "https://")

	out := filepath.Join(t.TempDir(), "policy.json")
	r := mustRun(t, exitOK, "policy", "from-cert", "--out", out, addr)
	require.Contains(t, r.stderr, "wrote a policy pinning the report of "+addr)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Contains(t, string(data), `"measurements"`)
	mustRun(t, exitOK, "verify", "--policy", out, "--roots", s.roots, addr)

	mustRun(t, exitOK, "policy", "from-cert", base+"/")
	mustRun(t, exitUsage, "policy", "from-cert", "no-such-file-or-port")
}
