package main

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// rawReportFlags select a raw SEV-SNP report file and the certificate of
// the key that signed it, as snpguest writes them (snpguest report,
// snpguest fetch vcek).
type rawReportFlags struct {
	report, vcek *string
}

func addRawReportFlags(fs *flag.FlagSet, vcekUsage string) *rawReportFlags {
	return &rawReportFlags{
		report: fs.String("report", "", "raw attestation report `file` (1184 bytes, as 'snpguest report' writes it) instead of a certificate"),
		vcek:   fs.String("vcek", "", "with --report: the VCEK or VLEK certificate `file` (PEM or DER) "+vcekUsage),
	}
}

// set says whether --report was given.
func (r *rawReportFlags) set() bool { return *r.report != "" }

// maxRawFile caps what is read from a report, certificate or CRL file:
// each is a few kilobytes at most.
const maxRawFile = 1 << 20

func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRawFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRawFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxRawFile)
	}
	return data, nil
}

// load reads the report and, when --vcek is given, the certificate (DER;
// nil without --vcek). A file that is not ReportSize bytes fails
// "snp.report.size" (exit 4).
func (r *rawReportFlags) load() (report, cert []byte, err error) {
	if report, err = readSmallFile(*r.report); err != nil {
		return nil, nil, err
	}
	if len(report) != snp.ReportSize {
		return nil, nil, verifyError(attest.Fail(attest.ErrMalformedEvidence, "snp.report.size",
			"%s is %d bytes, not a raw report of %d bytes", *r.report, len(report), snp.ReportSize))
	}
	if *r.vcek == "" {
		return report, nil, nil
	}
	c, err := loadCertificate(*r.vcek)
	if err != nil {
		return nil, nil, err
	}
	return report, c.Raw, nil
}

// loadCRL reads a CRL file, DER or PEM ("X509 CRL"), as 'snpguest fetch
// crl' writes it. It returns the DER; the verifier checks the rest.
func loadCRL(path string) ([]byte, error) {
	data, err := readSmallFile(path)
	if err != nil {
		return nil, err
	}
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "X509 CRL" {
			return nil, fmt.Errorf("%s: PEM block %q, want X509 CRL", path, b.Type)
		}
		data = b.Bytes
	} else if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%s: malformed PEM", path)
	}
	if _, err := x509.ParseRevocationList(data); err != nil {
		return nil, fmt.Errorf("%s: neither a PEM nor a DER CRL: %w", path, err)
	}
	return data, nil
}

// parseReportData reads --report-data: 128 hex digits.
func parseReportData(s string) (*[attest.ReportDataSize]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != attest.ReportDataSize {
		return nil, fmt.Errorf("--report-data: want %d hex digits (%d bytes)", 2*attest.ReportDataSize, attest.ReportDataSize)
	}
	var rd [attest.ReportDataSize]byte
	copy(rd[:], b)
	return &rd, nil
}

// rawEvidence wraps a raw report and its certificate (which may be nil)
// as evidence, for the decoders that take evidence.
func rawEvidence(report, cert []byte) *attest.Evidence {
	return snp.NewEvidence(report, cert, nil)
}
