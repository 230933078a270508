package vectors

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// Expectation is what a verifier knows before it looks at a certificate.
type Expectation struct {
	// Role is the role the peer must have attested as.
	Role attest.Role
	// Nonce is the nonce this side sent, nil if none.
	Nonce *[attest.NonceSize]byte
	// AcceptStatic accepts static evidence no older than MaxAge (default
	// atls.DefaultMaxAge).
	AcceptStatic bool
	MaxAge       time.Duration
	// Now is the verification time.
	Now time.Time
}

// Result is the outcome of VerifyCertificate.
type Result struct {
	// Claims of an accepted certificate, as package atls returns them.
	Claims *attest.Claims
	// ReportData is the REPORT_DATA expected in step 6 of SPEC.md
	// section 6, nil if verification stopped before.
	ReportData *[attest.ReportDataSize]byte
}

// VerifyCertificate appraises leaf with atls.VerifyCertificate (the
// checks package atls runs on a peer's certificate in VerifyConnection)
// and reports, besides the verdict, the REPORT_DATA that step 6 of SPEC.md
// section 6 expected when verification got that far.
func VerifyCertificate(ctx context.Context, v attest.Verifier, leaf *x509.Certificate, e Expectation) (Result, error) {
	var res Result
	claims, err := atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{
		Verifier:     v,
		Role:         e.Role,
		Nonce:        e.Nonce,
		AcceptStatic: e.AcceptStatic,
		MaxAge:       e.MaxAge,
		Now:          func() time.Time { return e.Now },
	})
	res.Claims = claims
	if err == nil || reachedStep6(attest.FailedCheck(err)) {
		res.ReportData = expectedReportData(leaf, e)
	}
	return res, err
}

// reachedStep6 reports whether a failed check comes after step 6 of
// SPEC.md section 6, that is, after the expected REPORT_DATA is known (a
// batch.* check fails within step 6).
func reachedStep6(check string) bool {
	switch {
	case check == "certificate.validity", check == "binding", strings.HasPrefix(check, "evidence."),
		strings.HasPrefix(check, "binding."), strings.HasPrefix(check, "tls."), strings.HasPrefix(check, "nonce."),
		strings.HasPrefix(check, "batch."):
		return false
	}
	return true
}

// expectedReportData recomputes the REPORT_DATA that leaf's report must
// carry for the expectation (in batch mode through its proof record), or
// returns nil when the evidence or the proof cannot be read.
func expectedReportData(leaf *x509.Certificate, e Expectation) *[attest.ReportDataSize]byte {
	ev, err := attest.FromCertificate(leaf)
	if err != nil {
		return nil
	}
	params, err := ev.Binding()
	if err != nil {
		return nil
	}
	var n [attest.NonceSize]byte
	if e.Nonce != nil {
		n = *e.Nonce // BindingForCertificate drops it in static mode
	}
	rd, err := attest.ExpectedReportData(ev, attest.BindingForCertificate(leaf, params.Role, params.Mode, n))
	if err != nil {
		return nil
	}
	return &rd
}

// Loaded is a vector with its files read.
type Loaded struct {
	Vector
	Cert    *tls.Certificate // Leaf set
	CertPEM []byte
	// NonceBytes is Nonce decoded, nil when the verifier sent none.
	NonceBytes *[attest.NonceSize]byte
	// Time is Now parsed.
	Time time.Time
}

// Load reads the files of v from dir.
func Load(dir string, v Vector) (*Loaded, error) {
	l := &Loaded{Vector: v}
	var err error
	if l.CertPEM, err = os.ReadFile(filepath.Join(dir, v.Cert)); err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, v.Key))
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(l.CertPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("vector %s: %w", v.Name, err)
	}
	l.Cert = &c
	if v.Nonce != "" {
		b, err := hex.DecodeString(v.Nonce)
		if err != nil || len(b) != attest.NonceSize {
			return nil, fmt.Errorf("vector %s: nonce %q is not %d bytes of hex", v.Name, v.Nonce, attest.NonceSize)
		}
		l.NonceBytes = new([attest.NonceSize]byte)
		copy(l.NonceBytes[:], b)
	}
	if l.Time, err = v.NowTime(); err != nil {
		return nil, err
	}
	return l, nil
}

