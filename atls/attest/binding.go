package attest

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// BindingLabel is the domain-separation prefix of the REPORT_DATA binding.
// It names the binding version: a change to the derivation changes it.
const BindingLabel = "ATLS-SNP-V1"

// NonceSize is the size of a freshness nonce.
const NonceSize = 32

// Role says which side of a TLS connection evidence was made for. It is
// bound into REPORT_DATA so that a client's evidence cannot be reflected
// back as a server's, or the other way round.
type Role byte

// Roles.
const (
	RoleServer Role = 'S'
	RoleClient Role = 'C'
)

func (r Role) String() string {
	switch r {
	case RoleServer:
		return "server"
	case RoleClient:
		return "client"
	}
	return fmt.Sprintf("Role(0x%02x)", byte(r))
}

// ParseRole accepts "server" or "client".
func ParseRole(s string) (Role, error) {
	switch s {
	case "server":
		return RoleServer, nil
	case "client":
		return RoleClient, nil
	}
	return 0, fmt.Errorf("unknown role %q (want server or client)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (r Role) MarshalText() ([]byte, error) {
	if r != RoleServer && r != RoleClient {
		return nil, fmt.Errorf("invalid role 0x%02x", byte(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Mode is the freshness mode of evidence.
type Mode byte

// Freshness modes.
const (
	// ModeStatic evidence is bound to the certificate key and validity
	// only; verifiers bound its age instead of checking a nonce.
	ModeStatic Mode = 0x00
	// ModeNonce evidence is bound to a fresh nonce chosen by the verifier.
	ModeNonce Mode = 0x01
	// ModeBatch evidence is bound to a fresh nonce chosen by the verifier,
	// like ModeNonce, through a shared report that commits to the root of
	// a Merkle tree over several bindings (see BatchProof).
	ModeBatch Mode = 0x02
	// ModeBound evidence is not carried in a certificate: it is sent after
	// the handshake and bound to the TLS exporter of the connection (see
	// BoundBinding). Certificate bindings never use it.
	ModeBound Mode = 0x03
)

func (m Mode) String() string {
	switch m {
	case ModeStatic:
		return "static"
	case ModeNonce:
		return "nonce"
	case ModeBatch:
		return "batch"
	case ModeBound:
		return "bound"
	}
	return fmt.Sprintf("Mode(0x%02x)", byte(m))
}

// ParseMode accepts "static", "nonce", "batch" or "bound".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "static":
		return ModeStatic, nil
	case "nonce":
		return ModeNonce, nil
	case "batch":
		return ModeBatch, nil
	case "bound":
		return ModeBound, nil
	}
	return 0, fmt.Errorf("unknown freshness mode %q (want static, nonce, batch or bound)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (m Mode) MarshalText() ([]byte, error) {
	if m != ModeStatic && m != ModeNonce && m != ModeBatch && m != ModeBound {
		return nil, fmt.Errorf("invalid mode 0x%02x", byte(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Binding is the input of the REPORT_DATA derivation. Every field is fixed
// length, so the concatenation is unambiguous.
type Binding struct {
	Role Role
	Mode Mode
	// SPKIHash is SHA-256 of the certificate's DER SubjectPublicKeyInfo.
	SPKIHash [sha256.Size]byte
	// Nonce is the peer's nonce in ModeNonce and ModeBatch, all zeros in
	// ModeStatic.
	Nonce [NonceSize]byte
	// NotBefore and NotAfter are the certificate validity, in whole
	// seconds since the Unix epoch.
	NotBefore, NotAfter int64
}

// Validate checks the binding parameters for consistency.
func (b *Binding) Validate() error {
	if b.Role != RoleServer && b.Role != RoleClient {
		return fmt.Errorf("invalid role 0x%02x", byte(b.Role))
	}
	switch b.Mode {
	case ModeNonce, ModeBatch:
		if b.Nonce == ([NonceSize]byte{}) {
			return fmt.Errorf("%v mode needs a non-zero nonce", b.Mode)
		}
	case ModeStatic:
		if b.Nonce != ([NonceSize]byte{}) {
			return fmt.Errorf("static mode must carry an all-zero nonce")
		}
	default:
		return fmt.Errorf("unsupported freshness mode %v", b.Mode)
	}
	if b.NotBefore < 0 || b.NotAfter < 0 || b.NotAfter < b.NotBefore {
		return fmt.Errorf("invalid validity [%d, %d]", b.NotBefore, b.NotAfter)
	}
	return nil
}

// ReportData derives the 64 bytes that go into the report:
//
//	SHA-512( "ATLS-SNP-V1" || role || mode || SHA-256(SPKI) || nonce
//	         || notBefore || notAfter )
//
// with role and mode one byte each and the times 8-byte big-endian.
func (b *Binding) ReportData() ([ReportDataSize]byte, error) {
	if err := b.Validate(); err != nil {
		return [ReportDataSize]byte{}, err
	}
	buf := make([]byte, 0, len(BindingLabel)+2+sha256.Size+NonceSize+16)
	buf = append(buf, BindingLabel...)
	buf = append(buf, byte(b.Role), byte(b.Mode))
	buf = append(buf, b.SPKIHash[:]...)
	buf = append(buf, b.Nonce[:]...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(b.NotBefore))
	buf = binary.BigEndian.AppendUint64(buf, uint64(b.NotAfter))
	return sha512.Sum512(buf), nil
}

// BindingForCertificate builds the binding of cert for the given role,
// mode and nonce (kept in nonce and batch mode, zeroed in any other).
func BindingForCertificate(cert *x509.Certificate, role Role, mode Mode, nonce [NonceSize]byte) Binding {
	if mode != ModeNonce && mode != ModeBatch {
		nonce = [NonceSize]byte{}
	}
	return Binding{
		Role:      role,
		Mode:      mode,
		SPKIHash:  sha256.Sum256(cert.RawSubjectPublicKeyInfo),
		Nonce:     nonce,
		NotBefore: cert.NotBefore.Unix(),
		NotAfter:  cert.NotAfter.Unix(),
	}
}

// BindingForTemplate is BindingForCertificate for a certificate that is
// yet to be made: spki is the DER SubjectPublicKeyInfo of its key.
func BindingForTemplate(spki []byte, notBefore, notAfter time.Time, role Role, mode Mode, nonce [NonceSize]byte) Binding {
	if mode != ModeNonce && mode != ModeBatch {
		nonce = [NonceSize]byte{}
	}
	return Binding{
		Role:      role,
		Mode:      mode,
		SPKIHash:  sha256.Sum256(spki),
		Nonce:     nonce,
		NotBefore: notBefore.Unix(),
		NotAfter:  notAfter.Unix(),
	}
}

// HexBytes is a byte slice that marshals to JSON as lowercase hex.
type HexBytes []byte

// MarshalText implements encoding.TextMarshaler.
func (h HexBytes) MarshalText() ([]byte, error) {
	return []byte(hex.EncodeToString(h)), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *HexBytes) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("invalid hex: %w", err)
	}
	*h = v
	return nil
}

func (h HexBytes) String() string { return hex.EncodeToString(h) }
