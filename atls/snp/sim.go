package snp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/confidential-go/atls/atls/attest"
)

// The simulator produces attestation reports in the exact ABI format that
// AMD hardware produces, signed by a VCEK that a simulated AMD key
// hierarchy (ARK -> ASK -> VCEK) certifies with the certificate profile of
// AMD's Key Distribution Service. go-sev-guest's verifier cannot tell such
// evidence from real evidence except by its root: the simulated ARK is a
// fresh key that nobody trusts unless told to, through SimChain.Roots.
//
// Everything here is plain crypto/x509 and crypto/ecdsa so that library
// code can use it; go-sev-guest's own "testing" package imports the
// standard "testing" package and so cannot be.

// simProduct holds what the simulator needs to know about a product line.
type simProduct struct {
	name spb.SevProduct_SevProductName
	// tcb and version are realistic defaults: taken from real reports of
	// that product line (see ../shared/vectors), so that policies written
	// against real hardware behave the same against the simulator.
	tcb     uint64
	version [3]uint8 // major, minor, build
}

var simProducts = map[string]simProduct{
	// Milan with SEV firmware 1.55.29: BL_SPL 4, TEE_SPL 0, SNP_SPL 24,
	// UCODE_SPL 219, as a real Milan report in the vectors carries.
	"Milan": {name: spb.SevProduct_SEV_PRODUCT_MILAN, tcb: 0xdb18000000000004, version: [3]uint8{1, 55, 29}},
	// Genoa with SEV firmware 1.55.40: BL_SPL 10, TEE_SPL 0, SNP_SPL 23,
	// UCODE_SPL 84, as a real Genoa report in the vectors carries.
	"Genoa": {name: spb.SevProduct_SEV_PRODUCT_GENOA, tcb: 0x541700000000000a, version: [3]uint8{1, 55, 40}},
	// Turin with SEV firmware 1.55.61: FMC_SPL 0, BL_SPL 1, TEE_SPL 0,
	// SNP_SPL 2, UCODE_SPL 71 (in the Turin layout), as the real Turin
	// report in testdata/oak carries.
	"Turin": {name: spb.SevProduct_SEV_PRODUCT_TURIN, tcb: 0x4700000002000100, version: [3]uint8{1, 55, 61}},
}

const (
	simRSABits = 4096
	// AMD's ARK and ASK certificates are valid for 25 years, VCEKs for 7.
	simRootValidity = 25
	simVCEKValidity = 7
	// simBackdate keeps certificates valid on machines whose clock lags
	// a little behind the simulator's.
	simBackdate = time.Hour
	// simDefaultStepping is the B1 stepping, the common one for both
	// Milan and Genoa parts.
	simDefaultStepping = 1
)

// SimChain is a simulated AMD key hierarchy for one product line: a root
// key (ARK) and the intermediate key (ASK) that certifies VCEKs. Both are
// RSA-4096 and sign with RSASSA-PSS/SHA-384, as AMD's do.
//
// A SimChain holds private keys; it is a development and test tool only.
// Its ARK is never among the roots a verifier trusts by default.
type SimChain struct {
	// Product is the product line, "Milan", "Genoa" or "Turin".
	Product string
	// ARK is the self-signed root certificate ("ARK-<Product>") and ASK
	// the intermediate certificate ("SEV-<Product>") it signed.
	ARK, ASK *x509.Certificate

	arkKey, askKey *rsa.PrivateKey
}

// NewSimChain generates a new simulated ARK and ASK for product ("Milan",
// "Genoa" or "Turin"). It generates two RSA-4096 keys, which takes seconds; tests
// should create one chain per product line and share it.
func NewSimChain(product string) (*SimChain, error) {
	if _, ok := simProducts[product]; !ok {
		return nil, fmt.Errorf("snp: simulator: unsupported product line %q (want Milan, Genoa or Turin)", product)
	}
	// Generating an RSA-4096 key takes a second or more; make both at once.
	var (
		arkKey, askKey *rsa.PrivateKey
		arkErr, askErr error
		wg             sync.WaitGroup
	)
	wg.Go(func() { arkKey, arkErr = rsa.GenerateKey(rand.Reader, simRSABits) })
	wg.Go(func() { askKey, askErr = rsa.GenerateKey(rand.Reader, simRSABits) })
	wg.Wait()
	if arkErr != nil {
		return nil, fmt.Errorf("snp: simulator: generating ARK key: %w", arkErr)
	}
	if askErr != nil {
		return nil, fmt.Errorf("snp: simulator: generating ASK key: %w", askErr)
	}
	return newSimChain(product, arkKey, askKey)
}

