// Package interop holds the evidence format's specification (SPEC.md) and
// tests that keep the specification and the implementation in agreement.
package interop

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/stretchr/testify/require"
)

// TestSpecWorkedExample recomputes section 8 of SPEC.md.
func TestSpecWorkedExample(t *testing.T) {
	spec, err := os.ReadFile("SPEC.md")
	require.NoError(t, err)
	text := string(spec)

	b := attest.Binding{
		Role:      attest.RoleServer,
		Mode:      attest.ModeNonce,
		SPKIHash:  sha256.Sum256([]byte("example SubjectPublicKeyInfo")),
		NotBefore: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).Unix(),
	}
	b.NotAfter = b.NotBefore + 11*60
	for i := range b.Nonce {
		b.Nonce[i] = byte(i)
	}
	rd, err := b.ReportData()
	require.NoError(t, err)

	h := hex.EncodeToString(rd[:])
	require.Contains(t, text, h[:64]+"\n"+h[64:], "REPORT_DATA in SPEC.md section 8")
	require.Contains(t, text, hex.EncodeToString(b.SPKIHash[:]))
	require.Contains(t, text, "atls-nonce-v1:"+hex.EncodeToString(b.Nonce[:]))

	ev := &attest.Evidence{Type: "x", Records: map[string]attest.Record{}}
	require.NoError(t, ev.SetBinding(attest.RoleServer, attest.ModeNonce))
	rec := ev.Records[attest.BindingRecordLabel]
	require.Contains(t, text, "`"+string(rec.Value)+"`")
	require.Contains(t, text, base64.RawURLEncoding.EncodeToString(rec.Value))
	require.Contains(t, text, "`"+attest.BindingMediaType+"`")
	require.Contains(t, text, attest.OIDCMW.String())
}

// TestSpecConstants checks that the constants named in SPEC.md are the
// ones the code uses.
func TestSpecConstants(t *testing.T) {
	spec, err := os.ReadFile("SPEC.md")
	require.NoError(t, err)
	text := string(spec)
	for _, s := range []string{
		attest.BindingLabel,
		attest.CollectionTypeKey,
		snp.CollectionType,
		"`" + snp.ReportLabel + "` | `" + snp.ReportMediaType + "`",
		"`" + snp.CertLabel + "` | `" + snp.CertMediaType + "`",
		"`" + snp.CRLLabel + "` | `" + snp.CRLMediaType + "`",
		atls.NoncePrefix,
		"65536", // MaxExtensionSize
		"32768", // MaxRecordSize
	} {
		require.True(t, strings.Contains(text, s), "SPEC.md should mention %q", s)
	}
	require.Equal(t, 65536, attest.MaxExtensionSize)
	require.Equal(t, 32768, attest.MaxRecordSize)
	require.Equal(t, 8, attest.MaxRecords)
}
