package snp

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"

	"github.com/confidential-go/atls/atls/attest"
)

// Description is a field-by-field decoding of SEV-SNP evidence, for
// display: what the attestation report and the signing key's certificate
// say. It is NOT a verification. Nothing in it has been checked: not the
// certificate chain, not the report signature, not the binding to a
// certificate or nonce, not any policy. A forged report decodes just as
// well. Use a Verifier to appraise evidence.
//
// It marshals to JSON with byte fields as lowercase hex and 64-bit
// values (TCB, guest policy, platform info) as "0x..." strings.
type Description struct {
	// CollectionType is the evidence collection's "__cmwc_t".
	CollectionType string `json:"collection_type"`
	// Digest is the SHA-256 of the encoded evidence (the EvidenceDigest
	// that verified claims of this evidence carry).
	Digest attest.HexBytes `json:"evidence_digest"`
	// Binding is the binding record (role and freshness mode) when the
	// evidence carries a well-formed one.
	Binding *attest.BindingParams `json:"binding,omitempty"`
	// BatchProof is the batch-proof record of batched evidence, when it
	// carries a well-formed one. It is decoded, not checked: which leaf it
	// proves is known only to a verifier that recomputes the binding.
	BatchProof *BatchProofDescription `json:"batch_proof,omitempty"`
	// Report is the decoded attestation report.
	Report ReportDescription `json:"report"`
	// SignerCert describes the VCEK or VLEK certificate in the evidence.
	SignerCert CertDescription `json:"signer_certificate"`
	// CRL describes the CRL in the evidence, if it carries one.
	CRL *CRLDescription `json:"crl,omitempty"`
	// Problems lists what could not be decoded (a malformed binding
	// record, an unparsable certificate, unknown platform info bits).
	// Decoding went on without those parts.
	Problems []string `json:"problems,omitempty"`
}

// BatchProofDescription is the inclusion proof of batched evidence: the
// certificate's leaf index in a tree of Size leaves whose root the report
// commits to, and the number of sibling hashes of the proof.
type BatchProofDescription struct {
	Index      uint32 `json:"index"`
	Size       uint32 `json:"size"`
	PathLength int    `json:"path_length"`
}

// ReportDescription is an attestation report, field by field, in the
// order of the ABI layout.
type ReportDescription struct {
	Version      uint32                 `json:"version"`
	GuestSVN     uint32                 `json:"guest_svn"`
	GuestPolicy  GuestPolicyDescription `json:"guest_policy"`
	FamilyID     attest.HexBytes        `json:"family_id"`
	ImageID      attest.HexBytes        `json:"image_id"`
	VMPL         uint32                 `json:"vmpl"`
	SignatureAlg uint32                 `json:"signature_algo"`
	// SignatureAlgName names SignatureAlg ("ECDSA P-384 with SHA-384").
	SignatureAlgName string                  `json:"signature_algo_name"`
	CurrentTCB       TCBDescription          `json:"current_tcb"`
	PlatformInfo     PlatformInfoDescription `json:"platform_info"`
	SignerInfo       SignerInfoDescription   `json:"signer_info"`
	ReportData       attest.HexBytes         `json:"report_data"`
	Measurement      attest.HexBytes         `json:"measurement"`
	HostData         attest.HexBytes         `json:"host_data"`
	IDKeyDigest      attest.HexBytes         `json:"id_key_digest"`
	AuthorKeyDigest  attest.HexBytes         `json:"author_key_digest"`
	ReportID         attest.HexBytes         `json:"report_id"`
	ReportIDMA       attest.HexBytes         `json:"report_id_ma"`
	ReportedTCB      TCBDescription          `json:"reported_tcb"`
	// CPUID is the family, model and stepping of version 3 and later
	// reports; nil for older ones.
	CPUID *CPUIDDescription `json:"cpuid,omitempty"`
	// ProductLine is "Milan", "Genoa", "Turin", from CPUID or, for
	// version 2 reports, from the signing certificate's product name; ""
	// when neither says.
	ProductLine string          `json:"product_line"`
	ChipID      attest.HexBytes `json:"chip_id"`
	// ChipIDMasked is true when CHIP_ID is all zeros (the host set
	// MASK_CHIP_ID).
	ChipIDMasked     bool           `json:"chip_id_masked"`
	CommittedTCB     TCBDescription `json:"committed_tcb"`
	CurrentVersion   string         `json:"current_version"`
	CommittedVersion string         `json:"committed_version"`
	LaunchTCB        TCBDescription `json:"launch_tcb"`
	// LaunchMitVector and CurrentMitVector are set for version 5 and
	// later reports.
	LaunchMitVector  *Hex64 `json:"launch_mit_vector,omitempty"`
	CurrentMitVector *Hex64 `json:"current_mit_vector,omitempty"`
	// SignatureR and SignatureS are the ECDSA signature, big-endian.
	SignatureR attest.HexBytes `json:"signature_r"`
	SignatureS attest.HexBytes `json:"signature_s"`
}