// newSimChain certifies existing keys as a chain for product. Tests use it
// to make a second chain without paying for RSA key generation again.
func newSimChain(product string, arkKey, askKey *rsa.PrivateKey) (*SimChain, error) {
	notBefore := time.Now().Add(-simBackdate).UTC().Truncate(time.Second)
	notAfter := notBefore.AddDate(simRootValidity, 0, 0)

	// The profiles follow AMD's published ARK and ASK certificates: names,
	// key usage, basic constraints, and one CRL distribution point at the
	// product's KDS URL. (go-sev-guest v0.15.0 has checks for all of this,
	// validateArkX509 and validateAskX509, but SnpAttestation does not call
	// them; matching the profile keeps the simulator honest anyway.)
	arkTmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               amdName("ARK-" + product),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		CRLDistributionPoints: []string{kds.CrlLinkByRole(product, "ARK")},
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
	}
	arkDER, err := x509.CreateCertificate(rand.Reader, arkTmpl, arkTmpl, &arkKey.PublicKey, arkKey)
	if err != nil {
		return nil, fmt.Errorf("snp: simulator: creating ARK certificate: %w", err)
	}
	ark, err := x509.ParseCertificate(arkDER)
	if err != nil {
		return nil, fmt.Errorf("snp: simulator: parsing ARK certificate: %w", err)
	}
	askTmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               amdName("SEV-" + product),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		CRLDistributionPoints: []string{kds.CrlLinkByRole(product, "ASK")},
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
	}
	askDER, err := x509.CreateCertificate(rand.Reader, askTmpl, ark, &askKey.PublicKey, arkKey)
	if err != nil {
		return nil, fmt.Errorf("snp: simulator: creating ASK certificate: %w", err)
	}
	ask, err := x509.ParseCertificate(askDER)
	if err != nil {
		return nil, fmt.Errorf("snp: simulator: parsing ASK certificate: %w", err)
	}
	return &SimChain{Product: product, ARK: ark, ASK: ask, arkKey: arkKey, askKey: askKey}, nil
}

// amdName is the distinguished name AMD uses in all its SEV certificates,
// attribute for attribute in AMD's order (OU, C, L, ST, O, CN). The
// attributes go through ExtraNames because pkix.Name would otherwise
// reorder them; parsing still fills Country, Locality and so on, which is
// what go-sev-guest checks.
func amdName(cn string) pkix.Name {
	attr := func(oid asn1.ObjectIdentifier, v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: oid, Value: v}
	}
	return pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		attr(asn1.ObjectIdentifier{2, 5, 4, 11}, "Engineering"),
		attr(asn1.ObjectIdentifier{2, 5, 4, 6}, "US"),
		attr(asn1.ObjectIdentifier{2, 5, 4, 7}, "Santa Clara"),
		attr(asn1.ObjectIdentifier{2, 5, 4, 8}, "CA"),
		attr(asn1.ObjectIdentifier{2, 5, 4, 10}, "Advanced Micro Devices"),
		attr(asn1.ObjectIdentifier{2, 5, 4, 3}, cn),
	}}
}

// randomSerial returns a positive random serial number of 127 bits, so
// that certificates of different simulated chains never share serials.
func randomSerial() *big.Int {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails.
	b[0] &= 0x7f
	b[0] |= 0x40 // keep it 16 bytes long and non-zero
	return new(big.Int).SetBytes(b[:])
}

// Roots returns the chain's ARK and ASK as roots to trust explicitly. They
// are marked Simulated, so that claims verified under them say so.
func (c *SimChain) Roots() *Roots {
	return &Roots{
		Simulated: true,
		chains:    map[string][]chain{c.Product: {{ark: c.ARK, ask: c.ASK}}},
	}
}

// PEM block types of a marshaled SimChain.
const (
	pemCertificate = "CERTIFICATE"
	pemPrivateKey  = "PRIVATE KEY"
)

