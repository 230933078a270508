package snp

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
)

// VerifyUnboundReport skips the binding only when asked to; every other
// entry point checks it.
func TestVerifyUnboundReport(t *testing.T) {
	ctx := context.Background()
	chain := testSimChain(t, "Milan")
	a := vtAttester(t, chain, SimOptions{})
	v := vtVerifier(t, chain.Roots(), vtPolicy())
	other := vtReportData
	other[0] ^= 0xff
	r, err := a.Report(other)
	require.NoError(t, err)

	c, err := v.VerifyUnboundReport(ctx, r, a.VCEK(), nil, nil)
	require.NoError(t, err)
	require.Equal(t, attest.HexBytes(other[:]), c.ReportData)
	require.Zero(t, c.Role)
	pinned := other
	_, err = v.VerifyUnboundReport(ctx, r, a.VCEK(), nil, &pinned)
	require.NoError(t, err)
	_, err = v.VerifyUnboundReport(ctx, r, a.VCEK(), nil, &vtReportData)
	requireCheck(t, err, attest.ErrBinding, "snp.report_data")

	// The binding is checked by VerifyReport and by Verify (the
	// attest.Verifier that the TLS code calls), even after an unbound
	// success of the same report.
	_, err = v.VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
	requireCheck(t, err, attest.ErrBinding, "snp.report_data")
	var av attest.Verifier = v
	_, err = av.Verify(ctx, NewEvidence(r, a.VCEK(), nil), vtReportData)
	requireCheck(t, err, attest.ErrBinding, "snp.report_data")

	// Everything else is still checked.
	bad := resign(t, a, func(r []byte) { r[0x90] ^= 1 }) // measurement
	_, err = v.VerifyUnboundReport(ctx, bad, a.VCEK(), nil, nil)
	requireCheck(t, err, attest.ErrPolicy, "policy.measurement")
	r[0x90] ^= 1 // not re-signed
	_, err = v.VerifyUnboundReport(ctx, r, a.VCEK(), nil, nil)
	requireCheck(t, err, attest.ErrVerification, "snp.report.signature")
}