// Hex64 is a 64-bit value that marshals as "0x" and 16 hex digits.
type Hex64 uint64

// MarshalText implements encoding.TextMarshaler.
func (h Hex64) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: "0x" and 1 to 16
// hex digits.
func (h *Hex64) UnmarshalText(b []byte) error {
	digits, ok := strings.CutPrefix(string(b), "0x")
	if !ok || digits == "" || len(digits) > 16 {
		return fmt.Errorf("%q: want 0x and 1 to 16 hex digits", b)
	}
	v, err := strconv.ParseUint(digits, 16, 64)
	if err != nil {
		return fmt.Errorf("%q: %w", b, err)
	}
	*h = Hex64(v)
	return nil
}

func (h Hex64) String() string { return fmt.Sprintf("0x%016x", uint64(h)) }

// TCBDescription is a TCB_VERSION split into its security patch levels,
// in the layout of the report's product line (ProductLine.DecodeTCB).
type TCBDescription struct {
	Raw Hex64 `json:"raw"`
	// FMC is set for product lines with an FMC level (Turin and later).
	FMC        *uint8 `json:"fmc,omitempty"`
	Bootloader uint8  `json:"bootloader"`
	TEE        uint8  `json:"tee"`
	SNP        uint8  `json:"snp"`
	Microcode  uint8  `json:"microcode"`
	// Reserved holds the reserved bytes, which are zero: bytes 2-5 in
	// the Milan and Genoa layout, bytes 4-6 (and a zero) in Turin's.
	Reserved [4]uint8 `json:"reserved"`
}

// describeTCB splits v in the layout of product line p (the Milan and
// Genoa layout when p is unknown).
func describeTCB(p ProductLine, v uint64) TCBDescription {
	t := p.DecodeTCB(v)
	d := TCBDescription{Raw: Hex64(v), Bootloader: t.Bootloader, TEE: t.TEE, SNP: t.SNP, Microcode: t.Microcode}
	if p.HasFMC() {
		d.FMC = &t.FMC
	}
	for j, i := range reservedBytes(p) {
		d.Reserved[j] = uint8(v >> (8 * i))
	}
	return d
}

// reservedBytes lists the byte positions that p's TCB layout reserves.
func reservedBytes(p ProductLine) []int {
	var out []int
	for i := 0; i < 8; i++ {
		if p.layout().reserved>>(8*i)&0xff != 0 {
			out = append(out, i)
		}
	}
	return out
}

// String is the TCB as "0x... ([fmc F, ]bootloader B, tee T, snp S, microcode M)".
func (t TCBDescription) String() string {
	fmc := ""
	if t.FMC != nil {
		fmc = fmt.Sprintf("fmc %d, ", *t.FMC)
	}
	s := fmt.Sprintf("%v (%sbootloader %d, tee %d, snp %d, microcode %d", t.Raw, fmc, t.Bootloader, t.TEE, t.SNP, t.Microcode)
	if t.Reserved != [4]uint8{} {
		s += fmt.Sprintf(", reserved %v", t.Reserved)
	}
	return s + ")"
}

