// Package vectors generates and checks the test vectors of the atls
// evidence format (interop/SPEC.md) kept in testdata/vectors: simulated
// AMD roots, attested certificates with their keys, and for each the
// verifier's inputs and the expected outcome, listed in manifest.json.
//
// The generator is interop/internal/genvectors (run it with
// `go generate ./interop/...`); the tests of package interop check that
// the committed vectors still match the generator and the Go verifier,
// and that the independent Python verifier agrees with both.
package vectors

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// File names in the vectors directory.
const (
	// ManifestFile lists the vectors.
	ManifestFile = "manifest.json"
	// ChainFile is the simulated AMD chain, private keys included
	// (snp.SimChain.MarshalPEM), so that the vectors can be regenerated
	// under the same roots.
	ChainFile = "sim-chain.pem"
	// RootsFile is the ARK and ASK of the chain, the roots a verifier
	// pins (snp.SimChain.Roots().PEM()).
	RootsFile = "sim-roots.pem"
)

// Format names the manifest layout.
const Format = "atls-test-vectors/1"

// Base is the NotBefore of every vector certificate. Verification times are
// a few minutes after it. It must lie after the generation date (the
// simulator's VCEKs are valid from an hour before they are issued, for
// seven years): the generator refuses to run once it has passed, and it
// must then be moved forward.
var Base = time.Date(2031, time.January, 1, 0, 0, 0, 0, time.UTC)

// Manifest is the content of manifest.json.
type Manifest struct {
	Format      string `json:"format"`
	Description string `json:"description"`
	Spec        string `json:"spec"`
	Generator   string `json:"generator"`
	// Roots is the PEM file of the roots to pin; Simulated says that they
	// are a simulator's (claims then say "simulated": true).
	Roots     string `json:"roots"`
	Simulated bool   `json:"simulated"`
	// SimChain is the PEM file of the simulated chain with its keys.
	SimChain string `json:"sim_chain"`
	// Policy is the verifier's policy in the JSON of snp.ParsePolicy:
	// a measurement allowlist and otherwise the defaults (no debug, no
	// migration agent, VMPL 0, committed firmware, minimum TCB).
	Policy  Policy   `json:"policy"`
	Vectors []Vector `json:"vectors"`
}

// Policy is the part of the snp.Policy JSON the vectors use.
type Policy struct {
	Measurements []string `json:"measurements"`
}

// Vector is one certificate and what a verifier must make of it.
type Vector struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Cert and Key are PEM files: the certificate, and its PKCS #8 key
	// (so that the certificate can be served over TLS).
	Cert string `json:"cert"`
	Key  string `json:"key"`
	// Role is the role the verifier expects of its peer: "server" for a
	// TLS client verifying a server, "client" for a server verifying a
	// client.
	Role string `json:"role"`
	// Mode is the freshness mode the certificate was made for ("nonce",
	// "static" or "batch"), for information: a verifier reads it from
	// the binding record (which some invalid vectors change).
	Mode string `json:"mode"`
	// Nonce is the nonce the verifier sent, 64 hex digits, or "" if it
	// sent none.
	Nonce string `json:"nonce"`
	// AcceptStatic says whether the verifier accepts static evidence, and
	// MaxAgeSeconds how old (now - notBefore) it may be.
	AcceptStatic  bool  `json:"accept_static"`
	MaxAgeSeconds int64 `json:"max_age_seconds"`
	// Now is the verification time (RFC 3339).
	Now string `json:"now"`
	// ReportData is the REPORT_DATA the verifier computes in step 6 of
	// SPEC.md section 6 (hex), absent when verification stops before.
	ReportData string `json:"report_data,omitempty"`
	// Valid says whether the verifier must accept the certificate. If so,
	// Claims are the claims it returns (the JSON of attest.Claims); if
	// not, Check names the check that must fail.
	Valid  bool            `json:"valid"`
	Check  string          `json:"check,omitempty"`
	Claims json.RawMessage `json:"claims,omitempty"`
}

// NowTime parses Now.
func (v *Vector) NowTime() (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v.Now)
	if err != nil {
		return time.Time{}, fmt.Errorf("vector %s: now: %w", v.Name, err)
	}
	return t, nil
}

// MaxAge is MaxAgeSeconds as a duration.
func (v *Vector) MaxAge() time.Duration { return time.Duration(v.MaxAgeSeconds) * time.Second }

// LoadManifest reads dir/manifest.json strictly.
func LoadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestFile, err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%s: format %q, want %q", ManifestFile, m.Format, Format)
	}
	return &m, nil
}
