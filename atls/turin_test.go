package atls_test

import (
	"crypto/sha512"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/internal/atlstest"
)

// A server on a simulated Turin part is verified end to end: its VCEK has
// the Turin profile (fmcSPL, 8-byte hwID), its report the Turin TCB
// layout, and the client trusts the simulated Turin roots only. The same
// client refuses it when it trusts only the fixture's Milan roots.
func TestHandshakeTurin(t *testing.T) {
	chain, err := snp.NewSimChain("Turin")
	require.NoError(t, err)
	m := sha512.Sum384([]byte("turin image"))
	att, err := snp.NewSimAttester(chain, snp.SimOptions{ReportVersion: 5, Measurement: m})
	require.NoError(t, err)
	ver, err := snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: atlstest.PinMeasurement(t, m)})
	require.NoError(t, err)

	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: att})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: ver})
	res := atlstest.Handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
	require.NoError(t, res.Client)
	require.NoError(t, res.Server)
	claims, ok := cli.PeerClaims(res.ClientCS)
	require.True(t, ok)
	require.True(t, claims.Simulated)
	require.Equal(t, "Turin", claims.SNP.Product)
	require.Equal(t, m[:], []byte(claims.SNP.Measurement))
	require.Equal(t, claims.SNP.ReportedTCB, claims.SNP.CertTCB)
	require.Equal(t, snp.BaselineTCB()["Turin"], snp.ProductTurin.DecodeTCB(claims.SNP.ReportedTCB))

	f := atlstest.Get(t)
	milanOnly := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, m)})
	res = atlstest.Handshake(t, srv.TLSConfig(), clientConfig(t, milanOnly, nil))
	atlstest.RequireCheck(t, res.Client, attest.ErrVerification, "snp.vcek.chain")
}
