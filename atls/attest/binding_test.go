package attest

import (
	"crypto/sha512"
	"encoding/binary"
	"testing"

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
		"batch reserved":      {Role: RoleServer, Mode: ModeBatch},
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
