package snp_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"fmt"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// A policy is JSON, read strictly: fields left out take NewPolicy's
// defaults, and a misspelt field is an error rather than a check silently
// skipped.
func ExampleParsePolicy() {
	policy, err := snp.ParsePolicy([]byte(`{
		"measurements": ["4d4541000000000000000000000000000000000000000000000000000000000000000000000000000000000000000053"],
		"minimum_guest_svn": 2
	}`))
	if err != nil {
		panic(err)
	}
	fmt.Println("measurements:", len(policy.Measurements))
	fmt.Println("minimum guest SVN:", policy.MinimumGuestSVN)
	fmt.Println("allowed VMPLs (default):", policy.AllowedVMPLs)
	fmt.Println("allow debug (default):", policy.AllowDebug)

	_, err = snp.ParsePolicy([]byte(`{"measurement": ["4d45"]}`))
	fmt.Println("typo:", attest.FailedCheck(err))
	_, err = snp.ParsePolicy([]byte(`{"allow_debug": false}`))
	fmt.Println("pins nothing:", attest.FailedCheck(err))
	// Output:
	// measurements: 1
	// minimum guest SVN: 2
	// allowed VMPLs (default): [0]
	// allow debug (default): false
	// typo: policy.parse
	// pins nothing: policy.config
}

// A verifier trusts pinned AMD roots and accepts reports that its policy
// accepts and that carry the expected REPORT_DATA. Here the simulator
// stands in for the hardware, and its simulated roots are trusted
// explicitly; on real hardware use snp.AMDRoots().
func ExampleNewVerifier() {
	ctx := context.Background()
	chain, err := snp.NewSimChain("Milan") // RSA-4096: takes a moment
	if err != nil {
		panic(err)
	}
	image := sha512.Sum384([]byte("my guest image"))
	vm, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: image})
	if err != nil {
		panic(err)
	}

	policy := snp.NewPolicy()
	policy.Measurements = []attest.HexBytes{image[:]}
	verifier, err := snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: policy})
	if err != nil {
		panic(err)
	}

	// The attester binds 64 bytes of report data into a signed report;
	// the verifier is told which 64 bytes to expect.
	reportData := sha512.Sum512([]byte("what the report vouches for"))
	evidence, err := vm.Attest(ctx, reportData)
	if err != nil {
		panic(err)
	}
	claims, err := verifier.Verify(ctx, evidence, reportData)
	if err != nil {
		panic(err)
	}
	fmt.Println("platform:", claims.Platform)
	fmt.Println("simulated:", claims.Simulated)
	fmt.Println("measurement matches:", bytes.Equal(claims.SNP.Measurement, image[:]))

	// The same evidence, expected to vouch for something else.
	other := sha512.Sum512([]byte("something else"))
	_, err = verifier.Verify(ctx, evidence, other)
	fmt.Println("other report data:", attest.FailedCheck(err))
	// Output:
	// platform: amd-sev-snp
	// simulated: true
	// measurement matches: true
	// other report data: snp.report_data
}