// MarshalPEM encodes the chain, private keys included, so that another
// process (for example a simulated guest started by a test harness) can
// keep issuing VCEKs that the same roots accept. The output is the ARK and
// ASK certificates followed by their PKCS#8 keys. Keep it secret from
// anything that should not be able to forge simulated evidence.
//
// The certificates in the output are also valid input for ParseRootsPEM,
// which ignores the key blocks.
func (c *SimChain) MarshalPEM() ([]byte, error) {
	if c.ARK == nil || c.ASK == nil || c.arkKey == nil || c.askKey == nil {
		return nil, fmt.Errorf("snp: simulator: chain is incomplete (make it with NewSimChain or ParseSimChainPEM)")
	}
	var buf bytes.Buffer
	for _, cert := range []*x509.Certificate{c.ARK, c.ASK} {
		if err := pem.Encode(&buf, &pem.Block{Type: pemCertificate, Bytes: cert.Raw}); err != nil {
			return nil, fmt.Errorf("snp: simulator: encoding certificate: %w", err)
		}
	}
	for _, k := range []struct {
		name string
		key  *rsa.PrivateKey
	}{{"ARK", c.arkKey}, {"ASK", c.askKey}} {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return nil, fmt.Errorf("snp: simulator: encoding %s key: %w", k.name, err)
		}
		if err := pem.Encode(&buf, &pem.Block{Type: pemPrivateKey, Bytes: der}); err != nil {
			return nil, fmt.Errorf("snp: simulator: encoding %s key: %w", k.name, err)
		}
	}
	return buf.Bytes(), nil
}

// ParseSimChainPEM reads a chain written by MarshalPEM. The blocks may come
// in any order. It checks that there is exactly one ARK and one ASK of the
// same supported product line, that each has its private key, and that the
// ASK is signed by the ARK.
func ParseSimChainPEM(data []byte) (*SimChain, error) {
	var (
		certs []*x509.Certificate
		keys  []*rsa.PrivateKey
	)
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case pemCertificate:
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("snp: simulator: parsing chain certificate: %w", err)
			}
			certs = append(certs, cert)
		case pemPrivateKey:
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("snp: simulator: parsing chain private key: %w", err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("snp: simulator: chain private key is %T, want an RSA key", k)
			}
			keys = append(keys, rk)
		default:
			return nil, fmt.Errorf("snp: simulator: unexpected PEM block %q in chain (want CERTIFICATE or PRIVATE KEY)", block.Type)
		}
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("snp: simulator: trailing data after PEM blocks in chain")
	}

	c := &SimChain{}
	for _, cert := range certs {
		cn := cert.Subject.CommonName
		switch {
		case strings.HasPrefix(cn, "ARK-") && c.ARK == nil:
			c.ARK = cert
		case strings.HasPrefix(cn, "SEV-") && !strings.HasPrefix(cn, "SEV-VLEK-") && c.ASK == nil:
			c.ASK = cert
		default:
			return nil, fmt.Errorf("snp: simulator: unexpected certificate %q in chain (want one ARK-<product> and one SEV-<product>)", cn)
		}
	}
	if c.ARK == nil || c.ASK == nil {
		return nil, fmt.Errorf("snp: simulator: chain needs both an ARK and an ASK certificate")
	}
	c.Product = strings.TrimPrefix(c.ARK.Subject.CommonName, "ARK-")
	if _, ok := simProducts[c.Product]; !ok {
		return nil, fmt.Errorf("snp: simulator: chain is for unsupported product line %q", c.Product)
	}
	if got := strings.TrimPrefix(c.ASK.Subject.CommonName, "SEV-"); got != c.Product {
		return nil, fmt.Errorf("snp: simulator: ASK is for product line %q but ARK for %q", got, c.Product)
	}
	if err := c.ARK.CheckSignatureFrom(c.ARK); err != nil {
		return nil, fmt.Errorf("snp: simulator: ARK is not self-signed: %w", err)
	}
	if err := c.ASK.CheckSignatureFrom(c.ARK); err != nil {
		return nil, fmt.Errorf("snp: simulator: ASK is not signed by the ARK: %w", err)
	}
	if len(keys) != 2 {
		return nil, fmt.Errorf("snp: simulator: chain has %d private keys, want 2 (ARK and ASK)", len(keys))
	}
	for _, k := range keys {
		switch {
		case k.PublicKey.Equal(c.ARK.PublicKey) && c.arkKey == nil:
			c.arkKey = k
		case k.PublicKey.Equal(c.ASK.PublicKey) && c.askKey == nil:
			c.askKey = k
		}
	}
	if c.arkKey == nil {
		return nil, fmt.Errorf("snp: simulator: no private key matches the ARK certificate")
	}
	if c.askKey == nil {
		return nil, fmt.Errorf("snp: simulator: no private key matches the ASK certificate")
	}
	for name, k := range map[string]*rsa.PrivateKey{"ARK": c.arkKey, "ASK": c.askKey} {
		if err := k.Validate(); err != nil {
			return nil, fmt.Errorf("snp: simulator: invalid %s private key: %w", name, err)
		}
	}
	return c, nil
}

