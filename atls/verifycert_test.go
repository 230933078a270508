package atls_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
	"github.com/confidential-go/atls/internal/atlstest"
)

func issue(t *testing.T, att atls.Attester, role attest.Role, mode attest.Mode, nonce [32]byte) *x509.Certificate {
	t.Helper()
	c, err := certgen.Issue(context.Background(), certgen.Request{Attester: att, Role: role, Mode: mode, Nonce: nonce})
	require.NoError(t, err)
	return c.Leaf
}

func TestVerifyCertificate(t *testing.T) {
	f := atlstest.Get(t)
	ctx := context.Background()
	ver := f.Verifier(t, f.ServerMeasurement)
	nonce := [32]byte{1, 2, 3}

	t.Run("nonce", func(t *testing.T) {
		leaf := issue(t, f.ServerAttester, attest.RoleServer, attest.ModeNonce, nonce)
		c, err := atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Verifier: ver, Nonce: &nonce})
		require.NoError(t, err)
		require.Equal(t, attest.RoleServer, c.Role)
		require.Equal(t, attest.ModeNonce, c.Mode)
		require.True(t, c.Simulated)
		require.Equal(t, f.ServerMeasurement[:], []byte(c.SNP.Measurement))
		require.Equal(t, leaf.NotAfter, c.NotAfter)

		_, err = atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Verifier: ver})
		atlstest.RequireCheck(t, err, attest.ErrBinding, "binding.nonce")
		other := [32]byte{9}
		_, err = atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Verifier: ver, Nonce: &other})
		atlstest.RequireCheck(t, err, attest.ErrBinding, "snp.report_data")
		_, err = atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Verifier: ver, Nonce: &nonce, Role: attest.RoleClient})
		atlstest.RequireCheck(t, err, attest.ErrBinding, "binding.role")
	})

	t.Run("static", func(t *testing.T) {
		leaf := issue(t, f.ServerAttester, attest.RoleServer, attest.ModeStatic, [32]byte{})
		_, err := atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Verifier: ver})
		atlstest.RequireCheck(t, err, attest.ErrBinding, "binding.freshness")
		c, err := atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Verifier: ver, AcceptStatic: true})
		require.NoError(t, err)
		require.Equal(t, attest.ModeStatic, c.Mode)
		// The certificate is back-dated by a minute.
		_, err = atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Verifier: ver, AcceptStatic: true, MaxAge: 30 * time.Second})
		atlstest.RequireCheck(t, err, attest.ErrBinding, "binding.max_age")
		// A clock past the validity.
		late := func() time.Time { return leaf.NotAfter.Add(time.Second) }
		_, err = atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Verifier: ver, AcceptStatic: true, MaxAge: 100 * time.Hour, Now: late})
		atlstest.RequireCheck(t, err, attest.ErrBinding, "certificate.validity")
	})

	t.Run("client role", func(t *testing.T) {
		leaf := issue(t, f.ClientAttester, attest.RoleClient, attest.ModeNonce, nonce)
		cver := f.Verifier(t, f.ClientMeasurement)
		c, err := atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Verifier: cver, Role: attest.RoleClient, Nonce: &nonce})
		require.NoError(t, err)
		require.Equal(t, attest.RoleClient, c.Role)
		// The server's policy does not accept the client's image.
		_, err = atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Verifier: ver, Role: attest.RoleClient, Nonce: &nonce})
		atlstest.RequireCheck(t, err, attest.ErrPolicy, "policy.measurement")
	})

	t.Run("tampered", func(t *testing.T) {
		leaf := issue(t, f.ServerAttester, attest.RoleServer, attest.ModeStatic, [32]byte{})
		// The evidence moved to a certificate for another key.
		forged := atlstest.Transplant(t, leaf).Leaf
		_, err := atls.VerifyCertificate(ctx, forged, atls.VerifyCertificateOptions{Verifier: ver, AcceptStatic: true})
		atlstest.RequireCheck(t, err, attest.ErrBinding, "snp.report_data")
	})

	t.Run("not attested", func(t *testing.T) {
		plain := atlstest.CertWithExtensions(t, nil).Leaf
		_, err := atls.VerifyCertificate(ctx, plain, atls.VerifyCertificateOptions{Verifier: ver})
		atlstest.RequireCheck(t, err, attest.ErrNotAttested, "evidence.extension")
		_, err = atls.VerifyCertificate(ctx, nil, atls.VerifyCertificateOptions{Verifier: ver})
		require.ErrorIs(t, err, attest.ErrNotAttested)
	})

	t.Run("options", func(t *testing.T) {
		leaf := issue(t, f.ServerAttester, attest.RoleServer, attest.ModeNonce, nonce)
		_, err := atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Nonce: &nonce})
		require.ErrorIs(t, err, attest.ErrConfig)
		_, err = atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Verifier: ver, Nonce: &nonce, Role: 'X'})
		require.ErrorIs(t, err, attest.ErrConfig)
	})
}
