package vectors

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// Session-bound vectors (SPEC.md section 9) live in their own directory,
// beside the certificate vectors, with their own manifest. A frame
// cannot be checked without the TLS connection it was sent on, so each
// vector carries the exporter value (for the sender's label) as an input,
// with the sender's certificate and, for a re-attestation, the nonce.

// BoundManifestFile and BoundFormat name the bound vectors.
const (
	BoundManifestFile = "manifest.json"
	BoundFormat       = "atls-bound-vectors/1"
)

// BoundManifest lists the bound vectors. Roots and policy are those of the
// certificate vectors' manifest.
type BoundManifest struct {
	Format      string        `json:"format"`
	Description string        `json:"description"`
	Spec        string        `json:"spec"`
	Generator   string        `json:"generator"`
	Roots       string        `json:"roots"`
	Vectors     []BoundVector `json:"vectors"`
}

// BoundVector is one recorded frame, what its receiver knows, and the
// outcome.
type BoundVector struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Frame is the file holding the frame, exactly as sent.
	Frame string `json:"frame"`
	// PeerCert is the PEM certificate the sender presented; "" for none.
	PeerCert string `json:"peer_cert,omitempty"`
	// Role is the sender's role, as the receiver expects it.
	Role string `json:"role"`
	// Exporter is ExportKeyingMaterial(label of Role, empty, 32), hex.
	Exporter string `json:"exporter"`
	// Nonce is the receiver's re-attestation nonce, hex; "" for the
	// first exchange.
	Nonce string `json:"nonce,omitempty"`
	// Now is the verification time, RFC 3339.
	Now    string          `json:"now"`
	Valid  bool            `json:"valid"`
	Check  string          `json:"check,omitempty"`
	Claims json.RawMessage `json:"claims,omitempty"`
}

// Binding returns the binding the receiver of v computes, and v's time.
func (v *BoundVector) Binding(dir string) (attest.BoundBinding, time.Time, error) {
	var b attest.BoundBinding
	now, err := time.Parse(time.RFC3339, v.Now)
	if err != nil {
		return b, now, err
	}
	if err := b.Role.UnmarshalText([]byte(v.Role)); err != nil {
		return b, now, err
	}
	if err := decodeHexInto(b.Exporter[:], v.Exporter); err != nil {
		return b, now, fmt.Errorf("exporter: %w", err)
	}
	if v.Nonce != "" {
		if err := decodeHexInto(b.Nonce[:], v.Nonce); err != nil {
			return b, now, fmt.Errorf("nonce: %w", err)
		}
	}
	if v.PeerCert != "" {
		data, err := os.ReadFile(filepath.Join(dir, v.PeerCert))
		if err != nil {
			return b, now, err
		}
		blk, _ := pem.Decode(data)
		if blk == nil {
			return b, now, fmt.Errorf("%s: no PEM block", v.PeerCert)
		}
		b.LeafHash = sha256.Sum256(blk.Bytes)
	}
	return b, now, nil
}

func decodeHexInto(dst []byte, s string) error {
	b, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	if len(b) != len(dst) {
		return fmt.Errorf("%d bytes, want %d", len(b), len(dst))
	}
	copy(dst, b)
	return nil
}

// VerifyBoundVector runs the library's check of a received frame
// (atls.ReadBoundFrame, then atls.AppraiseBoundEvidence) on v, a vector
// in dir, with the roots and policy of the certificate vectors in
// vectorsDir (manifest m).
func VerifyBoundVector(ctx context.Context, dir, vectorsDir string, m *Manifest, v BoundVector) (*attest.Claims, error) {
	b, now, err := v.Binding(dir)
	if err != nil {
		return nil, err
	}
	ver, err := NewVerifier(vectorsDir, m, now)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, v.Frame))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	typ, payload, err := atls.ReadBoundFrame(f)
	if err != nil {
		return nil, err
	}
	switch typ {
	case atls.BoundFrameNoEvidence:
		return nil, attest.Fail(attest.ErrNotAttested, "bound.missing", "the peer sent no evidence")
	case atls.BoundFrameReattest:
		return nil, attest.Fail(attest.ErrMalformedEvidence, "bound.frame", "a re-attestation request where evidence was expected")
	}
	return atls.AppraiseBoundEvidence(ctx, ver, payload, b)
}

// LoadBoundManifest reads the bound vectors' manifest in dir.
func LoadBoundManifest(dir string) (*BoundManifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, BoundManifestFile))
	if err != nil {
		return nil, err
	}
	var m BoundManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", BoundManifestFile, err)
	}
	if m.Format != BoundFormat {
		return nil, fmt.Errorf("%s: format %q, want %q", BoundManifestFile, m.Format, BoundFormat)
	}
	return &m, nil
}

