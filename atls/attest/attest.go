// Package attest holds the platform-neutral pieces of attested TLS: the
// Attester and Verifier interfaces that a TEE implements, the evidence
// container that travels in a certificate, the REPORT_DATA binding between
// evidence and a TLS key, the claims a verifier hands back, and the error
// vocabulary every check uses.
//
// A [Batcher] in front of any Attester makes one report serve every request
// that arrived while the previous report was in flight: the report commits
// to the root of an RFC 9162 Merkle tree over the requests' bindings, and
// each request's evidence carries its own inclusion proof ([BatchProof]).
// Verifiers get the REPORT_DATA to expect from [ExpectedReportData].
//
// Nothing here knows about AMD SEV-SNP; package snp implements the
// interfaces for it. Keeping this layer small and pure lets the TLS glue in
// package atls stay unchanged when another TEE (for example Intel TDX, which
// also has 64 bytes of report data) is added.
package attest

import (
	"bytes"
	"context"
	"time"
)

// ReportDataSize is the number of bytes of caller data a TEE report carries.
const ReportDataSize = 64

// Attester produces evidence about the platform it runs on, binding the
// given 64 bytes of report data into the hardware-signed report.
//
// Implementations must be safe for concurrent use.
type Attester interface {
	Attest(ctx context.Context, reportData [ReportDataSize]byte) (*Evidence, error)
}

// Verifier appraises evidence: it checks the hardware signature up to a
// trusted root, checks that the report carries exactly reportData, and
// applies its policy. It returns the verified claims, or an error that wraps
// one of the sentinel errors of this package (see CheckError).
//
// Implementations must be safe for concurrent use.
type Verifier interface {
	Verify(ctx context.Context, ev *Evidence, reportData [ReportDataSize]byte) (*Claims, error)
}

// Claims are what a verifier vouches for after a successful appraisal.
// Applications use them for authorization decisions.
type Claims struct {
	// Platform names the TEE, e.g. "amd-sev-snp".
	Platform string `json:"platform"`
	// Simulated is true when the evidence was signed by a simulated
	// hardware root that the verifier was explicitly told to trust. Such
	// claims prove nothing about real hardware.
	Simulated bool `json:"simulated"`
	// Role and Mode are the binding parameters the evidence was made for.
	Role Role `json:"role"`
	Mode Mode `json:"mode"`
	// NotBefore and NotAfter are the validity of the attested certificate
	// (bound into REPORT_DATA). Zero when the claims do not come from a
	// certificate.
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// ValidUntil, when set, is when the verdict lapses on the verifier's
	// side (for SEV-SNP: the VCEK's expiry, or the CRL's next update).
	// Caches of verification results must not outlive it.
	ValidUntil time.Time `json:"valid_until,omitzero"`
	// ReportData is the 64 bytes the report carried (already checked).
	ReportData HexBytes `json:"report_data"`
	// EvidenceDigest is the SHA-256 of the encoded evidence, a stable
	// identifier for logs and caches.
	EvidenceDigest HexBytes `json:"evidence_digest"`
	// SNP holds the AMD SEV-SNP specific claims; nil for other platforms.
	SNP *SNPClaims `json:"snp,omitempty"`
}

// SNPClaims are the verified fields of an AMD SEV-SNP attestation report.
// Byte fields are exactly as in the report; TCB values are the raw 64-bit
// TCB_VERSION encoding, whose layout depends on Product (decode them with
// the snp package's ProductLine.DecodeTCB).
type SNPClaims struct {
	ReportVersion uint32 `json:"report_version"`
	// Product is the product line ("Milan", "Genoa", "Turin") that the
	// signed evidence shows: the signing certificate's, under whose ARK
	// it chains, in agreement with the report's CPUID.
	Product         string   `json:"product"`
	Signer          string   `json:"signer"` // "VCEK" or "VLEK"
	GuestSVN        uint32   `json:"guest_svn"`
	GuestPolicy     uint64   `json:"guest_policy"`
	FamilyID        HexBytes `json:"family_id"`
	ImageID         HexBytes `json:"image_id"`
	VMPL            uint32   `json:"vmpl"`
	Measurement     HexBytes `json:"measurement"`
	HostData        HexBytes `json:"host_data"`
	IDKeyDigest     HexBytes `json:"id_key_digest"`
	AuthorKeyDigest HexBytes `json:"author_key_digest"`
	ReportID        HexBytes `json:"report_id"`
	ReportIDMA      HexBytes `json:"report_id_ma"`
	ChipID          HexBytes `json:"chip_id"`
	PlatformInfo    uint64   `json:"platform_info"`
	CurrentTCB      uint64   `json:"current_tcb"`
	ReportedTCB     uint64   `json:"reported_tcb"`
	CommittedTCB    uint64   `json:"committed_tcb"`
	LaunchTCB       uint64   `json:"launch_tcb"`
	// CertTCB is the TCB the VCEK/VLEK certificate was issued for.
	CertTCB uint64 `json:"cert_tcb"`
	// Firmware version: current and committed (major, minor, build).
	CurrentVersion   string `json:"current_version"`
	CommittedVersion string `json:"committed_version"`
	// LaunchMitVector and CurrentMitVector are LAUNCH_MIT_VECTOR and
	// CURRENT_MIT_VECTOR, the mitigations in place at launch and when the
	// report was made, in reports of version 5 and later. Zero in
	// earlier versions, where those bytes are reserved (and checked to be
	// zero). JSON leaves them out when zero.
	LaunchMitVector  uint64 `json:"launch_mit_vector,omitempty"`
	CurrentMitVector uint64 `json:"current_mit_vector,omitempty"`
}

// Clone returns a deep copy of c, so that callers may keep or change it
// without affecting cached results.
func (c *Claims) Clone() *Claims {
	if c == nil {
		return nil
	}
	out := *c
	out.ReportData = bytes.Clone(c.ReportData)
	out.EvidenceDigest = bytes.Clone(c.EvidenceDigest)
	if c.SNP != nil {
		s := *c.SNP
		for _, f := range []*HexBytes{&s.FamilyID, &s.ImageID, &s.Measurement, &s.HostData, &s.IDKeyDigest,
			&s.AuthorKeyDigest, &s.ReportID, &s.ReportIDMA, &s.ChipID} {
			*f = bytes.Clone(*f)
		}
		out.SNP = &s
	}
	return &out
}
