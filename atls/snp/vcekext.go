package snp

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-sev-guest/abi"
)

// The AMD KDS certificate extensions (VCEK certificate specification,
// AMD publication 57230; the Turin revision adds fmcSPL).
var (
	oidStructVersion = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 1}
	oidProductName   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 2}
	oidBlSPL         = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 1}
	oidTeeSPL        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 2}
	oidSnpSPL        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 3}
	oidSPL4          = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 4}
	oidSPL5          = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 5}
	oidSPL6          = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 6}
	oidSPL7          = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 7}
	oidUcodeSPL      = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 8}
	oidFmcSPL        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 9}
	oidHWID          = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 4}
	oidCSPID         = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 5}

	// amdKDSArc is the OID arc of AMD's KDS certificate extensions.
	amdKDSArc = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1}
)

// TurinHWIDSize is the size of the hardware ID of Turin VCEKs: the first
// bytes of the report's CHIP_ID, whose other bytes are zero.
const TurinHWIDSize = 8

// CertExtensions are AMD's extensions of a VCEK or VLEK certificate.
type CertExtensions struct {
	// StructVersion is the version of the extension set (0 for Milan
	// and Genoa, 1 for Turin).
	StructVersion uint8
	// ProductName is the productName extension: the product line,
	// sometimes with a stepping ("Milan-B0", "Genoa", "Turin").
	ProductName string
	// Product is the product line that ProductName names.
	Product ProductLine
	// TCB is the TCB_VERSION the key was derived for, in Product's
	// layout, composed from the SPL extensions.
	TCB uint64
	// HWID is the chip's hardware ID (VCEK only): 64 bytes for Milan and
	// Genoa, TurinHWIDSize bytes for Turin.
	HWID []byte
	// CSPID names the cloud provider (VLEK only).
	CSPID string
}

