package snp

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
)

// SetPolicy, SetRoots and SetCRLs change what the next verification
// decides, even with the VCEK chain result cached; invalid replacements
// are refused and change nothing; each change moves Generation.
func TestVerifierSetters(t *testing.T) {
	ctx := context.Background()
	milan, a, r := crlSetup(t)
	genoa := testSimChain(t, "Genoa")
	now := time.Now()
	day := 24 * time.Hour
	revoking := vtCRL(t, milan, now.Add(-day), now.Add(day), milan.ASK.SerialNumber)

	v, err := NewVerifier(VerifierOptions{Roots: milan.Roots(), Policy: vtPolicy()})
	require.NoError(t, err)
	var g attest.Verifier = v
	_, ok := g.(attest.GenerationVerifier)
	require.True(t, ok)
	verify := func() error {
		_, err := v.VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
		return err
	}
	require.NoError(t, verify())
	gen := v.Generation()

	// Policy: another measurement refuses, the old one accepts again.
	other := vtPolicy()
	other.Measurements = []attest.HexBytes{make(attest.HexBytes, 48)}
	other.Measurements[0][0] = 1
	require.NoError(t, v.SetPolicy(other))
	require.Greater(t, v.Generation(), gen)
	requireCheck(t, verify(), attest.ErrPolicy, "policy.measurement")
	require.Equal(t, other.Measurements, v.Policy().Measurements)
	other.Measurements[0][0] = 2 // the verifier holds its own copy
	requireCheck(t, verify(), attest.ErrPolicy, "policy.measurement")
	require.NoError(t, v.SetPolicy(vtPolicy()))
	require.NoError(t, verify())

	// Invalid replacements change nothing.
	gen = v.Generation()
	requireCheck(t, v.SetPolicy(NewPolicy()), attest.ErrConfig, "policy.config")
	requireCheck(t, v.SetPolicy(nil), attest.ErrConfig, "snp.config")
	requireCheck(t, v.SetRoots(&Roots{}), attest.ErrConfig, "snp.config")
	requireCheck(t, v.SetCRLs(map[string][]byte{"Milan": []byte("not a CRL")}), attest.ErrConfig, "snp.config")
	require.Equal(t, gen, v.Generation())
	require.NoError(t, verify())

	// CRLs: a revoking one refuses although the chain result is cached.
	require.NoError(t, v.SetCRLs(map[string][]byte{"Milan": revoking}))
	requireCheck(t, verify(), attest.ErrVerification, "snp.revocation")
	require.NoError(t, v.SetCRLs(nil))
	require.NoError(t, verify())

	// Roots: other roots refuse the chain although it was cached.
	require.NoError(t, v.SetRoots(genoa.Roots()))
	requireCheck(t, verify(), attest.ErrVerification, "snp.vcek.chain")
	require.NoError(t, v.SetRoots(milan.Roots()))
	require.NoError(t, verify())
}
