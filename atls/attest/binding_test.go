package attest

import (
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReportDataLayout(t *testing.T) {
	b := Binding{Role: RoleServer, Mode: ModeNonce, NotBefore: 1700000000, NotAfter: 1700003600}
	for i := range b.SPKIHash {
		b.SPKIHash[i] = byte(i)
	}
	for i := range b.Nonce {
		b.Nonce[i] = byte(0xA0 + i)
	}
	got, err := b.ReportData()
	require.NoError(t, err)

	// Rebuild the preimage field by field, as another implementation would.
	pre := []byte("ATLS-SNP-V1")
	pre = append(pre, 'S', 0x01)
	pre = append(pre, b.SPKIHash[:]...)
	pre = append(pre, b.Nonce[:]...)
	pre = binary.BigEndian.AppendUint64(pre, 1700000000)
	pre = binary.BigEndian.AppendUint64(pre, 1700003600)
	require.Len(t, pre, 93)
	require.Equal(t, sha512.Sum512(pre), got)

	// Each parameter changes the result.
	for name, mutate := range map[string]func(*Binding){
		"role":      func(b *Binding) { b.Role = RoleClient },
		"spki":      func(b *Binding) { b.SPKIHash[0] ^= 1 },
		"nonce":     func(b *Binding) { b.Nonce[31] ^= 1 },
		"notBefore": func(b *Binding) { b.NotBefore++ },
		"notAfter":  func(b *Binding) { b.NotAfter++ },
	} {
		c := b
		mutate(&c)
		other, err := c.ReportData()
		require.NoError(t, err, name)
		require.NotEqual(t, got, other, name)
	}
}

func TestBindingValidate(t *testing.T) {
	ok := Binding{Role: RoleClient, Mode: ModeStatic, NotBefore: 1, NotAfter: 2}
	require.NoError(t, ok.Validate())
	for name, b := range map[string]Binding{
		"bad role":            {Role: 'X', Mode: ModeStatic},
		"batch mode no nonce": {Role: RoleServer, Mode: ModeBatch},
		"unknown mode":        {Role: RoleServer, Mode: 7},
		"nonce mode no nonce": {Role: RoleServer, Mode: ModeNonce},
		"static with nonce":   {Role: RoleServer, Mode: ModeStatic, Nonce: [32]byte{1}},
		"inverted validity":   {Role: RoleServer, Mode: ModeStatic, NotBefore: 5, NotAfter: 4},
		"negative time":       {Role: RoleServer, Mode: ModeStatic, NotBefore: -1, NotAfter: 4},
	} {
		_, err := b.ReportData()
		require.Error(t, err, name)
	}
}

func TestBindingBatchMode(t *testing.T) {
	nonce := [NonceSize]byte{0: 7, 31: 9}
	b := Binding{Role: RoleServer, Mode: ModeBatch, Nonce: nonce, NotBefore: 1700000000, NotAfter: 1700003600}
	got, err := b.ReportData()
	require.NoError(t, err)
	pre := []byte("ATLS-SNP-V1")
	pre = append(pre, 'S', 0x02)
	pre = append(pre, b.SPKIHash[:]...)
	pre = append(pre, nonce[:]...)
	pre = binary.BigEndian.AppendUint64(pre, 1700000000)
	pre = binary.BigEndian.AppendUint64(pre, 1700003600)
	require.Equal(t, sha512.Sum512(pre), got)
	n := b
	n.Mode = ModeNonce
	other, err := n.ReportData()
	require.NoError(t, err)
	require.NotEqual(t, got, other, "the mode byte separates batch leaves from nonce bindings")

	// The nonce is kept for batch mode and zeroed for static mode.
	now := time.Unix(1700000000, 0)
	for mode, want := range map[Mode][NonceSize]byte{ModeStatic: {}, ModeNonce: nonce, ModeBatch: nonce} {
		tb := BindingForTemplate([]byte{1, 2}, now, now.Add(time.Hour), RoleClient, mode, nonce)
		require.Equal(t, want, tb.Nonce, mode.String())
		cb := BindingForCertificate(&x509.Certificate{RawSubjectPublicKeyInfo: []byte{1, 2}, NotBefore: now, NotAfter: now.Add(time.Hour)}, RoleClient, mode, nonce)
		require.Equal(t, tb, cb, mode.String())
	}
}

func TestModeText(t *testing.T) {
	for _, m := range []Mode{ModeStatic, ModeNonce, ModeBatch, ModeBound} {
		txt, err := m.MarshalText()
		require.NoError(t, err)
		var back Mode
		require.NoError(t, back.UnmarshalText(txt))
		require.Equal(t, m, back)
		p, err := ParseMode(m.String())
		require.NoError(t, err)
		require.Equal(t, m, p)
	}
	require.Equal(t, "batch", ModeBatch.String())
	_, err := ModeBatch.MarshalText()
	require.NoError(t, err)
	_, err = Mode(4).MarshalText()
	require.Error(t, err)
	for _, s := range []string{"", "Batch", "batched", "2"} {
		_, err := ParseMode(s)
		require.Error(t, err, s)
	}
}
