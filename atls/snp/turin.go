package snp

// What go-sev-guest v0.15.0 cannot verify (Turin; parts whose CPUID it
// does not know) is verified here, under the same pinned roots and check
// names. When upstream handles these, upstreamCovers grows and this file
// shrinks.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

// upstreamCovers reports whether go-sev-guest v0.15.0 can verify and
// validate a report of product line product, signed by the key of cert, as
// a second opinion: it reads only the Milan and Genoa TCB layout and VCEK
// extensions; it decides the product line of a version 3 or later report
// from a CPUID table that lacks variants (such as family 19h model A0h),
// giving up on them; and for a version 2 report it needs a product name
// with a stepping ("Genoa-B1", not "Genoa" as the KDS issues today).
func upstreamCovers(r *spb.Report, product ProductLine, cert *x509.Certificate, signer abi.ReportSigner) bool {
	if product != ProductMilan && product != ProductGenoa {
		return false
	}
	if fms := r.GetCpuid1EaxFms(); fms != 0 {
		return kds.ProductLineFromFms(fms) == product.String()
	}
	exts, err := ParseCertExtensions(cert, signer)
	if err != nil {
		return false
	}
	_, err = kds.ParseProductName(exts.ProductName, signer)
	return err == nil
}

// checkKDSProfile checks the parts of AMD's VCEK and VLEK certificate
// profile (VCEK certificate specification, AMD publication 57230) that the
// x509 chain check does not: an X.509 v3 certificate signed with
// RSASSA-PSS and SHA-384, for a P-384 ECDSA key, with the subject common
// name of its kind.
func checkKDSProfile(cert *x509.Certificate, signer abi.ReportSigner) error {
	if cert.Version != 3 {
		return fmt.Errorf("the %v certificate is X.509 version %d, not 3", signer, cert.Version)
	}
	if cert.SignatureAlgorithm != x509.SHA384WithRSAPSS {
		return fmt.Errorf("the %v certificate is signed with %v, not RSASSA-PSS with SHA-384", signer, cert.SignatureAlgorithm)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P384() {
		return fmt.Errorf("the %v certificate's key is not a P-384 ECDSA key", signer)
	}
	want := "SEV-VCEK"
	if signer == abi.VlekReportSigner {
		want = "SEV-VLEK"
	}
	if cn := cert.Subject.CommonName; cn != want {
		return fmt.Errorf("the %v certificate's subject is %q, not %q", signer, cn, want)
	}
	return nil
}