// ParseCertExtensions reads AMD's extensions from the certificate of the
// key that signed a report (signer is abi.VcekReportSigner or
// abi.VlekReportSigner) for every product line, Turin included. It
// refuses unknown AMD extensions, duplicate or missing ones, a product name
// that is no known product line, SPL extensions the product line does not
// have (fmcSPL before Turin), non-zero reserved SPLs, a hardware ID of the
// wrong size, and a VCEK with a CSP ID or a VLEK with a hardware ID.
func ParseCertExtensions(cert *x509.Certificate, signer abi.ReportSigner) (*CertExtensions, error) {
	if signer != abi.VcekReportSigner && signer != abi.VlekReportSigner {
		return nil, fmt.Errorf("report signer %v has no certificate", signer)
	}
	known := []asn1.ObjectIdentifier{oidStructVersion, oidProductName, oidBlSPL, oidTeeSPL, oidSnpSPL,
		oidSPL4, oidSPL5, oidSPL6, oidSPL7, oidUcodeSPL, oidFmcSPL, oidHWID, oidCSPID}
	vals := map[string][]byte{}
	for _, e := range cert.Extensions {
		if len(e.Id) <= len(amdKDSArc) || !amdKDSArc.Equal(e.Id[:len(amdKDSArc)]) {
			continue
		}
		isKnown := false
		for _, k := range known {
			isKnown = isKnown || k.Equal(e.Id)
		}
		if !isKnown {
			return nil, &unknownExtensionError{e.Id}
		}
		if _, dup := vals[e.Id.String()]; dup {
			return nil, fmt.Errorf("duplicate AMD extension %v", e.Id)
		}
		vals[e.Id.String()] = e.Value
	}
	get := func(oid asn1.ObjectIdentifier) ([]byte, bool) {
		v, ok := vals[oid.String()]
		return v, ok
	}
	u8 := func(oid asn1.ObjectIdentifier, name string, required bool) (uint8, error) {
		v, ok := get(oid)
		if !ok {
			if required {
				return 0, fmt.Errorf("no %s extension (%v)", name, oid)
			}
			return 0, nil
		}
		var i int
		rest, err := asn1.Unmarshal(v, &i)
		if err != nil || len(rest) != 0 || i < 0 || i > 255 {
			return 0, fmt.Errorf("the %s extension is not an INTEGER 0-255", name)
		}
		return uint8(i), nil
	}
	ia5 := func(oid asn1.ObjectIdentifier, name string) (string, bool, error) {
		v, ok := get(oid)
		if !ok {
			return "", false, nil
		}
		var s string
		if len(v) == 0 || v[0] != asn1.TagIA5String {
			return "", true, fmt.Errorf("the %s extension is not an IA5String", name)
		}
		if rest, err := asn1.UnmarshalWithParams(v, &s, "ia5"); err != nil || len(rest) != 0 {
			return "", true, fmt.Errorf("the %s extension is not an IA5String", name)
		}
		return s, true, nil
	}

	var x CertExtensions
	var err error
	if x.StructVersion, err = u8(oidStructVersion, "structVersion", true); err != nil {
		return nil, err
	}
	name, ok, err := ia5(oidProductName, "productName")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("no productName extension")
	}
	x.ProductName = name
	line, _, _ := strings.Cut(name, "-")
	if x.Product, err = ParseProductLine(line); err != nil {
		return nil, &unknownProductError{name}
	}

	var t TCB
	for _, c := range []struct {
		oid  asn1.ObjectIdentifier
		name string
		dst  *uint8
	}{
		{oidBlSPL, "blSPL", &t.Bootloader},
		{oidTeeSPL, "teeSPL", &t.TEE},
		{oidSnpSPL, "snpSPL", &t.SNP},
		{oidUcodeSPL, "ucodeSPL", &t.Microcode},
	} {
		if *c.dst, err = u8(c.oid, c.name, true); err != nil {
			return nil, err
		}
	}
	if x.Product.HasFMC() {
		if t.FMC, err = u8(oidFmcSPL, "fmcSPL", true); err != nil {
			return nil, err
		}
	} else if _, ok := get(oidFmcSPL); ok {
		return nil, fmt.Errorf("a %v certificate carries fmcSPL (%v), which only Turin and later have", x.Product, oidFmcSPL)
	}
	if x.TCB, err = x.Product.EncodeTCB(t); err != nil {
		return nil, err
	}
	// The reserved SPLs: bytes 2-5 of the Milan and Genoa TCB_VERSION,
	// which their certificates always carry; reserved bytes in Turin's.
	// No firmware sets them; a certificate that does is not read.
	for i, oid := range []asn1.ObjectIdentifier{oidSPL4, oidSPL5, oidSPL6, oidSPL7} {
		v, err := u8(oid, fmt.Sprintf("spl%d", i+4), false)
		if err != nil {
			return nil, err
		}
		if v != 0 {
			return nil, fmt.Errorf("reserved SPL extension spl%d (%v) is %d, not 0", i+4, oid, v)
		}
	}

	hwid, hasHWID := get(oidHWID)
	cspid, hasCSPID, err := ia5(oidCSPID, "CSP_ID")
	if err != nil {
		return nil, err
	}
	switch signer {
	case abi.VcekReportSigner:
		if hasCSPID {
			return nil, fmt.Errorf("a VCEK certificate carries a CSP ID (%q)", cspid)
		}
		if !hasHWID {
			return nil, errors.New("a VCEK certificate without hwID extension")
		}
		want := abi.ChipIDSize
		if x.Product == ProductTurin {
			want = TurinHWIDSize
		}
		if x.HWID, err = octets(hwid, want); err != nil {
			return nil, fmt.Errorf("hwID: %w", err)
		}
	case abi.VlekReportSigner:
		if hasHWID {
			return nil, errors.New("a VLEK certificate carries a hwID")
		}
		if !hasCSPID || cspid == "" {
			return nil, errors.New("a VLEK certificate without CSP_ID extension")
		}
		x.CSPID = cspid
	}
	return &x, nil
}

