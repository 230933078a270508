package attest_test

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/stretchr/testify/require"
)

func TestBoundBinding(t *testing.T) {
	b := attest.BoundBinding{Role: attest.RoleServer, Exporter: [32]byte{1}}
	rd, err := b.ReportData()
	require.NoError(t, err)
	// Every input changes the result.
	for name, edit := range map[string]func(*attest.BoundBinding){
		"role":     func(b *attest.BoundBinding) { b.Role = attest.RoleClient },
		"exporter": func(b *attest.BoundBinding) { b.Exporter[31] = 1 },
		"leaf":     func(b *attest.BoundBinding) { b.LeafHash[0] = 1 },
		"nonce":    func(b *attest.BoundBinding) { b.Nonce[0] = 1 },
	} {
		c := b
		edit(&c)
		other, err := c.ReportData()
		require.NoError(t, err)
		require.NotEqual(t, rd, other, name)
	}
	_, err = (&attest.BoundBinding{Role: 'X', Exporter: [32]byte{1}}).ReportData()
	require.Error(t, err)
	_, err = (&attest.BoundBinding{Role: attest.RoleServer}).ReportData()
	require.Error(t, err, "an all-zero exporter")
	require.NotEqual(t, attest.ExporterLabel(attest.RoleServer), attest.ExporterLabel(attest.RoleClient))
	require.Empty(t, attest.ExporterLabel(0))
}

// A bound leaf in a batch: the proof leads to the batch REPORT_DATA, and
// a proof for another leaf does not.
func TestExpectedBoundReportDataBatched(t *testing.T) {
	b := attest.BoundBinding{Role: attest.RoleServer, Exporter: [32]byte{7}}
	leaf, err := b.ReportData()
	require.NoError(t, err)
	ev := &attest.Evidence{Type: "t", Records: map[string]attest.Record{}}
	got, err := attest.ExpectedBoundReportData(ev, b)
	require.NoError(t, err)
	require.Equal(t, leaf, got, "without a proof, the leaf itself")

	// A tree of two leaves: ours at index 0, sibling s.
	s := bytes.Repeat([]byte{9}, 64)
	sib := leafHashOf(s)
	proof := (&attest.BatchProof{Index: 0, Size: 2, Path: [][32]byte{sib}}).Marshal()
	ev.Records[attest.BatchRecordLabel] = attest.Record{MediaType: attest.BatchMediaType, Value: proof}
	got, err = attest.ExpectedBoundReportData(ev, b)
	require.NoError(t, err)
	root, err := (&attest.BatchProof{Index: 0, Size: 2, Path: [][32]byte{sib}}).Root(leaf)
	require.NoError(t, err)
	require.Equal(t, attest.BatchReportData(2, root), got)

	other := b
	other.Exporter[0] = 8
	got2, err := attest.ExpectedBoundReportData(ev, other)
	require.NoError(t, err)
	require.NotEqual(t, got, got2)

	ev.Records[attest.BatchRecordLabel] = attest.Record{MediaType: "text/plain", Value: proof}
	_, err = attest.ExpectedBoundReportData(ev, b)
	require.Equal(t, "batch.proof", attest.FailedCheck(err))
	_, err = attest.ExpectedBoundReportData(ev, attest.BoundBinding{Role: attest.RoleServer})
	require.Equal(t, "binding", attest.FailedCheck(err))
}

// leafHashOf is RFC 9162's leaf hash.
func leafHashOf(leaf []byte) [32]byte {
	return sha256.Sum256(append([]byte{0x00}, leaf...))
}