// GuestPolicyDescription is the guest POLICY the guest owner chose at
// launch, bit by bit.
type GuestPolicyDescription struct {
	Raw Hex64 `json:"raw"`
	// MinimumABI is the firmware ABI version the guest requires,
	// "major.minor".
	MinimumABI           string `json:"minimum_abi"`
	SMT                  bool   `json:"smt_allowed"`
	MigrateMA            bool   `json:"migrate_ma_allowed"`
	Debug                bool   `json:"debug_allowed"`
	SingleSocket         bool   `json:"single_socket_required"`
	CXLAllowed           bool   `json:"cxl_allowed"`
	MemAES256XTS         bool   `json:"mem_aes_256_xts_required"`
	RAPLDisabled         bool   `json:"rapl_disabled_required"`
	CiphertextHidingDRAM bool   `json:"ciphertext_hiding_dram_required"`
	PageSwapDisabled     bool   `json:"page_swap_disabled"`
}

// PlatformInfoDescription is PLATFORM_INFO, bit by bit.
type PlatformInfoDescription struct {
	Raw                     Hex64 `json:"raw"`
	SMTEnabled              bool  `json:"smt_enabled"`
	TSMEEnabled             bool  `json:"tsme_enabled"`
	ECCEnabled              bool  `json:"ecc_enabled"`
	RAPLDisabled            bool  `json:"rapl_disabled"`
	CiphertextHidingEnabled bool  `json:"ciphertext_hiding_dram_enabled"`
	AliasCheckComplete      bool  `json:"alias_check_complete"`
	TIOEnabled              bool  `json:"tio_enabled"`
}

// SignerInfoDescription is the report's SIGNER_INFO.
type SignerInfoDescription struct {
	// SigningKey is "VCEK", "VLEK" or "None".
	SigningKey  string `json:"signing_key"`
	MaskChipKey bool   `json:"mask_chip_key"`
	AuthorKeyEn bool   `json:"author_key_en"`
}

// CPUIDDescription is the CPUID family, model and stepping of a report.
type CPUIDDescription struct {
	Family   uint8 `json:"family"`
	Model    uint8 `json:"model"`
	Stepping uint8 `json:"stepping"`
}

// CertDescription describes the certificate of the key that signed the
// report, with AMD's KDS extensions.
type CertDescription struct {
	Subject            string          `json:"subject"`
	Issuer             string          `json:"issuer"`
	Serial             string          `json:"serial"`
	NotBefore          time.Time       `json:"not_before"`
	NotAfter           time.Time       `json:"not_after"`
	SignatureAlgorithm string          `json:"signature_algorithm"`
	PublicKeyAlgorithm string          `json:"public_key_algorithm"`
	SHA256             attest.HexBytes `json:"sha256"`
	// The AMD extensions, when they parse.
	ProductName string          `json:"product_name,omitempty"`
	TCB         *TCBDescription `json:"tcb,omitempty"`
	HWID        attest.HexBytes `json:"hwid,omitempty"`
	CSPID       string          `json:"csp_id,omitempty"`
}

