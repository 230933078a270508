package snp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"os"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp/idblock"
)

// The virtee test keys (atls/snp/idblock/testdata, Apache-2.0) and the
// digests virtee/sev's tests expect for them.
const (
	virteeIDKeyDigest     = "59fb2c686dfa4fef49f38339aa775c90051c28d57383ddc3baf3b5eb4b1496df3b0dbbdcbae5fe27677a644820773fe2"
	virteeAuthorKeyDigest = "eed81169fb0cb5e0ec34794f128fd4e0c4a46f67c65a1adfa81fcb24bcc088c272369b7ffc3eb2b6af6a4284a1b36c5f"
)

func virteeKey(t *testing.T, name string) *ecdsa.PrivateKey {
	t.Helper()
	data, err := os.ReadFile("idblock/testdata/virtee/" + name)
	require.NoError(t, err)
	k, err := idblock.ParsePrivateKey(data)
	require.NoError(t, err)
	return k
}

// keyCert is a self-signed certificate for key, the form in which
// go-sev-guest's validate takes trusted ID and author keys.
func keyCert(t *testing.T, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ID key"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// signedLaunch signs an ID block for vtMeasurement with the given keys.
func signedLaunch(t *testing.T, idKey, authorKey *ecdsa.PrivateKey) (block, auth []byte) {
	t.Helper()
	b := &idblock.Block{
		Measurement: vtMeasurement,
		FamilyID:    [16]byte{0: 0xfa, 15: 0x01},
		ImageID:     [16]byte{0: 0x1a, 15: 0x02},
		GuestSVN:    3,
	}
	block, auth, err := idblock.Sign(b, idKey, authorKey)
	require.NoError(t, err)
	return block, auth
}

// TestSimIDBlock: a simulated VM launched with an ID block reports the
// block's fields and the key digests idblock computes (virtee's known
// answers), and both go-sev-guest's validate and our verifier accept it
// when they trust the key, and refuse it when they trust another.
func TestSimIDBlock(t *testing.T) {
	chain := testSimChain(t, "Milan")
	idKey, authorKey := virteeKey(t, "test_id_key.pem"), virteeKey(t, "test_auth_key.pem")
	block, auth := signedLaunch(t, idKey, authorKey)
	a, err := NewSimAttester(chain, SimOptions{IDBlock: block, IDAuth: auth})
	require.NoError(t, err)

	report, err := a.Report(vtReportData)
	require.NoError(t, err)
	r, err := abi.ReportToProto(report)
	require.NoError(t, err)
	require.Equal(t, vtMeasurement[:], r.GetMeasurement(), "a zero Measurement takes the block's")
	require.Equal(t, virteeIDKeyDigest, hex.EncodeToString(r.GetIdKeyDigest()))
	require.Equal(t, virteeAuthorKeyDigest, hex.EncodeToString(r.GetAuthorKeyDigest()))
	require.Equal(t, uint32(3), r.GetGuestSvn())
	require.Equal(t, byte(0xfa), r.GetFamilyId()[0])
	require.Equal(t, byte(0x1a), r.GetImageId()[0])
	info, err := abi.ParseSignerInfo(r.GetSignerInfo())
	require.NoError(t, err)
	require.True(t, info.AuthorKeyEn)

	// go-sev-guest's validate, given the trusted keys as certificates,
	// computes the digests on its own.
	opts := pinnedOptions(a.Options(), vtReportData)
	opts.RequireIDBlock = true
	opts.TrustedIDKeys = []*x509.Certificate{keyCert(t, idKey)}
	require.NoError(t, goSevGuestValidate(report, a.VCEK(), opts))
	opts = pinnedOptions(a.Options(), vtReportData)
	opts.RequireAuthorKey = true
	opts.TrustedAuthorKeys = []*x509.Certificate{keyCert(t, authorKey)}
	require.NoError(t, goSevGuestValidate(report, a.VCEK(), opts))
	other, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	opts = pinnedOptions(a.Options(), vtReportData)
	opts.RequireIDBlock = true
	opts.TrustedIDKeys = []*x509.Certificate{keyCert(t, other)}
	require.Error(t, goSevGuestValidate(report, a.VCEK(), opts))

	// Our verifier, with a policy that pins the ID key and no measurement.
	digest, err := idblock.KeyDigest(&idKey.PublicKey)
	require.NoError(t, err)
	p := NewPolicy()
	p.TrustedIDKeyDigests = []attest.HexBytes{digest[:]}
	v := vtVerifier(t, chain.Roots(), p)
	ctx := context.Background()
	ev, err := a.Attest(ctx, vtReportData)
	require.NoError(t, err)
	claims, err := v.Verify(ctx, ev, vtReportData)
	require.NoError(t, err)
	require.Equal(t, virteeIDKeyDigest, hex.EncodeToString(claims.SNP.IDKeyDigest))

	// The same image, signed by another ID key: refused.
	block2, auth2 := signedLaunch(t, other, nil)
	a2, err := NewSimAttester(chain, SimOptions{Measurement: vtMeasurement, IDBlock: block2, IDAuth: auth2})
	require.NoError(t, err)
	require.False(t, a2.Options().AuthorKeyEn)
	require.Equal(t, [48]byte{}, a2.Options().AuthorKeyDigest)
	ev2, err := a2.Attest(ctx, vtReportData)
	require.NoError(t, err)
	_, err = v.Verify(ctx, ev2, vtReportData)
	requireCheck(t, err, attest.ErrPolicy, "policy.id_key")
	// And no ID block at all: refused too.
	a3 := vtAttester(t, chain, SimOptions{})
	ev3, err := a3.Attest(ctx, vtReportData)
	require.NoError(t, err)
	_, err = v.Verify(ctx, ev3, vtReportData)
	requireCheck(t, err, attest.ErrPolicy, "policy.id_key")
}

// TestSimIDBlockRefused: the simulator refuses to launch what the
// firmware would refuse.
func TestSimIDBlockRefused(t *testing.T) {
	chain := testSimChain(t, "Milan")
	idKey := virteeKey(t, "test_id_key.pem")
	block, auth := signedLaunch(t, idKey, nil)
	noSMT, noSMTAuth, err := idblock.Sign(&idblock.Block{Measurement: vtMeasurement, Policy: 0x20000}, idKey, nil)
	require.NoError(t, err)
	tampered := append([]byte(nil), block...)
	tampered[0x54] = 4 // GUEST_SVN

	tests := []struct {
		name  string
		opts  SimOptions
		kind  error
		check string
	}{
		{"other image", SimOptions{Measurement: [48]byte{1}, IDBlock: block, IDAuth: auth}, attest.ErrPolicy, idblock.CheckMeasurement},
		{"other policy", SimOptions{IDBlock: noSMT, IDAuth: noSMTAuth}, attest.ErrPolicy, idblock.CheckPolicy},
		{"tampered block", SimOptions{IDBlock: tampered, IDAuth: auth}, attest.ErrVerification, idblock.CheckBlockSignature},
		{"block without auth", SimOptions{IDBlock: block}, attest.ErrConfig, "snp.config"},
		{"auth without block", SimOptions{IDAuth: auth}, attest.ErrConfig, "snp.config"},
		{"conflicting family ID", SimOptions{IDBlock: block, IDAuth: auth, FamilyID: [16]byte{1}}, attest.ErrConfig, "snp.config"},
		{"conflicting SVN", SimOptions{IDBlock: block, IDAuth: auth, GuestSVN: 9}, attest.ErrConfig, "snp.config"},
		{"conflicting ID key digest", SimOptions{IDBlock: block, IDAuth: auth, IDKeyDigest: [48]byte{1}}, attest.ErrConfig, "snp.config"},
		{"author key enabled without one", SimOptions{IDBlock: block, IDAuth: auth, AuthorKeyEn: true}, attest.ErrConfig, "snp.config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewSimAttester(chain, tc.opts)
			require.Nil(t, a)
			requireCheck(t, err, tc.kind, tc.check)
		})
	}

	// Options of a launched attester launch the same VM again.
	a, err := NewSimAttester(chain, SimOptions{GuestPolicy: 0x20000, IDBlock: noSMT, IDAuth: noSMTAuth})
	require.NoError(t, err)
	again, err := NewSimAttester(chain, a.Options())
	require.NoError(t, err)
	require.Equal(t, a.Options().IDKeyDigest, again.Options().IDKeyDigest)
}
