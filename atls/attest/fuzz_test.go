package attest_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/confidential-go/atls/atls/attest"
)

// fuzzEvidences are small valid collections built through the API.
func fuzzEvidences(t testing.TB) []*attest.Evidence {
	t.Helper()
	a := &attest.Evidence{Type: "t", Records: map[string]attest.Record{
		"a": {MediaType: "application/x-test", Value: []byte{1}},
	}}
	b := &attest.Evidence{Type: "tag:example.com,2025:snp/v1", Records: map[string]attest.Record{
		"report": {MediaType: "application/vnd.example.report", Value: []byte{0, 1, 2, 3, 0xfb, 0xff}},
		"vcek":   {MediaType: "application/pkix-cert", Value: []byte("cert")},
	}}
	require.NoError(t, b.SetBinding(attest.RoleClient, attest.ModeStatic))
	// Every allowed character, and the longest strings.
	c := &attest.Evidence{Type: typeChars, Records: map[string]attest.Record{
		"0": {MediaType: "A0" + nameChars + "/z9" + nameChars, Value: []byte("\x00\n")},
		"z": {MediaType: mediaTypeOfLen(attest.MaxMediaTypeSize), Value: []byte{0xff, 0xff, 0xff}},
		strings.Repeat("a-9", attest.MaxLabelSize/3) + "x": {MediaType: "t/" + strings.Repeat("s", 126), Value: []byte{0xfb}},
	}}
	require.NoError(t, c.SetBinding(attest.RoleServer, attest.ModeNonce))
	// Batched evidence: a batch-mode binding and an inclusion proof.
	d := &attest.Evidence{Type: "t", Records: map[string]attest.Record{
		"report":                {MediaType: "application/vnd.example.report", Value: []byte{9}},
		attest.BatchRecordLabel: {MediaType: attest.BatchMediaType, Value: (&attest.BatchProof{Index: 1, Size: 2, Path: make([][32]byte, 1)}).Marshal()},
	}}
	require.NoError(t, d.SetBinding(attest.RoleServer, attest.ModeBatch))
	return []*attest.Evidence{a, b, c, d}
}

// invalidCollections are JSON texts near the valid ones.
var invalidCollections = []string{
	``,
	`{}`,
	`{"__cmwc_t":"t"}`,
	`{"__cmwc_t":"t","a":["application/x-test"]}`,
	`{"__cmwc_t":"t","a":["application/x-test","AQ",1]}`,
	`{"__cmwc_t":"t","a":["application/x-test","AQ=="]}`,
	`{"__cmwc_t":"t","a":["application/x-test","+/8"]}`,
	`{"__cmwc_t":"t","a":["application/x-test","AQ"],"a":["application/x-test","AQ"]}`,
	`{"__cmwc_t":"t","a":{"__cmwc_t":"u","b":["application/x-test","AQ"]}}`,
	`{"__cmwc_t":"t","A":["application/x-test","AQ"]}`,
	`{"__cmwc_t":1,"a":["application/x-test","AQ"]}`,
	`{"__cmwc_t":"t","a":["application/x-test","AQ"]}{}`,
	`{"__cmwc_t":"t","a":["m","AQ"]}`,
	`{"__cmwc_t":"t","a":["text/plain; charset=\"utf-8\"","AQ"]}`,
	`{"__cmwc_t":"t","a":["a/\u003cb\u003e","AQ"]}`,
	`{"__cmwc_t":"t","a":["a/b\u2028","AQ"]}`,
	`{"__cmwc_t":"\u00e9<&>","a":["application/x-test","AQ"]}`,
	`{"__cmwc_t":"t u","a":["application/x-test","AQ"]}`,
	" {\"__cmwc_t\" : \"t\",\n\"a\":[\"application/x-test\",\"A\\nQ\"]} ",
	`{"__cmwc_t":"\ud800","\u0061":["application/x-test","AQ"]}`,
	`{"__cmwc_t":"t","\u0041":["application/x-test","AQ"]}`,
}

// acceptedCollections are JSON texts that parse although they are not in
// the canonical form (whitespace, member order, escapes).
var acceptedCollections = []string{
	" {\"__cmwc_t\" : \"t\",\n\"a\":[\"application/x-test\",\"AQ\"]} ",
	`{"a":["application/x-test","AQ"],"__cmwc_t":"t"}`,
	`{"__cmwc_t":"\u0074","\u0061":["application\/x-test","\u0041Q"]}`,
	`{"__cmwc_t":"tag:x\u0026y","a":["a/b\u0026c","AQ"]}`,
}