// IssueVCEK issues a VCEK for the chip chipID at TCB version tcb (in the
// product line's layout): a fresh ECDSA P-384 key and its certificate
// signed by the ASK, with the KDS extensions of a Milan-B1, Genoa-B1 or
// Turin-B1 part (B1 is the stepping). A Turin VCEK certifies the first 8
// bytes of chipID as its hwID, and the fmcSPL of tcb.
func (c *SimChain) IssueVCEK(chipID [64]byte, tcb uint64) (der []byte, key *ecdsa.PrivateKey, err error) {
	name, err := simProductName(c.Product, simDefaultStepping)
	if err != nil {
		return nil, nil, err
	}
	return c.issueVCEK(chipID, tcb, name)
}

// simProductName is the productName extension of a VCEK for a part of the
// given stepping, such as "Milan-B1".
func simProductName(product string, stepping uint8) (string, error) {
	p, ok := simProducts[product]
	if !ok {
		return "", fmt.Errorf("snp: simulator: unsupported product line %q", product)
	}
	name := kds.ProductName(&spb.SevProduct{Name: p.name, MachineStepping: wrapperspb.UInt32(uint32(stepping))})
	if !strings.HasPrefix(name, product+"-") {
		return "", fmt.Errorf("snp: simulator: no stepping name for %s stepping %d", product, stepping)
	}
	return name, nil
}

func (c *SimChain) issueVCEK(chipID [64]byte, tcb uint64, productName string) ([]byte, *ecdsa.PrivateKey, error) {
	if c.askKey == nil || c.ASK == nil {
		return nil, nil, fmt.Errorf("snp: simulator: chain has no ASK key (make it with NewSimChain or ParseSimChainPEM)")
	}
	line, err := ParseProductLine(c.Product)
	if err != nil {
		return nil, nil, fmt.Errorf("snp: simulator: %w", err)
	}
	parts := line.DecodeTCB(tcb)
	// The KDS never certifies an SPL above 127 except the microcode's;
	// go-sev-guest rejects such certificates.
	if parts.FMC > 127 || parts.Bootloader > 127 || parts.TEE > 127 || parts.SNP > 127 || line.TCBReserved(tcb) != 0 {
		return nil, nil, fmt.Errorf("snp: simulator: VCEK TCB 0x%016x: an SPL other than the microcode's is above 127, or a reserved byte is set", tcb)
	}
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("snp: simulator: generating VCEK key: %w", err)
	}

	// The extensions of AMD's KDS specification (57230), in the order the
	// KDS writes them. Values are DER INTEGERs and an IA5String, except
	// HWID, which the KDS writes as the 64 raw bytes without a tag.
	var exts []pkix.Extension
	addInt := func(oid asn1.ObjectIdentifier, v uint8) error {
		b, err := asn1.Marshal(int(v))
		if err != nil {
			return err
		}
		exts = append(exts, pkix.Extension{Id: oid, Value: b})
		return nil
	}
	// Turin certificates are structVersion 1: fmcSPL, no spl4, and an
	// 8-byte hwID.
	structVersion := uint8(0)
	if line == ProductTurin {
		structVersion = 1
	}
	if err := addInt(kds.OidStructVersion, structVersion); err != nil {
		return nil, nil, fmt.Errorf("snp: simulator: encoding VCEK extension: %w", err)
	}
	pn, err := asn1.MarshalWithParams(productName, "ia5")
	if err != nil {
		return nil, nil, fmt.Errorf("snp: simulator: encoding VCEK product name %q: %w", productName, err)
	}
	exts = append(exts, pkix.Extension{Id: kds.OidProductName1, Value: pn})
	type spl struct {
		oid asn1.ObjectIdentifier
		v   uint8
	}
	spls := []spl{
		{kds.OidBlSpl, parts.Bootloader},
		{kds.OidTeeSpl, parts.TEE},
		{kds.OidSpl4, 0},
		{kds.OidSpl5, 0},
		{kds.OidSpl6, 0},
		{kds.OidSpl7, 0},
		{kds.OidSnpSpl, parts.SNP},
		{kds.OidUcodeSpl, parts.Microcode},
	}
	hwid := chipID[:]
	if line == ProductTurin {
		// The order of the real Turin VCEKs in testdata.
		spls = []spl{
			{oidFmcSPL, parts.FMC},
			{kds.OidBlSpl, parts.Bootloader},
			{kds.OidTeeSpl, parts.TEE},
			{kds.OidSnpSpl, parts.SNP},
			{kds.OidSpl5, 0},
			{kds.OidSpl6, 0},
			{kds.OidSpl7, 0},
			{kds.OidUcodeSpl, parts.Microcode},
		}
		hwid = chipID[:TurinHWIDSize]
	}
	for _, e := range spls {
		if err := addInt(e.oid, e.v); err != nil {
			return nil, nil, fmt.Errorf("snp: simulator: encoding VCEK extension: %w", err)
		}
	}
	exts = append(exts, pkix.Extension{Id: kds.OidHwid, Value: bytes.Clone(hwid)})

	notBefore := time.Now().Add(-simBackdate).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		// The KDS issues every VCEK with serial number 0.
		SerialNumber:       big.NewInt(0),
		Subject:            amdName("SEV-VCEK"),
		NotBefore:          notBefore,
		NotAfter:           notBefore.AddDate(simVCEKValidity, 0, 0),
		ExtraExtensions:    exts,
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
	}
	// go-sev-guest rejects any VCEK extension it does not know except the
	// authority key identifier; real VCEKs carry none, and an issuer
	// without a subject key ID keeps crypto/x509 from adding one.
	issuer := *c.ASK
	issuer.SubjectKeyId = nil
	der, err := x509.CreateCertificate(rand.Reader, tmpl, &issuer, &key.PublicKey, c.askKey)
	if err != nil {
		return nil, nil, fmt.Errorf("snp: simulator: creating VCEK certificate: %w", err)
	}
	return der, key, nil
}