// boundSpec is one bound vector to make: the binding the evidence is made
// for (from the receiver's, edited), the binding record, and edits of the
// frame.
type boundSpec struct {
	name, desc string
	role       attest.Role // the sender's
	noCert     bool
	reattest   bool
	batch      bool
	// edit changes the binding the evidence is made for.
	edit func(b *attest.BoundBinding)
	// record is the binding record's role and mode; zero: role, bound.
	recordRole attest.Role
	recordMode attest.Mode
	// frame replaces the frame made from the evidence; nil keeps it.
	frame func(f []byte) []byte
	// tamper flips a bit of the report's signature.
	tamper bool
}

func boundSpecs() []boundSpec {
	other := sha256.Sum256([]byte("atls bound vectors: another value"))
	return []boundSpec{
		{name: "bound-server", desc: "A server's first frame: evidence bound to the connection's exporter and its certificate.", role: attest.RoleServer},
		{name: "bound-client-no-cert", desc: "A client that presented no certificate: the leaf hash is all zeros.", role: attest.RoleClient, noCert: true},
		{name: "bound-reattest", desc: "A server's answer to a re-attestation request: the nonce is the requester's.", role: attest.RoleServer, reattest: true},
		{name: "bound-batched", desc: "A server's first frame whose report is shared by a batch: the bound REPORT_DATA is a leaf, with a batch-proof record.", role: attest.RoleServer, batch: true},
		{name: "bound-other-exporter", desc: "Evidence made for another connection's exporter (relay, replay).", role: attest.RoleServer,
			edit: func(b *attest.BoundBinding) { b.Exporter = other }},
		{name: "bound-other-leaf", desc: "Evidence made for another certificate than the one the sender presented.", role: attest.RoleServer,
			edit: func(b *attest.BoundBinding) { b.LeafHash = other }},
		{name: "bound-other-nonce", desc: "A re-attestation answer made for another nonce.", role: attest.RoleServer, reattest: true,
			edit: func(b *attest.BoundBinding) { b.Nonce = other }},
		{name: "bound-role-in-report", desc: "The report binds the client role under a binding record saying server (a reflected client frame, relabelled).", role: attest.RoleServer,
			edit: func(b *attest.BoundBinding) { b.Role = attest.RoleClient }},
		{name: "bound-reflected", desc: "A client's own frame sent back to it: the binding record names the client.", role: attest.RoleServer,
			recordRole: attest.RoleClient},
		{name: "bound-mode-nonce", desc: "The binding record says nonce, not bound.", role: attest.RoleServer, recordMode: attest.ModeNonce},
		{name: "bound-tampered-report", desc: "A report whose signature was altered.", role: attest.RoleServer, tamper: true},
		{name: "bound-no-evidence", desc: "A no-evidence frame where evidence is required.", role: attest.RoleServer,
			frame: func([]byte) []byte { return []byte{atls.BoundFrameNoEvidence, 0, 0, 0} }},
		{name: "bound-truncated", desc: "A frame cut short: the header announces more than follows.", role: attest.RoleServer,
			frame: func(f []byte) []byte { return f[:len(f)/2] }},
		{name: "bound-oversized", desc: "A header announcing a payload over 96 KiB.", role: attest.RoleServer,
			frame: func([]byte) []byte { return []byte{atls.BoundFrameEvidence, 0x01, 0x80, 0x01} }},
		{name: "bound-application-data", desc: "Application data where the frame belongs (an HTTP request line).", role: attest.RoleServer,
			frame: func([]byte) []byte { return []byte("GET / HTTP/1.1\r\n\r\n") }},
	}
}

