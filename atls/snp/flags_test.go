package snp_test

import (
	"flag"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	_ "github.com/confidential-go/atls/atls"
	_ "github.com/confidential-go/atls/atls/snp"
)

// TestFinding8ImportRegistersNoClientFlags: a verify-only program, which
// imports atls and atls/snp, gets none of the flags go-sev-guest's client
// package registers on flag.CommandLine at init (issue 13, finding 8).
// The hardware attester, which needs that package, lives in atls/snp/guest.
func TestFinding8ImportRegistersNoClientFlags(t *testing.T) {
	for _, name := range []string{"sev_guest_device_path", "self_throttle_duration", "self_throttle_burst", "default_vmpl"} {
		require.Nil(t, flag.CommandLine.Lookup(name), "importing atls/snp registered -%s", name)
	}
	// Whatever else is registered comes from the testing package or from
	// go-sev-guest's verify package; list it so a new one shows in review.
	flag.CommandLine.VisitAll(func(f *flag.Flag) {
		if len(f.Name) < 5 || f.Name[:5] != "test." {
			t.Logf("flag on flag.CommandLine: -%s", f.Name)
		}
	})
}

// TestFinding8NoDeviceClientDependency: package snp does not depend on
// go-sev-guest's device client, nor on the package that wraps it, at
// all, flags or not (issue 13, finding 8).
func TestFinding8NoDeviceClientDependency(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list dependencies with")
	}
	out, err := exec.Command(gobin, "list", "-deps", "github.com/confidential-go/atls/atls", "github.com/confidential-go/atls/atls/snp").Output()
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/google/go-sev-guest/abi", "the listing is of the right packages")
	for _, pkg := range []string{"github.com/google/go-sev-guest/client", "github.com/confidential-go/atls/atls/snp/guest"} {
		require.NotContains(t, deps, pkg)
	}
}
