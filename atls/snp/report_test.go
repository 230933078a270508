package snp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
)

// Every reserved byte of each known version must be zero, and only the
// known versions are read.
func TestReportVersionLayouts(t *testing.T) {
	ctx := context.Background()
	chain := testSimChain(t, "Genoa")
	v := vtVerifier(t, chain.Roots(), vtPolicy())
	require.Equal(t, []uint32{2, 3, 5}, KnownReportVersions())
	require.Equal(t, KnownReportVersions(), DefaultReportVersions())

	for _, version := range KnownReportVersions() {
		a := vtAttester(t, chain, SimOptions{ReportVersion: version})
		layout, ok := layoutOf(version)
		require.True(t, ok)
		genuine := resign(t, a, func([]byte) {})
		_, err := v.VerifyReport(ctx, genuine, a.VCEK(), nil, vtReportData)
		require.NoError(t, err, "version %d", version)
		for _, rg := range layout.reserved {
			for _, off := range []int{rg.lo, rg.hi - 1} {
				t.Run(fmt.Sprintf("v%d/0x%x", version, off), func(t *testing.T) {
					// The signature area is not signed: change it after signing.
					r := bytes.Clone(genuine)
					r[off] = 0x01
					if off < 0x2A0 {
						r = resign(t, a, func(r []byte) { r[off] = 0x01 })
					}
					_, err := v.VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
					requireCheck(t, err, attest.ErrMalformedEvidence, "snp.report.format")
				})
			}
		}
		// The mitigation vectors are fields from version 5 on, reserved
		// before.
		r := resign(t, a, func(r []byte) { r[0x1F8] = 0x01; r[0x200] = 0x02 })
		c, err := v.VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
		if version >= ReportVersion5 {
			require.NoError(t, err)
			require.Equal(t, uint64(1), c.SNP.LaunchMitVector)
			require.Equal(t, uint64(2), c.SNP.CurrentMitVector)
		} else {
			requireCheck(t, err, attest.ErrMalformedEvidence, "snp.report.format")
		}
	}

	// Unknown versions, 4 (unpublished) included, are refused even when
	// correctly signed, before anything else is read.
	a := vtAttester(t, chain, SimOptions{ReportVersion: 5})
	for _, version := range []uint32{0, 1, 4, 6, 7, 0xffffffff} {
		r := resign(t, a, func(r []byte) { binary.LittleEndian.PutUint32(r, version) })
		_, err := v.VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
		requireCheck(t, err, attest.ErrUnsupported, "snp.report.version")
	}
	// ... and a policy cannot allow them.
	for _, version := range []uint32{1, 4, 6} {
		p := vtPolicy()
		p.AllowedReportVersions = []uint32{3, version}
		requireCheck(t, p.Validate(), attest.ErrConfig, "policy.config")
	}
}

// realV5 is a version 5 report from a Genoa part (project-oak's
// genoa_oc_report.bin, see testdata/README.md), whose launch and current
// mitigation vectors are both 0x1.
func realV5(t *testing.T) realVector {
	t.Helper()
	dir := filepath.Join("testdata", "oak")
	report, err := os.ReadFile(filepath.Join(dir, "genoa_oc_report.bin"))
	require.NoError(t, err)
	cert, err := os.ReadFile(filepath.Join(dir, "genoa_oc_vcek.der"))
	require.NoError(t, err)
	v := realVector{name: "oak/genoa_oc_report.bin", report: report, cert: loadCert(t, cert)}
	v.now = midValidity(t, v.cert)
	return v
}

// The policy's mitigation-vector minimums work on a real version 5
// report: accepted when the report has the bits, refused when the policy
// demands one it lacks.
func TestMitigationVectorsRealV5(t *testing.T) {
	ctx := context.Background()
	rv := realV5(t)
	require.Equal(t, uint32(5), binary.LittleEndian.Uint32(rv.report))
	verify := func(launch, current uint64) (*attest.Claims, error) {
		p := rv.policy(t)
		p.MinimumLaunchMitigationVector = launch
		p.MinimumCurrentMitigationVector = current
		v, err := NewVerifier(VerifierOptions{Roots: AMDRoots(), Policy: p, Now: func() time.Time { return rv.now }})
		require.NoError(t, err)
		return v.VerifyReport(ctx, rv.report, rv.cert, nil, rv.reportData())
	}

	c, err := verify(0, 0)
	require.NoError(t, err)
	require.Equal(t, uint32(5), c.SNP.ReportVersion)
	require.Equal(t, uint64(1), c.SNP.LaunchMitVector)
	require.Equal(t, uint64(1), c.SNP.CurrentMitVector)
	_, err = verify(1, 1)
	require.NoError(t, err)

	_, err = verify(1|2, 1)
	requireCheck(t, err, attest.ErrPolicy, "policy.mitigation")
	_, err = verify(1, 1<<63)
	requireCheck(t, err, attest.ErrPolicy, "policy.mitigation")
}