// Expectation returns the verifier's side of the vector.
func (l *Loaded) Expectation() (Expectation, error) {
	role, err := attest.ParseRole(l.Role)
	if err != nil {
		return Expectation{}, fmt.Errorf("vector %s: %w", l.Name, err)
	}
	return Expectation{Role: role, Nonce: l.NonceBytes, AcceptStatic: l.AcceptStatic, MaxAge: l.MaxAge(), Now: l.Time}, nil
}

// NewVerifier returns the Go verifier of the vectors: the roots of dir,
// the manifest's policy, and certificates checked at now.
func NewVerifier(dir string, m *Manifest, now time.Time) (*snp.Verifier, error) {
	rootsPEM, err := os.ReadFile(filepath.Join(dir, m.Roots))
	if err != nil {
		return nil, err
	}
	roots, err := snp.ParseRootsPEM(rootsPEM, m.Simulated)
	if err != nil {
		return nil, err
	}
	pol, err := m.Policy.Parse()
	if err != nil {
		return nil, err
	}
	return snp.NewVerifier(snp.VerifierOptions{Roots: roots, Policy: pol, Now: func() time.Time { return now }})
}

// Parse returns p as an snp.Policy.
func (p Policy) Parse() (*snp.Policy, error) {
	pol := snp.NewPolicy()
	for _, h := range p.Measurements {
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("policy: measurement %q: %w", h, err)
		}
		pol.Measurements = append(pol.Measurements, b)
	}
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	return pol, nil
}

// Reissue returns a certificate for the key of c with the fields of its
// leaf but the id-pe-cmw extension replaced by ext (dropped when ext is
// nil), signed again by its key: a well-formed certificate whose only
// defect is the one put into ext.
func Reissue(c *tls.Certificate, ext *pkix.Extension) (*tls.Certificate, error) {
	leaf := c.Leaf
	if leaf == nil {
		return nil, errors.New("vectors: certificate without Leaf")
	}
	signer, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("vectors: key of type %T cannot sign", c.PrivateKey)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          leaf.SerialNumber,
		Subject:               leaf.Subject,
		NotBefore:             leaf.NotBefore,
		NotAfter:              leaf.NotAfter,
		KeyUsage:              leaf.KeyUsage,
		ExtKeyUsage:           leaf.ExtKeyUsage,
		BasicConstraintsValid: leaf.BasicConstraintsValid,
		DNSNames:              leaf.DNSNames,
	}
	if ext != nil {
		tmpl.ExtraExtensions = []pkix.Extension{*ext}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("vectors: reissuing certificate: %w", err)
	}
	out, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("vectors: parsing reissued certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: c.PrivateKey, Leaf: out}, nil
}

// MutateEvidence reissues c with its evidence changed by mutate.
func MutateEvidence(c *tls.Certificate, mutate func(*attest.Evidence) error) (*tls.Certificate, error) {
	ev, err := attest.FromCertificate(c.Leaf)
	if err != nil {
		return nil, err
	}
	if err := mutate(ev); err != nil {
		return nil, err
	}
	ext, err := ev.Extension()
	if err != nil {
		return nil, err
	}
	return Reissue(c, &ext)
}

// HostDataOffset is the offset of HOST_DATA in a report; TamperReport
// flips a bit there, a field no policy of the vectors looks at, so that
// only the signature breaks.
const HostDataOffset = 0xC0

// TamperReport reissues c with one bit of its report changed (after the
// report was signed).
func TamperReport(c *tls.Certificate) (*tls.Certificate, error) {
	return MutateEvidence(c, func(ev *attest.Evidence) error {
		r, ok := ev.Records[snp.ReportLabel]
		if !ok || len(r.Value) != snp.ReportSize {
			return errors.New("vectors: no report to tamper with")
		}
		report := append([]byte(nil), r.Value...)
		report[HostDataOffset] ^= 0x01
		ev.Records[snp.ReportLabel] = attest.Record{MediaType: r.MediaType, Value: report}
		return nil
	})
}

// ParseCertPEM returns the first certificate of a PEM file.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("vectors: no CERTIFICATE block")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}
