// Package snp implements attested TLS evidence for AMD SEV-SNP: a
// verifier that checks the VCEK chain to pinned AMD roots, the report
// signature, the REPORT_DATA binding and a policy, and a simulator that
// signs real-format reports with a simulated AMD chain. The attester for
// real guests is in package atls/snp/guest, so that programs that only
// verify do not import go-sev-guest's device client (and its global
// flags).
//
// go-sev-guest is used only inside this package and atls/snp/guest.
package snp

import (
	"github.com/confidential-go/atls/atls/attest"
)

// The SNP evidence collection. See interop/SPEC.md.
const (
	// CollectionType is the "__cmwc_t" of SNP evidence, version 1.
	CollectionType = "tag:confidential-go.github.io,2026:atls/snp/v1"

	// ReportLabel holds the raw attestation report (exactly 1184 bytes,
	// the ABI layout, little-endian, signature included).
	ReportLabel     = "snp-report"
	ReportMediaType = "application/vnd.atls.snp-report"

	// CertLabel holds the DER certificate of the key that signed the
	// report: the VCEK, or the VLEK (the report's SIGNING_KEY says which).
	CertLabel     = "vcek"
	CertMediaType = "application/pkix-cert"

	// CRLLabel optionally holds AMD's DER CRL for the product (signed by
	// the ARK). It is used to check revocation when present.
	CRLLabel     = "ask-crl"
	CRLMediaType = "application/pkix-crl"

	// ReportSize is the size of an attestation report.
	ReportSize = 0x4A0

	// MaxCertSize and MaxCRLSize cap the certificate and CRL records.
	MaxCertSize = 8 << 10
	MaxCRLSize  = 16 << 10
)

// Platform is the Claims.Platform of SNP claims.
const Platform = "amd-sev-snp"

// NewEvidence wraps a raw report, the signing key's certificate (DER) and
// an optional CRL (DER, may be nil) into an evidence collection.
func NewEvidence(report, cert, crl []byte) *attest.Evidence {
	ev := &attest.Evidence{
		Type: CollectionType,
		Records: map[string]attest.Record{
			ReportLabel: {MediaType: ReportMediaType, Value: report},
			CertLabel:   {MediaType: CertMediaType, Value: cert},
		},
	}
	if len(crl) > 0 {
		ev.Records[CRLLabel] = attest.Record{MediaType: CRLMediaType, Value: crl}
	}
	return ev
}

// ParsedEvidence is the content of an SNP evidence collection.
type ParsedEvidence struct {
	Report []byte // exactly ReportSize bytes
	Cert   []byte // DER
	CRL    []byte // DER, or nil
}

// ParseEvidence checks the collection type, the labels (no unknown ones)
// and the sizes, and returns the records.
func ParseEvidence(ev *attest.Evidence) (*ParsedEvidence, error) {
	const check = "snp.evidence"
	if ev == nil {
		return nil, attest.Fail(attest.ErrNotAttested, check, "no evidence")
	}
	if ev.Type != CollectionType {
		return nil, attest.Fail(attest.ErrMalformedEvidence, check, "collection type %q is not %q", ev.Type, CollectionType)
	}
	for label := range ev.Records {
		switch label {
		case ReportLabel, CertLabel, CRLLabel, attest.BindingRecordLabel, attest.BatchRecordLabel:
		default:
			return nil, attest.Fail(attest.ErrMalformedEvidence, check, "unknown record %q", label)
		}
	}
	var p ParsedEvidence
	var err error
	if p.Report, err = ev.Record(ReportLabel, ReportMediaType); err != nil {
		return nil, err
	}
	if len(p.Report) != ReportSize {
		return nil, attest.Fail(attest.ErrMalformedEvidence, check, "report is %d bytes, want %d", len(p.Report), ReportSize)
	}
	if p.Cert, err = ev.Record(CertLabel, CertMediaType); err != nil {
		return nil, err
	}
	if len(p.Cert) > MaxCertSize {
		return nil, attest.Fail(attest.ErrMalformedEvidence, check, "certificate of %d bytes exceeds %d", len(p.Cert), MaxCertSize)
	}
	if _, ok := ev.Records[CRLLabel]; ok {
		if p.CRL, err = ev.Record(CRLLabel, CRLMediaType); err != nil {
			return nil, err
		}
		if len(p.CRL) > MaxCRLSize {
			return nil, attest.Fail(attest.ErrMalformedEvidence, check, "CRL of %d bytes exceeds %d", len(p.CRL), MaxCRLSize)
		}
	}
	return &p, nil
}