// SimOptions selects the contents of simulated reports. The zero value of
// each field selects a realistic default, given in the field's comment;
// NewSimAttester fills the defaults in, and SimAttester.Options shows the
// result.
type SimOptions struct {
	// ReportVersion is the report format: 2 (no CPUID fields), 3 (CPUID
	// family, model and stepping at 0x188) or 5 (also mitigation vectors).
	// Default 3.
	ReportVersion uint32
	// Stepping is the machine stepping: it goes into the CPUID fields of
	// v3+ reports and names the part in the VCEK ("Milan-B1"). Default 1
	// (B1). Stepping 0 (B0) can be selected only through ProductName.
	Stepping uint8
	// ProductName overrides the VCEK's productName extension, which is
	// "<product>-<stepping>" by default. When it names a known stepping
	// ("Milan-B0") and Stepping is 0, the report carries that stepping.
	// Set it to "Genoa" to mimic the real Genoa VCEKs the KDS issues,
	// which carry no stepping (go-sev-guest then accepts only v3+
	// reports, which name the product in their CPUID fields).
	ProductName string

	// Measurement is the launch MEASUREMENT, the digest of the launched
	// image (package measure computes it from the launch inputs).
	// Default all zeros, or the ID block's launch digest (IDBlock).
	Measurement [48]byte
	// GuestPolicy is the guest POLICY. Default 0x30000: SMT allowed, the
	// reserved must-be-one bit 17, ABI 0.0, no debugging, no migration
	// agent. Bit 17 must be set.
	GuestPolicy uint64
	// VMPL is the VMPL of the requesting guest code, 0-3. Default 0.
	VMPL uint32
	// GuestSVN is the guest's security version number. Default 0.
	GuestSVN uint32
	// FamilyID and ImageID come from the ID block. Default all zeros.
	FamilyID, ImageID [16]byte
	// HostData is the HOST_DATA the hypervisor supplied at launch.
	// Default all zeros.
	HostData [32]byte
	// IDKeyDigest and AuthorKeyDigest are the SHA-384 digests of the ID
	// block keys. Default all zeros (no ID block).
	IDKeyDigest, AuthorKeyDigest [48]byte
	// AuthorKeyEn sets AUTHOR_KEY_EN in the signer info: the ID block was
	// signed by an author key.
	AuthorKeyEn bool
	// IDBlock and IDAuth launch the guest with an ID block (96 bytes)
	// and its ID_AUTH (4096 bytes), as package idblock makes them and
	// QEMU passes them to the firmware. Default none. NewSimAttester
	// checks them as the firmware does (signatures, launch digest equal
	// to Measurement, POLICY equal to GuestPolicy; a zero Measurement
	// takes the block's) and sets FamilyID, ImageID, GuestSVN,
	// IDKeyDigest, AuthorKeyDigest and AuthorKeyEn from them; those must
	// then be zero or agree.
	IDBlock, IDAuth []byte
	// ReportID is the guest's REPORT_ID. Default random, fixed for the
	// life of the SimAttester, as for a real guest.
	ReportID [32]byte
	// ReportIDMA is the migration agent's REPORT_ID. Default all 0xFF,
	// which is what hardware reports when there is no migration agent.
	ReportIDMA [32]byte
	// ChipID is the chip's unique ID, which the VCEK certifies as HWID.
	// Default random, fixed for the life of the SimAttester. On Turin it
	// is an 8-byte hardware ID followed by 56 zero bytes.
	ChipID [64]byte
	// MaskChipID makes the report's CHIP_ID all zeros and sets
	// MASK_CHIP_ID in the signer info, as a host that hides the chip
	// identity does. The VCEK still certifies ChipID.
	MaskChipID bool

	// TCB is the REPORTED_TCB, and the default of the other TCB fields.
	// Default: a TCB that real parts of the product line report (Milan
	// 0xdb18000000000004, Genoa 0x541700000000000a, Turin
	// 0x4700000002000100, in the Turin layout).
	TCB uint64
	// CurrentTCB, CommittedTCB and LaunchTCB override the report's
	// CURRENT_TCB, COMMITTED_TCB and LAUNCH_TCB, for example to simulate
	// provisional firmware (current above committed). VCEKTCB is the TCB
	// the VCEK is issued for; a real VCEK matches REPORTED_TCB. Zero means
	// TCB.
	CurrentTCB, CommittedTCB, LaunchTCB, VCEKTCB uint64
	// PlatformInfo is PLATFORM_INFO. Default 0x1 (SMT enabled). A platform
	// without SMT can be simulated with other bits, e.g. 0x4 (ECC only).
	PlatformInfo uint64
	// CurrentVersion is the running SEV firmware version (major, minor,
	// build). Default: Milan 1.55.29, Genoa 1.55.40, Turin 1.55.61 (as
	// on real parts).
	CurrentVersion [3]uint8
	// CommittedVersion is the committed firmware version. Default
	// CurrentVersion.
	CommittedVersion [3]uint8
	// LaunchMitVector and CurrentMitVector are the mitigation vectors of a
	// v5 report (at 0x1F8 and 0x200). Default 0; must be 0 for older
	// versions, where those bytes are reserved.
	LaunchMitVector, CurrentMitVector uint64
	// SignatureAlgo is SIGNATURE_ALGO. Default 1 (ECDSA P-384 with
	// SHA-384). Other values simulate an unknown algorithm; the report is
	// still signed with ECDSA P-384.
	SignatureAlgo uint32

	// SP is the timing model of the secure processor that Attest goes
	// through (see SPModel): per-report latency, one report at a time,
	// and a throttle. The zero value (profile "none") adds no latency and
	// no throttle, and does not serialize. Report and SignReport never
	// wait.
	SP SPProfile
}

