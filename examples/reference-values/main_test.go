package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		// virtee/sev-snp-measure-go's expected digests of the two builds.
		"measurement of image A: 4c6e33087d08fa770259484dddbef367086a15c3e2cf10038dc97229d39c942671c2e22b300178f8de594a3f2fa59303",
		"measurement of image B: c2c84b9364fc9f0f54b04534768c860c6e0e386ad98b96e8b98eca46ac8971d05c531ba48373f054c880cfd1f4a0a84e",
		"refuses to launch image B with A's ID block: check idblock.measurement",
		"VM image A with the signed ID block: ACCEPTED (SIMULATED), measurement 4c6e33087d08fa77…",
		"guest SVN 2",
		"VM image B: REFUSED, check policy.measurement",
		"VM image A with an ID block signed by another key: REFUSED, check policy.id_key",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	// The accepted VM reports the digest of the owner's ID key.
	_, rest, _ := strings.Cut(s, "ID key digest ")
	if len(rest) < 96 || !strings.Contains(s, "ID key "+rest[:16]+"…") {
		t.Errorf("the accepted VM does not report the owner's ID key digest:\n%s", s)
	}
	if strings.Count(s, "ACCEPTED") != 1 {
		t.Errorf("want exactly one VM accepted:\n%s", s)
	}
	if strings.Contains(s, "Logging before logger.Init") {
		t.Errorf("go-sev-guest logged:\n%s", s)
	}
}
