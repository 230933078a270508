package atlsquic_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// Helpers copied in spirit from package atls's tests (which cannot be
// imported): one simulated AMD chain per test binary, because generating
// its RSA-4096 keys takes seconds.

type fixture struct {
	chain         *snp.SimChain
	serverAtt     *snp.SimAttester
	clientAtt     *snp.SimAttester
	serverMeasure [48]byte
	clientMeasure [48]byte
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

func getFixture(t testing.TB) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		f := &fixture{
			serverMeasure: sha512.Sum384([]byte("server image")),
			clientMeasure: sha512.Sum384([]byte("client image")),
		}
		if f.chain, fixErr = snp.NewSimChain("Milan"); fixErr != nil {
			return
		}
		if f.serverAtt, fixErr = snp.NewSimAttester(f.chain, snp.SimOptions{Measurement: f.serverMeasure}); fixErr != nil {
			return
		}
		f.clientAtt, fixErr = snp.NewSimAttester(f.chain, snp.SimOptions{Measurement: f.clientMeasure})
		fix = f
	})
	require.NoError(t, fixErr)
	return fix
}

// verifier trusts the fixture's simulated root and pins measurement m.
func (f *fixture) verifier(t testing.TB, m [48]byte) *countingVerifier {
	t.Helper()
	p := snp.NewPolicy()
	p.Measurements = []attest.HexBytes{m[:]}
	require.NoError(t, p.Validate())
	v, err := snp.NewVerifier(snp.VerifierOptions{Roots: f.chain.Roots(), Policy: p})
	require.NoError(t, err)
	return &countingVerifier{v: v}
}

// countingVerifier counts the appraisals that reach the platform verifier
// and can run a hook before each.
type countingVerifier struct {
	v      attest.Verifier
	calls  atomic.Int64
	before func()
}

func (c *countingVerifier) Verify(ctx context.Context, ev *attest.Evidence, rd [64]byte) (*attest.Claims, error) {
	c.calls.Add(1)
	if c.before != nil {
		c.before()
	}
	return c.v.Verify(ctx, ev, rd)
}

func newServer(t testing.TB, o atls.ServerOptions) *atls.Server {
	t.Helper()
	s, err := atls.NewServer(o)
	require.NoError(t, err)
	return s
}

func newClient(t testing.TB, o atls.ClientOptions) *atls.Client {
	t.Helper()
	c, err := atls.NewClient(o)
	require.NoError(t, err)
	return c
}

func requireCheck(t *testing.T, err error, kind error, check string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, kind, "error: %v", err)
	var ce *attest.CheckError
	require.True(t, errors.As(err, &ce), "no CheckError in %v", err)
	require.Equal(t, check, ce.Check, "error: %v", err)
}

// testCA is an ordinary PKI for the mixed modes.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
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
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t testing.TB, name string, eku x509.ExtKeyUsage) tls.Certificate {
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

// transplant copies the evidence of leaf into a self-signed certificate
// for a new key.
func transplant(t testing.TB, leaf *x509.Certificate) *tls.Certificate {
	var exts []pkix.Extension
	for _, e := range leaf.Extensions {
		if e.Id.Equal(attest.OIDCMW) {
			exts = append(exts, e)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "forged"},
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: leaf.ExtKeyUsage,
		ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	parsed, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: parsed}
}

// nonceOf extracts the client's nonce from its ALPN list, as a malicious
// server would.
func nonceOf(protos []string) ([32]byte, error) {
	var n [32]byte
	for _, p := range protos {
		if h, ok := strings.CutPrefix(p, atls.NoncePrefix); ok {
			b, err := hex.DecodeString(h)
			if err != nil {
				return n, err
			}
			copy(n[:], b)
			return n, nil
		}
	}
	return n, errors.New("no nonce in ALPN")
}

// serverNonceOf extracts the server's nonce from the certificate
// authorities of a CertificateRequest, as a malicious client would.
func serverNonceOf(cas [][]byte) ([32]byte, error) {
	var n [32]byte
	for _, der := range cas {
		var rdns pkix.RDNSequence
		if _, err := asn1.Unmarshal(der, &rdns); err != nil {
			continue
		}
		var name pkix.Name
		name.FillFromRDNSequence(&rdns)
		if h, ok := strings.CutPrefix(name.CommonName, atls.NoncePrefix); ok {
			b, err := hex.DecodeString(h)
			if err != nil {
				return n, err
			}
			copy(n[:], b)
			return n, nil
		}
	}
	return n, errors.New("no nonce in certificate_authorities")
}

// hasCMW reports whether a certificate carries the id-pe-cmw extension.
func hasCMW(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(attest.OIDCMW) {
			return true
		}
	}
	return false
}