// CRLDescription describes a CRL.
type CRLDescription struct {
	Issuer     string    `json:"issuer"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
	Revoked    int       `json:"revoked"`
}

// DescribeEvidence decodes SEV-SNP evidence for display, without
// verifying anything (see Description). It fails only when the evidence
// is not an SNP collection or the report cannot be decoded at all; parts
// that cannot be decoded are listed in Description.Problems.
func DescribeEvidence(ev *attest.Evidence) (*Description, error) {
	p, err := ParseEvidence(ev)
	if err != nil {
		return nil, err
	}
	r, err := abi.ReportToProto(p.Report)
	if err != nil {
		return nil, attest.Fail(attest.ErrMalformedEvidence, "snp.report.format", "%v", err)
	}
	d := &Description{CollectionType: ev.Type}
	if digest, err := ev.Digest(); err == nil {
		d.Digest = digest[:]
	}
	if _, ok := ev.Records[attest.BindingRecordLabel]; ok {
		if b, err := ev.Binding(); err == nil {
			d.Binding = &b
		} else {
			d.Problems = append(d.Problems, fmt.Sprintf("binding record: %v", err))
		}
	} else {
		d.Problems = append(d.Problems, "no binding record (raw platform evidence, not from an attested certificate)")
	}
	if r, ok := ev.Records[attest.BatchRecordLabel]; ok {
		bp, err := attest.ParseBatchProof(r.Value)
		switch {
		case r.MediaType != attest.BatchMediaType:
			d.Problems = append(d.Problems, fmt.Sprintf("batch-proof record: media type %q, want %q", r.MediaType, attest.BatchMediaType))
		case err != nil:
			d.Problems = append(d.Problems, fmt.Sprintf("batch-proof record: %v", err))
		default:
			d.BatchProof = &BatchProofDescription{Index: bp.Index, Size: bp.Size, PathLength: len(bp.Path)}
		}
	}
	_, hasProof := ev.Records[attest.BatchRecordLabel]
	if b := d.Binding; b != nil && hasProof != (b.Mode == attest.ModeBatch) {
		with := "without"
		if hasProof {
			with = "with"
		}
		d.Problems = append(d.Problems, fmt.Sprintf("%s-mode evidence %s a batch-proof record (verifiers refuse it: batch.proof)", b.Mode, with))
	}

	rd := &d.Report
	rd.Version = r.GetVersion()
	rd.GuestSVN = r.GetGuestSvn()
	rd.GuestPolicy = describeGuestPolicy(r.GetPolicy())
	rd.FamilyID = r.GetFamilyId()
	rd.ImageID = r.GetImageId()
	rd.VMPL = r.GetVmpl()
	rd.SignatureAlg = r.GetSignatureAlgo()
	rd.SignatureAlgName = "unknown"
	if rd.SignatureAlg == abi.SignEcdsaP384Sha384 {
		rd.SignatureAlgName = "ECDSA P-384 with SHA-384"
	}
	rd.PlatformInfo, err = describePlatformInfo(r.GetPlatformInfo())
	if err != nil {
		d.Problems = append(d.Problems, fmt.Sprintf("platform info: %v", err))
	}
	info, err := abi.ParseSignerInfo(r.GetSignerInfo())
	if err != nil { // ReportToProto has parsed it already
		return nil, attest.Fail(attest.ErrMalformedEvidence, "snp.report.format", "%v", err)
	}
	rd.SignerInfo = SignerInfoDescription{SigningKey: info.SigningKey.String(), MaskChipKey: info.MaskChipKey, AuthorKeyEn: info.AuthorKeyEn}
	rd.ReportData = r.GetReportData()
	rd.Measurement = r.GetMeasurement()
	rd.HostData = r.GetHostData()
	rd.IDKeyDigest = r.GetIdKeyDigest()
	rd.AuthorKeyDigest = r.GetAuthorKeyDigest()
	rd.ReportID = r.GetReportId()
	rd.ReportIDMA = r.GetReportIdMa()
	if rd.Version >= abi.ReportVersion3 {
		f, m, s := abi.FmsFromCpuid1Eax(r.GetCpuid1EaxFms())
		rd.CPUID = &CPUIDDescription{Family: f, Model: m, Stepping: s}
		if line, known, _ := cpuidLine(f, m); known {
			rd.ProductLine = line.String()
		}
	}
	rd.ChipID = r.GetChipId()
	rd.ChipIDMasked = zeroBytes(rd.ChipID)
	rd.CurrentVersion = currentVersion(r)
	rd.CommittedVersion = committedVersion(r)
	if rd.Version >= abi.ReportVersion5 {
		l, c := Hex64(r.GetLaunchMitVector()), Hex64(r.GetCurrentMitVector())
		rd.LaunchMitVector, rd.CurrentMitVector = &l, &c
	}
	// R and S are stored little-endian, zero-padded to 72 bytes each.
	const sigOffset, sigPart = 0x2A0, 0x48
	rd.SignatureR = bigEndian(p.Report[sigOffset : sigOffset+sigPart])
	rd.SignatureS = bigEndian(p.Report[sigOffset+sigPart : sigOffset+2*sigPart])

	var certLine ProductLine
	d.SignerCert, certLine = describeCert(p.Cert, info.SigningKey, d)
	if rd.ProductLine == "" && certLine != ProductUnknown {
		// A version 2 report, or a CPUID not in the table: the
		// certificate's product name says.
		rd.ProductLine = certLine.String()
	}
	line, _ := ParseProductLine(rd.ProductLine)
	rd.CurrentTCB = describeTCB(line, r.GetCurrentTcb())
	rd.ReportedTCB = describeTCB(line, r.GetReportedTcb())
	rd.CommittedTCB = describeTCB(line, r.GetCommittedTcb())
	rd.LaunchTCB = describeTCB(line, r.GetLaunchTcb())
	if p.CRL != nil {
		if crl, err := x509.ParseRevocationList(p.CRL); err != nil {
			d.Problems = append(d.Problems, fmt.Sprintf("CRL: %v", err))
		} else {
			d.CRL = &CRLDescription{
				Issuer: crl.Issuer.String(), ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate,
				Revoked: len(crl.RevokedCertificateEntries),
			}
		}
	}
	return d, nil
}

func describeGuestPolicy(v uint64) GuestPolicyDescription {
	// ReportToProto has refused policies that do not parse.
	gp, _ := abi.ParseSnpPolicy(v)
	return GuestPolicyDescription{
		Raw:                  Hex64(v),
		MinimumABI:           fmt.Sprintf("%d.%d", gp.ABIMajor, gp.ABIMinor),
		SMT:                  gp.SMT,
		MigrateMA:            gp.MigrateMA,
		Debug:                gp.Debug,
		SingleSocket:         gp.SingleSocket,
		CXLAllowed:           gp.CXLAllowed,
		MemAES256XTS:         gp.MemAES256XTS,
		RAPLDisabled:         gp.RAPLDis,
		CiphertextHidingDRAM: gp.CipherTextHidingDRAM,
		PageSwapDisabled:     gp.PageSwapDisable,
	}
}

func describePlatformInfo(v uint64) (PlatformInfoDescription, error) {
	pi, err := abi.ParseSnpPlatformInfo(v)
	return PlatformInfoDescription{
		Raw:                     Hex64(v),
		SMTEnabled:              pi.SMTEnabled,
		TSMEEnabled:             pi.TSMEEnabled,
		ECCEnabled:              pi.ECCEnabled,
		RAPLDisabled:            pi.RAPLDisabled,
		CiphertextHidingEnabled: pi.CiphertextHidingDRAMEnabled,
		AliasCheckComplete:      pi.AliasCheckComplete,
		TIOEnabled:              pi.TIOEnabled,
	}, err
}

// describeCert decodes the signer's certificate, and returns the product
// line its product name names; problems go to d.
func describeCert(der []byte, signer abi.ReportSigner, d *Description) (CertDescription, ProductLine) {
	sum := sha256.Sum256(der)
	out := CertDescription{SHA256: sum[:]}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		d.Problems = append(d.Problems, fmt.Sprintf("%v certificate: %v", signer, err))
		return out, ProductUnknown
	}
	out.Subject = c.Subject.String()
	out.Issuer = c.Issuer.String()
	out.Serial = c.SerialNumber.String()
	out.NotBefore, out.NotAfter = c.NotBefore, c.NotAfter
	out.SignatureAlgorithm = c.SignatureAlgorithm.String()
	out.PublicKeyAlgorithm = c.PublicKeyAlgorithm.String()
	if signer != abi.VcekReportSigner && signer != abi.VlekReportSigner {
		return out, ProductUnknown
	}
	exts, err := ParseCertExtensions(c, signer)
	if err != nil {
		d.Problems = append(d.Problems, fmt.Sprintf("%v certificate AMD extensions: %v", signer, err))
		return out, ProductUnknown
	}
	out.ProductName = exts.ProductName
	t := describeTCB(exts.Product, exts.TCB)
	out.TCB = &t
	out.HWID = bytes.Clone(exts.HWID)
	out.CSPID = exts.CSPID
	return out, exts.Product
}

// bigEndian reverses a little-endian number and drops its leading zero
// bytes beyond the 48 of a P-384 value.
func bigEndian(le []byte) []byte {
	be := make([]byte, len(le))
	for i, b := range le {
		be[len(le)-1-i] = b
	}
	const size = 48
	if len(be) > size && zeroBytes(be[:len(be)-size]) {
		be = be[len(be)-size:]
	}
	return be
}
