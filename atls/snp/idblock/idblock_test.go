package idblock_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp/idblock"
)

// vectorCase is one case of testdata/cases.json.
type vectorCase struct {
	Name   string `json:"name"`
	Inputs struct {
		LaunchDigestHex string `json:"launch_digest_hex"`
		GuestSVN        uint32 `json:"guest_svn"`
		Policy          string `json:"policy"`
		IDKey           string `json:"id_key"`
		AuthorKey       string `json:"author_key"`
		IDBlockSig      string `json:"id_block_sig"`
		IDKeySig        string `json:"id_key_sig"`
	} `json:"inputs"`
	Expected struct {
		IDBlockB64         string `json:"id_block_b64"`
		IDBlockHex         string `json:"id_block_hex"`
		IDKeyDigestB64     string `json:"id_key_digest_b64"`
		IDKeyDigestHex     string `json:"id_key_digest_hex"`
		AuthorKeyDigestB64 string `json:"author_key_digest_b64"`
		AuthorKeyDigestHex string `json:"author_key_digest_hex"`
		IDAuth             string `json:"id_auth"`
	} `json:"expected"`
}

func loadCases(t *testing.T) map[string]vectorCase {
	t.Helper()
	data, err := os.ReadFile("testdata/cases.json")
	require.NoError(t, err)
	var f struct {
		Cases []vectorCase `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(data, &f))
	out := map[string]vectorCase{}
	for _, c := range f.Cases {
		out[c.Name] = c
	}
	require.Len(t, out, 3, "cases.json changed: review the test")
	return out
}

// testdataFile reads a file named in cases.json ("virtee/x.pem", or a
// description starting with the file name).
func testdataFile(t *testing.T, ref string) []byte {
	t.Helper()
	name, _, _ := strings.Cut(ref, " ")
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return data
}

func loadKey(t *testing.T, ref string) *ecdsa.PrivateKey {
	t.Helper()
	k, err := idblock.ParsePrivateKey(testdataFile(t, ref))
	require.NoError(t, err, ref)
	return k
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// TestVectorsBlockAndDigests reproduces the ID blocks and key digests of
// both block cases, from PKCS #8 (virtee) and SEC 1 (sev-snp-measure)
// keys.
func TestVectorsBlockAndDigests(t *testing.T) {
	for _, name := range []string{"virtee_id_block_and_key_digests", "sev_snp_measure_id_block"} {
		c := loadCases(t)[name]
		t.Run(name, func(t *testing.T) {
			var b idblock.Block
			copy(b.Measurement[:], unhex(t, c.Inputs.LaunchDigestHex))
			b.GuestSVN = c.Inputs.GuestSVN
			p, err := strconv.ParseUint(strings.TrimPrefix(c.Inputs.Policy, "0x"), 16, 64)
			require.NoError(t, err)
			b.Policy = p
			got, err := b.MarshalBinary()
			require.NoError(t, err)
			require.Equal(t, c.Expected.IDBlockHex, hex.EncodeToString(got))
			require.Equal(t, c.Expected.IDBlockB64, base64.StdEncoding.EncodeToString(got))

			parsed, err := idblock.ParseBlock(got)
			require.NoError(t, err)
			require.Equal(t, b, *parsed)

			idKey, authorKey := loadKey(t, c.Inputs.IDKey), loadKey(t, c.Inputs.AuthorKey)
			idDigest, err := idblock.KeyDigest(&idKey.PublicKey)
			require.NoError(t, err)
			require.Equal(t, c.Expected.IDKeyDigestHex, hex.EncodeToString(idDigest[:]))
			require.Equal(t, c.Expected.IDKeyDigestB64, base64.StdEncoding.EncodeToString(idDigest[:]))
			authorDigest, err := idblock.KeyDigest(&authorKey.PublicKey)
			require.NoError(t, err)
			require.Equal(t, c.Expected.AuthorKeyDigestHex, hex.EncodeToString(authorDigest[:]))
			require.Equal(t, c.Expected.AuthorKeyDigestB64, base64.StdEncoding.EncodeToString(authorDigest[:]))

			// A fresh signature over the same block verifies and
			// shows the same digests.
			block, auth, err := idblock.Sign(&b, idKey, authorKey)
			require.NoError(t, err)
			require.Equal(t, got, block)
			l, err := idblock.ParseAndVerify(block, auth)
			require.NoError(t, err)
			require.Equal(t, idDigest, l.IDKeyDigest)
			require.Equal(t, authorDigest, l.AuthorKeyDigest)
			require.True(t, l.AuthorKeyEn)
		})
	}
}

// TestVectorsAuthBlock rebuilds virtee's 4096-byte ID_AUTH byte for byte
// from the committed signatures and public keys, and checks that those
// signatures verify over the virtee ID block.
func TestVectorsAuthBlock(t *testing.T) {
	cases := loadCases(t)
	c := cases["virtee_auth_block_generation"]
	blockCase := cases["virtee_id_block_and_key_digests"]
	want := testdataFile(t, c.Expected.IDAuth)
	require.Len(t, want, idblock.AuthSize)

	blockSig, err := idblock.ParseSignature(testdataFile(t, c.Inputs.IDBlockSig))
	require.NoError(t, err)
	keySig, err := idblock.ParseSignature(testdataFile(t, c.Inputs.IDKeySig))
	require.NoError(t, err)
	a := &idblock.Auth{
		IDKey:     &loadKey(t, "virtee/test_id_key.pem").PublicKey,
		BlockSig:  blockSig,
		AuthorKey: &loadKey(t, "virtee/test_auth_key.pem").PublicKey,
		IDKeySig:  keySig,
	}
	got, err := a.MarshalBinary()
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got), "ID_AUTH differs from virtee's test_auth_block.bin")

	// The signatures re-encode to the committed files.
	for _, s := range []struct {
		sig  idblock.Signature
		file string
	}{{blockSig, c.Inputs.IDBlockSig}, {keySig, c.Inputs.IDKeySig}} {
		enc, err := s.sig.MarshalBinary()
		require.NoError(t, err)
		require.Equal(t, testdataFile(t, s.file), enc)
	}

	block := unhex(t, blockCase.Expected.IDBlockHex)
	l, err := idblock.ParseAndVerify(block, want)
	require.NoError(t, err)
	require.Equal(t, blockCase.Expected.IDKeyDigestHex, hex.EncodeToString(l.IDKeyDigest[:]))
	require.Equal(t, blockCase.Expected.AuthorKeyDigestHex, hex.EncodeToString(l.AuthorKeyDigest[:]))

	parsed, err := idblock.ParseAuth(want)
	require.NoError(t, err)
	require.True(t, parsed.IDKey.Equal(a.IDKey))
	require.True(t, parsed.AuthorKey.Equal(a.AuthorKey))

	// The same ID_AUTH does not verify over another block.
	other := bytes.Clone(block)
	other[0] ^= 1
	requireCheck(t, parsed.Verify(other), attest.ErrVerification, idblock.CheckBlockSignature)
}

func requireCheck(t *testing.T, err error, kind error, check string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, kind, "%v", err)
	require.Equal(t, check, attest.FailedCheck(err), "%v", err)
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	return k
}

func TestSignWithoutAuthorKey(t *testing.T) {
	idKey := newKey(t)
	b := &idblock.Block{Measurement: sha512.Sum384([]byte("image")), GuestSVN: 7, FamilyID: [16]byte{1}, ImageID: [16]byte{2}}
	block, auth, err := idblock.Sign(b, idKey, nil)
	require.NoError(t, err)
	require.Len(t, block, idblock.BlockSize)
	require.Len(t, auth, idblock.AuthSize)
	// No author key: AUTH_KEY_ALGO and every author field are zero.
	require.Equal(t, make([]byte, idblock.AuthSize-0x680), auth[0x680:])
	require.Equal(t, []byte{0, 0, 0, 0}, auth[4:8])

	l, err := idblock.ParseAndVerify(block, auth)
	require.NoError(t, err)
	require.False(t, l.AuthorKeyEn)
	require.Equal(t, [48]byte{}, l.AuthorKeyDigest)
	want, err := idblock.KeyDigest(&idKey.PublicKey)
	require.NoError(t, err)
	require.Equal(t, want, l.IDKeyDigest)
	require.Equal(t, uint64(idblock.DefaultPolicy), l.Block.Policy)
	require.Equal(t, uint32(7), l.Block.GuestSVN)
	require.NoError(t, l.Block.MatchLaunch(b.Measurement, 0x30000))
}

// TestRefusals: every malformed or forged input is refused with its
// check name and kind.
func TestRefusals(t *testing.T) {
	idKey, authorKey := newKey(t), newKey(t)
	b := &idblock.Block{Measurement: sha512.Sum384([]byte("image A"))}
	block, auth, err := idblock.Sign(b, idKey, authorKey)
	require.NoError(t, err)
	otherBlock, otherAuth, err := idblock.Sign(&idblock.Block{Measurement: sha512.Sum384([]byte("image B"))}, newKey(t), newKey(t))
	require.NoError(t, err)

	mut := func(src []byte, f func([]byte)) []byte {
		c := bytes.Clone(src)
		f(c)
		return c
	}
	tests := []struct {
		name        string
		block, auth []byte
		kind        error
		check       string
	}{
		{"short block", block[:95], auth, attest.ErrMalformedEvidence, idblock.CheckBlock},
		{"block version 2", mut(block, func(b []byte) { b[0x50] = 2 }), auth, attest.ErrMalformedEvidence, idblock.CheckBlock},
		{"block policy without bit 17", mut(block, func(b []byte) { b[0x5a] = 0x01 }), auth, attest.ErrConfig, idblock.CheckPolicy},
		{"block policy reserved bit 63", mut(block, func(b []byte) { b[0x5f] = 0x80 }), auth, attest.ErrConfig, idblock.CheckPolicy},
		{"block changed after signing", mut(block, func(b []byte) { b[0x54] = 1 }), auth, attest.ErrVerification, idblock.CheckBlockSignature},
		{"another ID key's auth", block, otherAuth, attest.ErrVerification, idblock.CheckBlockSignature},
		{"another block", otherBlock, auth, attest.ErrVerification, idblock.CheckBlockSignature},
		{"short auth", block, auth[:4095], attest.ErrMalformedEvidence, idblock.CheckAuth},
		{"ID key algo 2", block, mut(auth, func(a []byte) { a[0] = 2 }), attest.ErrMalformedEvidence, idblock.CheckAuth},
		{"author key algo 2", block, mut(auth, func(a []byte) { a[4] = 2 }), attest.ErrMalformedEvidence, idblock.CheckAuth},
		{"author key algo 0 with author fields", block, mut(auth, func(a []byte) { a[4] = 0 }), attest.ErrMalformedEvidence, idblock.CheckAuth},
		{"reserved byte", block, mut(auth, func(a []byte) { a[0x10] = 1 }), attest.ErrMalformedEvidence, idblock.CheckAuth},
		{"reserved tail", block, mut(auth, func(a []byte) { a[4095] = 1 }), attest.ErrMalformedEvidence, idblock.CheckAuth},
		{"signature reserved", block, mut(auth, func(a []byte) { a[0x40+0x90] = 1 }), attest.ErrMalformedEvidence, idblock.CheckAuth},
		{"ID key curve", block, mut(auth, func(a []byte) { a[0x240] = 1 }), attest.ErrMalformedEvidence, idblock.CheckAuth},
		{"ID key off the curve", block, mut(auth, func(a []byte) { a[0x244] ^= 1 }), attest.ErrMalformedEvidence, idblock.CheckAuth},
		{"ID key padding", block, mut(auth, func(a []byte) { a[0x244+60] = 1 }), attest.ErrMalformedEvidence, idblock.CheckAuth},
		{"ID key signature forged", block, mut(auth, func(a []byte) { a[0x680] ^= 1 }), attest.ErrVerification, idblock.CheckKeySignature},
		{"author key swapped", block, mut(auth, func(a []byte) { copy(a[0x680:], otherAuth[0x680:]) }), attest.ErrVerification, idblock.CheckKeySignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := idblock.ParseAndVerify(tc.block, tc.auth)
			require.Nil(t, l)
			requireCheck(t, err, tc.kind, tc.check)
		})
	}
	// Author fields all zero, AUTH_KEY_ALGO 1: no author key.
	noAuthor := mut(auth, func(a []byte) { clear(a[0x680:]) })
	l, err := idblock.ParseAndVerify(block, noAuthor)
	require.NoError(t, err)
	require.False(t, l.AuthorKeyEn)

	l, err = idblock.ParseAndVerify(block, auth)
	require.NoError(t, err)
	requireCheck(t, l.Block.MatchLaunch(sha512.Sum384([]byte("image B")), 0x30000), attest.ErrPolicy, idblock.CheckMeasurement)
	requireCheck(t, l.Block.MatchLaunch(b.Measurement, 0x30000|1<<19), attest.ErrPolicy, idblock.CheckPolicy)
}

func TestParsePrivateKey(t *testing.T) {
	p384 := newKey(t)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(p384)
	require.NoError(t, err)
	sec1, err := x509.MarshalECPrivateKey(p384)
	require.NoError(t, err)
	for name, data := range map[string][]byte{
		"PKCS #8 PEM": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		"SEC 1 PEM":   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"PKCS #8 DER": pkcs8,
		"SEC 1 DER":   sec1,
	} {
		k, err := idblock.ParsePrivateKey(data)
		require.NoError(t, err, name)
		require.True(t, k.Equal(p384), name)
	}

	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p256DER, err := x509.MarshalPKCS8PrivateKey(p256)
	require.NoError(t, err)
	pubDER, err := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	require.NoError(t, err)
	good := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	for name, data := range map[string][]byte{
		"P-256":          pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p256DER}),
		"public key":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		"two keys":       append(bytes.Clone(good), good...),
		"encrypted":      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: pkcs8}),
		"garbage":        []byte("not a key"),
		"empty":          nil,
		"truncated DER":  pkcs8[:40],
		"wrong PEM type": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: pkcs8}),
	} {
		k, err := idblock.ParsePrivateKey(data)
		require.Nil(t, k, name)
		requireCheck(t, err, attest.ErrConfig, idblock.CheckKey)
	}

	// Signing refuses keys on other curves.
	_, _, err = idblock.Sign(&idblock.Block{}, p256, nil)
	requireCheck(t, err, attest.ErrConfig, idblock.CheckKey)
	_, _, err = idblock.Sign(&idblock.Block{}, p384, p256)
	requireCheck(t, err, attest.ErrConfig, idblock.CheckKey)
	_, _, err = idblock.Sign(&idblock.Block{}, nil, nil)
	requireCheck(t, err, attest.ErrConfig, idblock.CheckKey)
	_, _, err = idblock.Sign(&idblock.Block{Policy: 1}, p384, nil)
	requireCheck(t, err, attest.ErrConfig, idblock.CheckPolicy)
}

// TestPublicKeyRoundTrip: keys whose coordinates have leading zero bytes
// (one key in about 128) survive the little-endian encoding.
func TestPublicKeyRoundTrip(t *testing.T) {
	short := 0
	for i := 0; i < 5000 && short < 3; i++ {
		k := newKey(t)
		enc, err := idblock.MarshalPublicKey(&k.PublicKey)
		require.NoError(t, err)
		dec, err := idblock.ParsePublicKey(enc)
		require.NoError(t, err)
		require.True(t, dec.Equal(&k.PublicKey))
		if len(k.X.Bytes()) < 48 || len(k.Y.Bytes()) < 48 {
			short++
		}
	}
	require.Equal(t, 3, short, "too few keys with a short coordinate")
}

func FuzzParseAndVerify(f *testing.F) {
	data, err := os.ReadFile("testdata/virtee/test_auth_block.bin")
	require.NoError(f, err)
	block, _ := hex.DecodeString("a14d638341e5674628fe1e02fbedebe5e5ab4faf1dd72d8966068e615bb99efd13d214b35c231715b38e263dc6059745000000000000000000000000000000000000000000000000000000000000000001000000000000000000030000000000")
	f.Add(block, data)
	f.Fuzz(func(t *testing.T, block, auth []byte) {
		l, err := idblock.ParseAndVerify(block, auth)
		if err != nil {
			if l != nil || attest.FailedCheck(err) == "" {
				t.Fatalf("error without check name or with a result: %v", err)
			}
			var ce *attest.CheckError
			if !errors.As(err, &ce) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// Accepted input re-encodes to itself.
		a, err := idblock.ParseAuth(auth)
		if err != nil {
			t.Fatal(err)
		}
		re, err := a.MarshalBinary()
		if a.AuthorKey == nil && err == nil {
			copy(re[4:8], auth[4:8]) // AUTH_KEY_ALGO 0 or 1 without an author key
		}
		if err != nil || !bytes.Equal(re, auth) {
			t.Fatalf("accepted ID_AUTH does not re-encode to itself: %v", err)
		}
	})
}