// octets reads an extension value of size bytes: raw, as AMD's KDS writes
// the hwID, or as a DER OCTET STRING.
func octets(v []byte, size int) ([]byte, error) {
	if len(v) == size {
		return append([]byte(nil), v...), nil
	}
	var o []byte
	if rest, err := asn1.Unmarshal(v, &o); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%d bytes, want %d", len(v), size)
	}
	if len(o) != size {
		return nil, fmt.Errorf("%d bytes, want %d", len(o), size)
	}
	return o, nil
}

// unknownExtensionError is an AMD extension this library does not know.
type unknownExtensionError struct{ oid asn1.ObjectIdentifier }

func (e *unknownExtensionError) Error() string {
	return fmt.Sprintf("AMD extension %v is unknown to this verifier", e.oid)
}

// unknownProductError is a productName that names no known product line.
type unknownProductError struct{ name string }

func (e *unknownProductError) Error() string {
	return fmt.Sprintf("productName %q names no known product line (Milan, Genoa, Turin)", e.name)
}

// HWIDMatchesChipID reports whether the hardware ID of a VCEK of product
// line p names the chip whose report carries chipID: equal for Milan and
// Genoa; for Turin the 8-byte hardware ID is the start of CHIP_ID and the
// rest of CHIP_ID is zero.
func HWIDMatchesChipID(p ProductLine, hwid, chipID []byte) bool {
	if len(chipID) != abi.ChipIDSize {
		return false
	}
	n := abi.ChipIDSize
	if p == ProductTurin {
		n = TurinHWIDSize
	}
	if len(hwid) != n {
		return false
	}
	same := true
	for i, b := range chipID {
		if i < n {
			same = same && b == hwid[i]
		} else {
			same = same && b == 0
		}
	}
	return same
}

// kdsBaseURL is AMD's Key Distribution Service.
const kdsBaseURL = "https://kdsintf.amd.com"

// VCEKURL returns where AMD's Key Distribution Service publishes the VCEK
// of the chip whose report carries chipID and reportedTCB (REPORTED_TCB,
// in product's layout). Milan and Genoa VCEKs are indexed by the whole
// CHIP_ID; Turin VCEKs by the 8-byte hardware ID at its start (the rest of
// CHIP_ID must be zero) and by the FMC level too:
//
//	https://kdsintf.amd.com/vcek/v1/Turin/<hwID>?fmcSPL=F&blSPL=B&teeSPL=T&snpSPL=S&ucodeSPL=M
func VCEKURL(product ProductLine, chipID []byte, reportedTCB uint64) (string, error) {
	if len(chipID) != abi.ChipIDSize {
		return "", fmt.Errorf("CHIP_ID is %d bytes, want %d", len(chipID), abi.ChipIDSize)
	}
	if r := product.TCBReserved(reportedTCB); r != 0 {
		return "", fmt.Errorf("TCB %#016x has bits %#x set that the %v layout reserves", reportedTCB, r, product)
	}
	hwid := chipID
	switch product {
	case ProductMilan, ProductGenoa:
	case ProductTurin:
		hwid = chipID[:TurinHWIDSize]
		if !HWIDMatchesChipID(product, hwid, chipID) {
			return "", fmt.Errorf("a Turin CHIP_ID is an %d-byte hardware ID followed by zeros, not %x", TurinHWIDSize, chipID)
		}
	default:
		return "", fmt.Errorf("no KDS URL for product line %v", product)
	}
	t := product.DecodeTCB(reportedTCB)
	fmc := ""
	if product.HasFMC() {
		fmc = fmt.Sprintf("fmcSPL=%d&", t.FMC)
	}
	return fmt.Sprintf("%s/vcek/v1/%v/%x?%sblSPL=%d&teeSPL=%d&snpSPL=%d&ucodeSPL=%d",
		kdsBaseURL, product, hwid, fmc, t.Bootloader, t.TEE, t.SNP, t.Microcode), nil
}