// withDefaults returns o with its defaults filled in for product, or an
// error if o asks for something the report format cannot express.
func (o SimOptions) withDefaults(product string) (SimOptions, error) {
	p, ok := simProducts[product]
	if !ok {
		return o, fmt.Errorf("snp: simulator: unsupported product line %q", product)
	}
	switch o.ReportVersion {
	case 0:
		o.ReportVersion = abi.ReportVersion3
	case abi.ReportVersion2, abi.ReportVersion3, abi.ReportVersion5:
	default:
		return o, fmt.Errorf("snp: simulator: report version %d not supported (want 2, 3 or 5)", o.ReportVersion)
	}
	if o.Stepping == 0 {
		o.Stepping = simDefaultStepping
		if o.ProductName != "" {
			if sp, err := kds.ParseProductName(o.ProductName, abi.VcekReportSigner); err == nil && sp.GetMachineStepping() != nil {
				o.Stepping = uint8(sp.GetMachineStepping().GetValue())
			}
		}
	}
	if o.Stepping > 0xf {
		return o, fmt.Errorf("snp: simulator: stepping %d does not fit the 4-bit CPUID field", o.Stepping)
	}
	if o.ProductName == "" {
		name, err := simProductName(product, o.Stepping)
		if err != nil {
			return o, err
		}
		o.ProductName = name
	}
	if o.GuestPolicy == 0 {
		o.GuestPolicy = abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true})
	}
	if _, err := abi.ParseSnpPolicy(o.GuestPolicy); err != nil {
		return o, fmt.Errorf("snp: simulator: guest policy 0x%x: %w", o.GuestPolicy, err)
	}
	if err := o.applyIDBlock(); err != nil {
		return o, err
	}
	if o.VMPL > 3 {
		return o, fmt.Errorf("snp: simulator: VMPL %d out of range 0-3", o.VMPL)
	}
	if o.ReportID == ([32]byte{}) {
		_, _ = rand.Read(o.ReportID[:])
	}
	if o.ReportIDMA == ([32]byte{}) {
		for i := range o.ReportIDMA {
			o.ReportIDMA[i] = 0xff
		}
	}
	hwidSize := len(o.ChipID)
	if product == "Turin" {
		// Turin reports carry the 8-byte hardware ID in CHIP_ID, the
		// rest zero.
		hwidSize = TurinHWIDSize
		if !zeroBytes(o.ChipID[hwidSize:]) {
			return o, fmt.Errorf("snp: simulator: a Turin CHIP_ID is an 8-byte hardware ID followed by zeros")
		}
	}
	if o.ChipID == ([64]byte{}) {
		_, _ = rand.Read(o.ChipID[:hwidSize])
	}
	if o.TCB == 0 {
		o.TCB = p.tcb
	}
	for _, t := range []*uint64{&o.CurrentTCB, &o.CommittedTCB, &o.LaunchTCB, &o.VCEKTCB} {
		if *t == 0 {
			*t = o.TCB
		}
	}
	if o.PlatformInfo == 0 {
		o.PlatformInfo = 1 // SMT enabled
	}
	if o.CurrentVersion == ([3]uint8{}) {
		o.CurrentVersion = p.version
	}
	if o.CommittedVersion == ([3]uint8{}) {
		o.CommittedVersion = o.CurrentVersion
	}
	if o.ReportVersion < abi.ReportVersion5 && (o.LaunchMitVector != 0 || o.CurrentMitVector != 0) {
		return o, fmt.Errorf("snp: simulator: mitigation vectors need report version 5, not %d", o.ReportVersion)
	}
	if o.SignatureAlgo == 0 {
		o.SignatureAlgo = abi.SignEcdsaP384Sha384
	}
	if err := o.SP.check(); err != nil {
		return o, err
	}
	return o, nil
}

