package atlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
)

// CA is an ordinary PKI, for the modes that mix attestation with
// certificates.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// Pool holds the CA's certificate, for RootCAs or ClientCAs.
	Pool *x509.CertPool
}

// NewCA makes a CA valid from an hour ago to an hour from now.
func NewCA(t testing.TB) *CA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, key: key, Pool: pool}
}

// Issue makes a certificate for name (common name and DNS name) with
// extended key usage eku, signed by the CA.
func (ca *CA) Issue(t testing.TB, name string, eku x509.ExtKeyUsage) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames:  []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{eku},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// CertWithExtensions makes a self-signed server certificate carrying exts.
func CertWithExtensions(t testing.TB, exts []pkix.Extension) *tls.Certificate {
	return makeCert(t, exts, time.Now().Add(-time.Minute), time.Now().Add(10*time.Minute),
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
}

// Transplant copies the evidence of leaf into a self-signed certificate
// for a new key, with the validity and extended key usage of leaf.
func Transplant(t testing.TB, leaf *x509.Certificate) *tls.Certificate {
	var exts []pkix.Extension
	for _, e := range leaf.Extensions {
		if e.Id.Equal(attest.OIDCMW) {
			exts = append(exts, e)
		}
	}
	return makeCert(t, exts, leaf.NotBefore, leaf.NotAfter, leaf.ExtKeyUsage)
}

func makeCert(t testing.TB, exts []pkix.Extension, notBefore, notAfter time.Time, eku []x509.ExtKeyUsage) *tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "forged"},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: eku,
		ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// NonceOf extracts the client's nonce from its ALPN list, as a malicious
// server would.
func NonceOf(protos []string) ([32]byte, error) {
	for _, p := range protos {
		if h, ok := strings.CutPrefix(p, atls.NoncePrefix); ok {
			return decodeNonce(h)
		}
	}
	return [32]byte{}, errors.New("no nonce in ALPN")
}

// ServerNonceOf extracts the server's nonce from the certificate
// authorities of a CertificateRequest, as a malicious client would.
func ServerNonceOf(cas [][]byte) ([32]byte, error) {
	for _, der := range cas {
		var rdns pkix.RDNSequence
		if _, err := asn1.Unmarshal(der, &rdns); err != nil {
			continue
		}
		var name pkix.Name
		name.FillFromRDNSequence(&rdns)
		if h, ok := strings.CutPrefix(name.CommonName, atls.NoncePrefix); ok {
			return decodeNonce(h)
		}
	}
	return [32]byte{}, errors.New("no nonce in certificate_authorities")
}

func decodeNonce(h string) ([32]byte, error) {
	var n [32]byte
	b, err := hex.DecodeString(h)
	if err != nil {
		return n, err
	}
	copy(n[:], b)
	return n, nil
}

// IssueForClientNonce issues a nonce-mode certificate with evidence from
// att for role, bound to the nonce of the client's hello: what a
// malicious server can make honestly.
func IssueForClientNonce(h *tls.ClientHelloInfo, att attest.Attester, role attest.Role) (*tls.Certificate, error) {
	n, err := NonceOf(h.SupportedProtos)
	if err != nil {
		return nil, err
	}
	return certgen.Issue(h.Context(), certgen.Request{Attester: att, Role: role, Mode: attest.ModeNonce, Nonce: n})
}

// IssueForServerNonce issues a nonce-mode certificate with evidence from
// att for role, bound to the nonce of the server's CertificateRequest:
// what a malicious client can make honestly.
func IssueForServerNonce(cri *tls.CertificateRequestInfo, att attest.Attester, role attest.Role) (*tls.Certificate, error) {
	n, err := ServerNonceOf(cri.AcceptableCAs)
	if err != nil {
		return nil, err
	}
	return certgen.Issue(cri.Context(), certgen.Request{Attester: att, Role: role, Mode: attest.ModeNonce, Nonce: n})
}
