// Package certgen makes attested certificates: a fresh key pair, a
// self-signed X.509 certificate, and evidence from an attester whose
// REPORT_DATA binds that key, the certificate's validity, the role and the
// freshness (see attest.Binding). The evidence rides in the id-pe-cmw
// extension.
//
// The TLS hooks in package atls call Issue during handshakes; Static keeps
// one certificate for static-mode servers and rotates it before it ages
// out. Issue is also what `atls certgen` uses to write certificates for
// other TLS stacks.
package certgen

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"time"

	"github.com/confidential-go/atls/atls/attest"
)

// KeyType selects the algorithm of the certificate key.
type KeyType int

// Key types. ECDSA P-256 is the default: fast to generate on every
// handshake and supported by every TLS 1.3 stack.
const (
	ECDSAP256 KeyType = iota
	ECDSAP384
	Ed25519
)

func (k KeyType) String() string {
	switch k {
	case ECDSAP256:
		return "ecdsa-p256"
	case ECDSAP384:
		return "ecdsa-p384"
	case Ed25519:
		return "ed25519"
	}
	return fmt.Sprintf("KeyType(%d)", int(k))
}

// ParseKeyType accepts "ecdsa-p256", "ecdsa-p384" or "ed25519".
func ParseKeyType(s string) (KeyType, error) {
	for _, k := range []KeyType{ECDSAP256, ECDSAP384, Ed25519} {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("certgen: unknown key type %q (want ecdsa-p256, ecdsa-p384 or ed25519)", s)
}

// Default validities. A nonce-bound certificate is used for one handshake,
// so it only has to outlive clock skew; a static one is reused and rotated.
const (
	DefaultNonceValidity  = 10 * time.Minute
	DefaultStaticValidity = time.Hour
	// MaxValidity bounds any attested certificate: evidence describes the
	// platform at one moment, and a long-lived certificate would outlive
	// firmware updates.
	MaxValidity = 7 * 24 * time.Hour
	// backdate tolerates peers whose clocks run slightly behind.
	backdate = time.Minute
)

// Request describes an attested certificate to make.
type Request struct {
	// Attester produces the evidence. Required.
	Attester attest.Attester
	// Role is the side of the TLS connection the certificate is for.
	// Required: attest.RoleServer or attest.RoleClient.
	Role attest.Role
	// Mode is the freshness mode; in attest.ModeNonce and
	// attest.ModeBatch, Nonce is the peer's nonce. In attest.ModeBatch the
	// Attester must add a well-formed batch-proof record to its evidence
	// (an *attest.Batcher does).
	Mode  attest.Mode
	Nonce [attest.NonceSize]byte
	// KeyType of the certificate key (default ECDSA P-256).
	KeyType KeyType
	// Validity of the certificate (default DefaultNonceValidity or
	// DefaultStaticValidity by mode; at most MaxValidity).
	Validity time.Duration
	// CommonName and DNSNames go into the certificate for the benefit of
	// tools that display them; attested peers are identified by their
	// evidence, not by names.
	CommonName string
	DNSNames   []string
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// Issue makes a key pair and an attested self-signed certificate. The
// returned certificate has Leaf set.
func Issue(ctx context.Context, req Request) (*tls.Certificate, error) {
	if req.Attester == nil {
		return nil, errors.New("certgen: no attester")
	}
	validity := req.Validity
	if validity == 0 {
		validity = DefaultNonceValidity
		if req.Mode == attest.ModeStatic {
			validity = DefaultStaticValidity
		}
	}
	if validity < 0 || validity > MaxValidity {
		return nil, fmt.Errorf("certgen: validity %v out of range (0, %v]", validity, MaxValidity)
	}
	now := time.Now
	if req.Now != nil {
		now = req.Now
	}
	notBefore := now().Add(-backdate).Truncate(time.Second)
	notAfter := notBefore.Add(validity + backdate)

	key, err := generateKey(req.KeyType)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("certgen: encoding public key: %w", err)
	}
	binding := attest.BindingForTemplate(spki, notBefore, notAfter, req.Role, req.Mode, req.Nonce)
	reportData, err := binding.ReportData()
	if err != nil {
		return nil, fmt.Errorf("certgen: binding: %w", err)
	}
	got, err := req.Attester.Attest(ctx, reportData)
	if err != nil {
		return nil, fmt.Errorf("certgen: attesting: %w", err)
	}
	if got == nil {
		return nil, errors.New("certgen: the attester returned no evidence")
	}
	// Work on a copy: the evidence belongs to the attester, which may
	// reuse it.
	ev := &attest.Evidence{Type: got.Type, Records: maps.Clone(got.Records)}
	if err := ev.SetBinding(req.Role, req.Mode); err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	// Refuse evidence no verifier of this binding could accept: a
	// batch-proof record is required in batch mode, and only there.
	if _, err := attest.ExpectedReportData(ev, binding); err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	ext, err := ev.Extension()
	if err != nil {
		return nil, fmt.Errorf("certgen: encoding evidence: %w", err)
	}

	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("certgen: serial number: %w", err)
	}
	cn := req.CommonName
	if cn == "" {
		cn = "atls " + req.Role.String()
	}
	eku := x509.ExtKeyUsageServerAuth
	if req.Role == attest.RoleClient {
		eku = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{eku},
		BasicConstraintsValid: true,
		DNSNames:              req.DNSNames,
		ExtraExtensions:       []pkix.Extension{ext},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certgen: creating certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certgen: parsing created certificate: %w", err)
	}
	// The binding was computed before the certificate existed; make sure
	// the certificate says exactly what was bound.
	if got := attest.BindingForCertificate(leaf, req.Role, req.Mode, req.Nonce); got != binding {
		return nil, errors.New("certgen: internal error: certificate does not match its binding")
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func generateKey(k KeyType) (crypto.Signer, error) {
	switch k {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("certgen: unknown key type %v", k)
}

// EncodePEM returns the certificate chain and the private key (PKCS #8) of
// c as PEM.
func EncodePEM(c *tls.Certificate) (certPEM, keyPEM []byte, err error) {
	for _, der := range c.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	k, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certgen: encoding key: %w", err)
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
	return certPEM, keyPEM, nil
}
