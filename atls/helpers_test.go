package atls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/stretchr/testify/require"
)

// nonceOf extracts the client's nonce from its ALPN list, as a malicious
// server would.
func nonceOf(t testing.TB, protos []string) [32]byte {
	var n [32]byte
	for _, p := range protos {
		if h, ok := strings.CutPrefix(p, atls.NoncePrefix); ok {
			b, err := hex.DecodeString(h)
			require.NoError(t, err)
			copy(n[:], b)
			return n
		}
	}
	t.Error("no nonce in ALPN")
	return n
}

// certWithExtensions makes a self-signed certificate carrying exts.
func certWithExtensions(t testing.TB, exts []pkix.Extension) *tls.Certificate {
	return makeCert(t, exts, time.Now().Add(-time.Minute), time.Now().Add(10*time.Minute))
}

// transplant copies the evidence of leaf into a certificate for a new key
// with the given validity.
func transplant(t testing.TB, leaf *x509.Certificate, notBefore, notAfter time.Time) *tls.Certificate {
	var exts []pkix.Extension
	for _, e := range leaf.Extensions {
		if e.Id.Equal(attest.OIDCMW) {
			exts = append(exts, e)
		}
	}
	return makeCert(t, exts, notBefore, notAfter)
}

func makeCert(t testing.TB, exts []pkix.Extension, notBefore, notAfter time.Time) *tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "forged"},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// pinMeasurement is the smallest sound policy: secure defaults, one
// accepted measurement.
func pinMeasurement(t testing.TB, m [48]byte) *snp.Policy {
	p := snp.NewPolicy()
	p.Measurements = []attest.HexBytes{m[:]}
	require.NoError(t, p.Validate())
	return p
}