// SimAttester is an attest.Attester that signs simulated reports with a
// VCEK of a SimChain. It is safe for concurrent use.
type SimAttester struct {
	opts SimOptions
	vcek []byte
	key  *ecdsa.PrivateKey
	// unsigned is the report with zero REPORT_DATA and no signature;
	// never written after construction.
	unsigned []byte
	// sp models the secure processor in front of Attest; nil for the
	// profile "none".
	sp *SPModel
	// chipSecret and vmrk are the roots of derived keys (simkeys.go).
	chipSecret, vmrk [32]byte
}

var _ attest.Attester = (*SimAttester)(nil)

// NewSimAttester issues a VCEK from chain for the chip and TCB of opts
// (once: every report of the attester is signed by the same VCEK, as on a
// real machine) and returns an attester producing reports with the
// contents opts selects.
func NewSimAttester(chain *SimChain, opts SimOptions) (*SimAttester, error) {
	if chain == nil {
		return nil, fmt.Errorf("snp: simulator: nil chain")
	}
	o, err := opts.withDefaults(chain.Product)
	if err != nil {
		return nil, err
	}
	vcek, key, err := chain.issueVCEK(o.ChipID, o.VCEKTCB, o.ProductName)
	if err != nil {
		return nil, err
	}
	p := simProducts[chain.Product]

	chipID := o.ChipID
	if o.MaskChipID {
		chipID = [64]byte{}
	}
	r := &spb.Report{
		Version:       o.ReportVersion,
		GuestSvn:      o.GuestSVN,
		Policy:        o.GuestPolicy,
		FamilyId:      bytes.Clone(o.FamilyID[:]),
		ImageId:       bytes.Clone(o.ImageID[:]),
		Vmpl:          o.VMPL,
		SignatureAlgo: o.SignatureAlgo,
		CurrentTcb:    o.CurrentTCB,
		PlatformInfo:  o.PlatformInfo,
		SignerInfo: abi.ComposeSignerInfo(abi.SignerInfo{
			SigningKey:  abi.VcekReportSigner,
			MaskChipKey: o.MaskChipID,
			AuthorKeyEn: o.AuthorKeyEn,
		}),
		ReportData:       make([]byte, abi.ReportDataSize),
		Measurement:      bytes.Clone(o.Measurement[:]),
		HostData:         bytes.Clone(o.HostData[:]),
		IdKeyDigest:      bytes.Clone(o.IDKeyDigest[:]),
		AuthorKeyDigest:  bytes.Clone(o.AuthorKeyDigest[:]),
		ReportId:         bytes.Clone(o.ReportID[:]),
		ReportIdMa:       bytes.Clone(o.ReportIDMA[:]),
		ReportedTcb:      o.TCB,
		ChipId:           chipID[:],
		CommittedTcb:     o.CommittedTCB,
		CurrentMajor:     uint32(o.CurrentVersion[0]),
		CurrentMinor:     uint32(o.CurrentVersion[1]),
		CurrentBuild:     uint32(o.CurrentVersion[2]),
		CommittedMajor:   uint32(o.CommittedVersion[0]),
		CommittedMinor:   uint32(o.CommittedVersion[1]),
		CommittedBuild:   uint32(o.CommittedVersion[2]),
		LaunchTcb:        o.LaunchTCB,
		LaunchMitVector:  o.LaunchMitVector,
		CurrentMitVector: o.CurrentMitVector,
		Signature:        make([]byte, abi.SignatureSize),
	}
	if o.ReportVersion >= abi.ReportVersion3 {
		// ReportToAbiBytes writes family, model and stepping from this.
		r.Cpuid1EaxFms = abi.MaskedCpuid1EaxFromSevProduct(&spb.SevProduct{
			Name:            p.name,
			MachineStepping: wrapperspb.UInt32(uint32(o.Stepping)),
		})
	}
	unsigned, err := abi.ReportToAbiBytes(r)
	if err != nil {
		return nil, fmt.Errorf("snp: simulator: encoding report: %w", err)
	}
	a := &SimAttester{opts: o, vcek: vcek, key: key, unsigned: unsigned}
	if err := a.initKeys(chain); err != nil {
		return nil, err
	}
	if !o.SP.IsZero() {
		if a.sp, err = NewSPModel(simDevice{a}, SPModelOptions{Profile: o.SP}); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// simDevice is the attester's report function without the
// secure-processor model, for the model to wrap.
type simDevice struct{ a *SimAttester }

func (d simDevice) Attest(ctx context.Context, reportData [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	return d.a.attest(ctx, reportData)
}

// SPStats returns the counters of the attester's secure-processor model
// (SimOptions.SP); all zero for the profile "none".
func (a *SimAttester) SPStats() SPStats {
	if a.sp == nil {
		return SPStats{}
	}
	return a.sp.Stats()
}

// Options returns the options of the attester with all defaults filled in:
// the random ChipID and ReportID, the TCB, and so on.
func (a *SimAttester) Options() SimOptions { return a.opts }

// VCEK returns the DER certificate of the attester's VCEK.
func (a *SimAttester) VCEK() []byte { return bytes.Clone(a.vcek) }

// Report returns a signed raw report (ReportSize bytes) carrying
// reportData. Tests tamper with it; SignReport re-signs it.
func (a *SimAttester) Report(reportData [64]byte) ([]byte, error) {
	report := bytes.Clone(a.unsigned)
	copy(report[0x50:0x90], reportData[:])
	if err := a.SignReport(report); err != nil {
		return nil, err
	}
	return report, nil
}

// Attest implements attest.Attester: evidence with a signed report
// carrying reportData and the VCEK certificate, without a CRL. It goes
// through the secure-processor model of SimOptions.SP, waiting as that
// model says.
func (a *SimAttester) Attest(ctx context.Context, reportData [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	if a.sp != nil {
		return a.sp.Attest(ctx, reportData)
	}
	return a.attest(ctx, reportData)
}

func (a *SimAttester) attest(ctx context.Context, reportData [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("snp: simulator: %w", err)
	}
	report, err := a.Report(reportData)
	if err != nil {
		return nil, err
	}
	return NewEvidence(report, a.VCEK(), nil), nil
}

// SignReport signs report (ReportSize bytes) in place with the VCEK key,
// whatever its contents: tests use it to make reports that are validly
// signed but wrong in some field. The signature is ECDSA P-384 over
// SHA-384 of the bytes before the signature, stored as little-endian R and
// S, whatever SIGNATURE_ALGO says.
func (a *SimAttester) SignReport(report []byte) error {
	if len(report) != abi.ReportSize {
		return fmt.Errorf("snp: simulator: report is %d bytes, want %d", len(report), abi.ReportSize)
	}
	digest := sha512.Sum384(abi.SignedComponent(report))
	r, s, err := ecdsa.Sign(rand.Reader, a.key, digest[:])
	if err != nil {
		return fmt.Errorf("snp: simulator: signing report: %w", err)
	}
	// The area after R and S must be zero.
	clear(report[len(abi.SignedComponent(report)):])
	if err := abi.SetSignature(r, s, report); err != nil {
		return fmt.Errorf("snp: simulator: storing report signature: %w", err)
	}
	return nil
}