// GenerateBound writes the bound vectors into out, issuing from the
// simulated chain chainPEM (that of the certificate vectors in
// vectorsDir), and checking each with the library to record its outcome.
func GenerateBound(ctx context.Context, vectorsDir, out string, chainPEM []byte, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	chain, err := snp.ParseSimChainPEM(chainPEM)
	if err != nil {
		return err
	}
	sim, err := snp.NewSimAttester(chain, simOptions())
	if err != nil {
		return err
	}
	m, err := LoadManifest(vectorsDir)
	if err != nil {
		return err
	}
	roots, err := filepath.Rel(out, filepath.Join(vectorsDir, m.Roots))
	if err != nil {
		return err
	}
	bm := &BoundManifest{
		Format: BoundFormat,
		Description: "Session-bound evidence frames (SPEC section 9) under the simulated chain of the certificate vectors, " +
			"with what their receiver computes from its TLS state as inputs (the exporter for the sender's label, the sender's " +
			"certificate, the re-attestation nonce) and the outcome. Certificates, keys and signatures are random.",
		Spec:      "interop/SPEC.md",
		Generator: "go generate ./interop/... (interop/internal/genbound)",
		Roots:     filepath.ToSlash(roots),
	}
	files := map[string][]byte{}
	now := Base.Add(5 * time.Minute).UTC()
	for _, s := range boundSpecs() {
		v, err := makeBound(ctx, sim, s, files, now)
		if err != nil {
			return fmt.Errorf("vector %s: %w", s.name, err)
		}
		bm.Vectors = append(bm.Vectors, v)
	}
	if err := writeBoundFiles(out, files); err != nil {
		return err
	}
	// The outcomes are the library's verdicts on the written files.
	for i := range bm.Vectors {
		v := &bm.Vectors[i]
		claims, err := VerifyBoundVector(ctx, out, vectorsDir, m, *v)
		if err != nil {
			if attest.FailedCheck(err) == "" {
				return fmt.Errorf("vector %s: %w", v.Name, err)
			}
			v.Check = attest.FailedCheck(err)
		} else {
			v.Valid = true
			if v.Claims, err = json.Marshal(claims); err != nil {
				return err
			}
		}
		outcome := "valid"
		if !v.Valid {
			outcome = "fails " + v.Check
		}
		fmt.Fprintf(log, "genbound: %-30s %s\n", v.Name, outcome)
	}
	mj, err := json.MarshalIndent(bm, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, BoundManifestFile), append(mj, '\n'), 0o644)
}

func makeBound(ctx context.Context, sim attest.Attester, s boundSpec, files map[string][]byte, now time.Time) (BoundVector, error) {
	v := BoundVector{Name: s.name, Description: s.desc, Frame: s.name + ".frame", Role: s.role.String(), Now: now.Format(time.RFC3339)}
	b := attest.BoundBinding{Role: s.role, Exporter: sha256.Sum256([]byte("atls bound vectors: exporter of " + s.name))}
	v.Exporter = hex.EncodeToString(b.Exporter[:])
	if s.reattest {
		n := NonceFor(s.name)
		b.Nonce = n
		v.Nonce = hex.EncodeToString(n[:])
	}
	if !s.noCert {
		der, err := plainCertificate(s.name)
		if err != nil {
			return v, err
		}
		v.PeerCert = s.name + ".cert.pem"
		files[v.PeerCert] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		b.LeafHash = sha256.Sum256(der)
	}
	made := b
	if s.edit != nil {
		s.edit(&made)
	}
	rd, err := made.ReportData()
	if err != nil {
		return v, err
	}
	var a attest.Attester = sim
	if s.batch {
		bt, err := attest.NewBatcher(sim, attest.BatcherOptions{})
		if err != nil {
			return v, err
		}
		a = bt
	}
	ev, err := a.Attest(ctx, rd)
	if err != nil {
		return v, err
	}
	role, mode := s.role, attest.ModeBound
	if s.recordRole != 0 {
		role = s.recordRole
	}
	if s.recordMode != 0 {
		mode = s.recordMode
	}
	if err := ev.SetBinding(role, mode); err != nil {
		return v, err
	}
	if s.tamper {
		r := ev.Records[snp.ReportLabel]
		r.Value = append([]byte(nil), r.Value...)
		r.Value[0x2A0] ^= 1
		ev.Records[snp.ReportLabel] = r
	}
	js, err := ev.MarshalJSON()
	if err != nil {
		return v, err
	}
	frame, err := atls.AppendBoundFrame(nil, atls.BoundFrameEvidence, js)
	if err != nil {
		return v, err
	}
	if s.frame != nil {
		frame = s.frame(frame)
	}
	files[v.Frame] = frame
	return v, nil
}

func writeBoundFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range old {
		n := e.Name()
		if _, keep := files[n]; !keep && (strings.HasSuffix(n, ".frame") || strings.HasSuffix(n, ".cert.pem")) {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		errs = append(errs, os.WriteFile(filepath.Join(dir, n), files[n], 0o644))
	}
	return errors.Join(errs...)
}

// plainCertificate is an ordinary self-signed certificate, the kind a
// bound-mode peer may present: no evidence in it.
func plainCertificate(name string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: Base, NotAfter: Base.Add(dayLong),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
}