// checkReencode asserts the fuzz property for evidence that parsed from
// the JSON text in: it re-encodes (which never fails, and is never longer
// than in, since nothing needs escaping), the re-encoding parses to the
// same evidence, and encoding that again gives the same bytes.
func checkReencode(t *testing.T, ev *attest.Evidence, in []byte) {
	j, err := ev.MarshalJSON()
	require.NoError(t, err)
	require.LessOrEqual(t, len(j), len(in))
	// Printable ASCII, no escapes, and what encoding/json writes too.
	for _, c := range j {
		require.True(t, c > 0x20 && c < 0x7f && c != '\\', "byte %q in %s", c, j)
	}
	var plain bytes.Buffer
	enc := json.NewEncoder(&plain)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(ev))
	require.Equal(t, string(j)+"\n", plain.String())

	ext, err := ev.Extension()
	require.NoError(t, err)
	require.False(t, ext.Critical)
	again, err := attest.ParseExtensionValue(ext.Value)
	require.NoError(t, err)
	require.Equal(t, ev, again)
	ext2, err := again.Extension()
	require.NoError(t, err)
	require.Equal(t, ext.Value, ext2.Value)
	again2, err := attest.ParseCollection(j)
	require.NoError(t, err)
	require.Equal(t, ev, again2)
	d, err := ev.Digest()
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256(j), d)
	// Must not panic. A binding record that is accepted says version 1
	// and a role and mode that SetBinding can write.
	if p, err := ev.Binding(); err == nil {
		e2 := &attest.Evidence{}
		require.NoError(t, e2.SetBinding(p.Role, p.Mode))
		require.Equal(t, attest.BindingParams{Version: attest.BindingParamsVersion, Role: p.Role, Mode: p.Mode}, p)
		p2, err := e2.Binding()
		require.NoError(t, err)
		require.Equal(t, p, p2)
	}
}

// jsonOf returns the JSON text inside a DER UTF8String, as
// ParseExtensionValue reads it.
func jsonOf(t *testing.T, der []byte) []byte {
	s := cryptobyte.String(der)
	var j cryptobyte.String
	require.True(t, s.ReadASN1(&j, cbasn1.UTF8String))
	return j
}

func FuzzParseExtensionValue(f *testing.F) {
	for _, ev := range fuzzEvidences(f) {
		ext, err := ev.Extension()
		require.NoError(f, err)
		f.Add(ext.Value)
	}
	for _, s := range invalidCollections {
		_, err := attest.ParseCollection([]byte(s))
		require.Error(f, err, s)
		f.Add(utf8String([]byte(s)))
	}
	for _, s := range acceptedCollections {
		_, err := attest.ParseCollection([]byte(s))
		require.NoError(f, err, s)
		f.Add(utf8String([]byte(s)))
	}
	good := []byte(`{"__cmwc_t":"t","a":["application/x-test","AQ"]}`)
	f.Add(good)                                                                                // no UTF8String
	f.Add(rawTLV(0x04, []byte{byte(len(good))}, good))                                         // OCTET STRING
	f.Add(rawTLV(0x0c, []byte{0x81, byte(len(good))}, good))                                   // non-minimal length
	f.Add(append(utf8String(good), 0))                                                         // trailing byte
	f.Add(append(rawTLV(0x0c, []byte{0x80}, good), 0, 0))                                      // indefinite length
	f.Add(utf8String([]byte(`{"__cmwc_t":"t","a":["application/x-test","A` + "\xff" + `"]}`))) // bad UTF-8

	f.Fuzz(func(t *testing.T, der []byte) {
		ev, err := attest.ParseExtensionValue(der)
		if err != nil {
			require.Nil(t, ev)
			require.True(t, errors.Is(err, attest.ErrMalformedEvidence), "unclassified error %v", err)
			require.NotEmpty(t, attest.FailedCheck(err))
			return
		}
		checkReencode(t, ev, jsonOf(t, der))
	})
}

// fuzzCertDER makes a deterministic self-signed Ed25519 certificate
// carrying exts.
func fuzzCertDER(t testing.TB, exts ...pkix.Extension) []byte {
	t.Helper()
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(1),
		Subject:         pkix.Name{CommonName: "f"},
		NotBefore:       time.Unix(1700000000, 0),
		NotAfter:        time.Unix(1700000600, 0),
		ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return der
}

func FuzzFromCertificate(f *testing.F) {
	f.Add(fuzzCertDER(f)) // no extension
	for _, ev := range fuzzEvidences(f)[:2] {
		ext, err := ev.Extension()
		require.NoError(f, err)
		f.Add(fuzzCertDER(f, ext))
		ext.Critical = true
		f.Add(fuzzCertDER(f, ext))
	}
	for _, v := range [][]byte{
		utf8String([]byte(`{"__cmwc_t":"t","a":["application/x-test"]}`)),
		utf8String([]byte(`{"__cmwc_t":"t","a":["m","AQ"]}`)),
		utf8String([]byte(acceptedCollections[2])),
		rawTLV(0x04, []byte{2}, []byte("{}")),
		append(utf8String([]byte(`{"__cmwc_t":"t","a":["application/x-test","AQ"]}`)), 0),
	} {
		f.Add(fuzzCertDER(f, pkix.Extension{Id: attest.OIDCMW, Value: v}))
	}

	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		ev, err := attest.FromCertificate(cert)
		if err != nil {
			require.Nil(t, ev)
			require.True(t, errors.Is(err, attest.ErrMalformedEvidence) || errors.Is(err, attest.ErrNotAttested),
				"unclassified error %v", err)
			require.NotEmpty(t, attest.FailedCheck(err))
			return
		}
		var in []byte
		for _, e := range cert.Extensions {
			if e.Id.Equal(attest.OIDCMW) {
				in = jsonOf(t, e.Value)
			}
		}
		checkReencode(t, ev, in)
	})
}
