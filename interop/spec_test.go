// Package interop holds the evidence format's specification (SPEC.md) and
// tests that keep the specification and the implementation in agreement.
package interop

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/interop/internal/vectors"
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

// TestSpecBatchExample recomputes section 8.1 of SPEC.md (batched
// evidence) with package attest: the leaves, the tree (built from RFC
// 9162's definition by the vectors' generator), the proof records, and the
// REPORT_DATA that the verifier derives from each certificate's record.
func TestSpecBatchExample(t *testing.T) {
	spec, err := os.ReadFile("SPEC.md")
	require.NoError(t, err)
	text := string(spec)

	notBefore := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	var leaves [][attest.ReportDataSize]byte
	var bindings []attest.Binding
	for j := range 3 {
		name := "example SubjectPublicKeyInfo"
		if j > 0 {
			name += fmt.Sprintf(" %d", j)
		}
		b := attest.Binding{
			Role:      attest.RoleServer,
			Mode:      attest.ModeBatch,
			SPKIHash:  sha256.Sum256([]byte(name)),
			NotBefore: notBefore,
			NotAfter:  notBefore + 11*60,
		}
		for i := range b.Nonce {
			b.Nonce[i] = byte(32*j + i)
		}
		require.Contains(t, text, fmt.Sprintf("| %d | `%x` | `%x` |", j, b.SPKIHash, b.Nonce))
		leaf, err := b.ReportData()
		require.NoError(t, err)
		h := hex.EncodeToString(leaf[:])
		require.Contains(t, text, fmt.Sprintf("L%d = %s\n     %s", j, h[:64], h[64:]), "leaf %d", j)
		require.Contains(t, text, fmt.Sprintf("h%d   = %x", j, sha256.Sum256(append([]byte{0}, leaf[:]...))), "leaf hash %d", j)
		leaves = append(leaves, leaf)
		bindings = append(bindings, b)
	}
	root := vectors.MerkleTreeHash(leaves)
	require.Contains(t, text, fmt.Sprintf("     = %x\n", root))
	require.Contains(t, text, fmt.Sprintf("     = %x\nroot", vectors.MerkleTreeHash(leaves[:2])))
	rd := attest.BatchReportData(3, root)
	h := hex.EncodeToString(rd[:])
	require.Contains(t, text, "REPORT_DATA = "+h[:64]+"\n              "+h[64:])

	for j, b := range bindings {
		p := attest.BatchProof{Index: uint32(j), Size: 3, Path: vectors.InclusionPath(j, leaves)}
		rec := p.Marshal()
		if j == 1 {
			require.Len(t, rec, 73)
			require.Contains(t, text, fmt.Sprintf("%q:[%q,%q]", attest.BatchRecordLabel, attest.BatchMediaType, base64.RawURLEncoding.EncodeToString(rec)))
			require.Contains(t, text, fmt.Sprintf("01 00000001 00000003\n%x\n%x\n", rec[9:41], rec[41:]))
		}
		parsed, err := attest.ParseBatchProof(rec)
		require.NoError(t, err)
		require.Equal(t, &p, parsed)
		got, err := parsed.Root(leaves[j])
		require.NoError(t, err)
		require.Equal(t, root, got, "root from the proof of leaf %d", j)

		ev := &attest.Evidence{Type: "x", Records: map[string]attest.Record{
			attest.BatchRecordLabel: {MediaType: attest.BatchMediaType, Value: rec},
		}}
		require.NoError(t, ev.SetBinding(attest.RoleServer, attest.ModeBatch))
		want, err := attest.ExpectedReportData(ev, b)
		require.NoError(t, err)
		require.Equal(t, rd, want, "expected REPORT_DATA for certificate %d", j)
		if j == 0 {
			require.Contains(t, text, "`"+string(ev.Records[attest.BindingRecordLabel].Value)+"`")
		}
	}
	// The preimage as printed.
	pre := append([]byte(attest.BatchLabel), 0, 0, 0, 0, 0, 0, 0, 3)
	pre = append(pre, root[:]...)
	require.Len(t, pre, 57)
	require.Equal(t, rd, sha512.Sum512(pre))
	require.Contains(t, text, fmt.Sprintf("%x 0000000000000003\n%x\n", attest.BatchLabel, root))
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
		"`" + attest.BatchRecordLabel + "` | `" + attest.BatchMediaType + "`",
		`"` + attest.BatchLabel + `"`,
		"n > 65536", // MaxBatchSize
		atls.NoncePrefix,
		"65536", // MaxExtensionSize
		"32768", // MaxRecordSize
	} {
		require.True(t, strings.Contains(text, s), "SPEC.md should mention %q", s)
	}
	require.Equal(t, 65536, attest.MaxExtensionSize)
	require.Equal(t, 32768, attest.MaxRecordSize)
	require.Equal(t, 8, attest.MaxRecords)
	require.Equal(t, 65536, attest.MaxBatchSize)
}
