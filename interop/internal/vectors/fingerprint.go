package vectors

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// Fingerprint describes what of a vector certificate the generator
// determines: everything but keys, signatures, serial numbers and what
// derives from them (REPORT_DATA, the VCEK's validity, which the
// simulator takes from the clock). Two generations of a vector have the
// same fingerprint.
func Fingerprint(certPEM []byte) (string, error) {
	leaf, err := ParseCertPEM(certPEM)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("subject %s", leaf.Subject)
	line("validity %s - %s", leaf.NotBefore.UTC(), leaf.NotAfter.UTC())
	switch k := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		line("key ecdsa %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		line("key ed25519")
	default:
		line("key %T", k)
	}
	line("key usage %d, extended %v, CA %t", leaf.KeyUsage, leaf.ExtKeyUsage, leaf.IsCA)
	for _, e := range leaf.Extensions {
		line("extension %v critical %t", e.Id, e.Critical)
	}
	ev, err := attest.FromCertificate(leaf)
	if err != nil {
		line("evidence: %v", err)
		return b.String(), nil
	}
	line("collection %s", ev.Type)
	labels := make([]string, 0, len(ev.Records))
	for l := range ev.Records {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	for _, l := range labels {
		r := ev.Records[l]
		line("record %s %s (%d bytes)", l, r.MediaType, len(r.Value))
		switch l {
		case attest.BindingRecordLabel:
			line("  %s", r.Value)
		case snp.ReportLabel:
			if len(r.Value) == snp.ReportSize {
				// Without REPORT_DATA (0x50-0x8f) and the signature.
				report := append([]byte(nil), r.Value[:0x2A0]...)
				clear(report[0x50:0x90])
				h := sha256.Sum256(report)
				line("  report without report_data and signature: sha256 %x", h)
			}
		case snp.CertLabel:
			c, err := x509.ParseCertificate(r.Value)
			if err != nil {
				line("  %v", err)
				break
			}
			line("  subject %s issuer %s serial %v", c.Subject, c.Issuer, c.SerialNumber)
			for _, e := range c.Extensions {
				line("  extension %v %s", e.Id, hex.EncodeToString(e.Value))
			}
		case attest.BatchRecordLabel:
			// Version, index, size and path length; the siblings derive
			// from keys. Decoded without checks: some vectors break them.
			if v := r.Value; len(v) >= 9 {
				line("  version %d index %d size %d, %d bytes of path", v[0], binary.BigEndian.Uint32(v[1:5]), binary.BigEndian.Uint32(v[5:9]), len(v)-9)
			}
		case snp.CRLLabel:
			c, err := x509.ParseRevocationList(r.Value)
			if err != nil {
				line("  %v", err)
				break
			}
			line("  issuer %s, %s - %s", c.Issuer, c.ThisUpdate.UTC(), c.NextUpdate.UTC())
			for _, e := range c.RevokedCertificateEntries {
				line("  revoked %v at %s", e.SerialNumber, e.RevocationTime.UTC())
			}
		}
	}
	return b.String(), nil
}
