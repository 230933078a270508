package attest

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
)

// BoundLabel is the domain-separation prefix of the REPORT_DATA derivation
// of session-bound evidence ([ModeBound]). It differs from BindingLabel and
// BatchLabel, so no bound REPORT_DATA equals a certificate binding or a
// batch root.
const BoundLabel = "ATLS-SNP-V1-BOUND"

// ExporterSize is the length of the TLS exporter value bound into
// session-bound evidence.
const ExporterSize = 32

// Exporter labels (RFC 8446 section 7.5) of session-bound evidence, one per
// role of the sender: both ends of a connection compute the same value for
// a label, so a distinct label per role keeps a peer from reflecting our
// own evidence back at us.
const (
	ExporterLabelServer = "EXPORTER-atls-bound-server-v1"
	ExporterLabelClient = "EXPORTER-atls-bound-client-v1"
)

// ExporterLabel returns the exporter label of evidence sent by role r, or ""
// for an invalid role.
func ExporterLabel(r Role) string {
	switch r {
	case RoleServer:
		return ExporterLabelServer
	case RoleClient:
		return ExporterLabelClient
	}
	return ""
}

// BoundBinding is the input of the REPORT_DATA derivation of session-bound
// evidence. Every field is fixed length, so the concatenation is
// unambiguous.
type BoundBinding struct {
	// Role is the role of the sender of the evidence.
	Role Role
	// Exporter is ExportKeyingMaterial(ExporterLabel(Role), nil, 32) of
	// the connection the evidence is sent on.
	Exporter [ExporterSize]byte
	// LeafHash is SHA-256 of the DER certificate the sender presented in
	// the handshake, all zeros if it presented none.
	LeafHash [sha256.Size]byte
	// Nonce is the verifier's nonce of a re-attestation, all zeros for the
	// evidence sent right after the handshake.
	Nonce [NonceSize]byte
}

// ReportData derives the 64 bytes that go into the report:
//
//	SHA-512( "ATLS-SNP-V1-BOUND" || role || 0x03 || exporter
//	         || SHA-256(leaf) || nonce )
//
// with role and mode one byte each. It fails for an invalid role or an
// all-zero exporter.
func (b *BoundBinding) ReportData() ([ReportDataSize]byte, error) {
	if b.Role != RoleServer && b.Role != RoleClient {
		return [ReportDataSize]byte{}, fmt.Errorf("invalid role 0x%02x", byte(b.Role))
	}
	if b.Exporter == ([ExporterSize]byte{}) {
		return [ReportDataSize]byte{}, fmt.Errorf("all-zero exporter")
	}
	buf := make([]byte, 0, len(BoundLabel)+2+ExporterSize+sha256.Size+NonceSize)
	buf = append(buf, BoundLabel...)
	buf = append(buf, byte(b.Role), byte(ModeBound))
	buf = append(buf, b.Exporter[:]...)
	buf = append(buf, b.LeafHash[:]...)
	buf = append(buf, b.Nonce[:]...)
	return sha512.Sum512(buf), nil
}

// ExpectedBoundReportData returns the REPORT_DATA that ev's report must
// carry for bound binding b: b.ReportData(), or, when ev carries a
// batch-proof record, the batch REPORT_DATA of the root that the proof
// gives for that leaf (one report per batch of sessions, exactly as in
// ModeBatch). A malformed proof fails with ErrMalformedEvidence and a
// batch.* check; an invalid binding with ErrBinding ("binding").
func ExpectedBoundReportData(ev *Evidence, b BoundBinding) ([ReportDataSize]byte, error) {
	var none [ReportDataSize]byte
	leaf, err := b.ReportData()
	if err != nil {
		return none, Wrap(ErrBinding, "binding", err)
	}
	if ev == nil {
		return none, Fail(ErrMalformedEvidence, "evidence.collection", "nil evidence")
	}
	rec, ok := ev.Records[BatchRecordLabel]
	if !ok {
		return leaf, nil
	}
	return proofReportData(rec, leaf)
}
