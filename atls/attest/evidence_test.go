package attest_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/confidential-go/atls/atls/attest"
)

const testType = "tag:example.com,2025:evidence/v1"

// testMT is a valid media type for records whose type does not matter.
const testMT = "application/x-test"

// mediaTypeOfLen is a valid type/subtype of exactly n bytes (n >= 14).
func mediaTypeOfLen(n int) string {
	return "application/" + strings.Repeat("x", n-len("application/"))
}

// typeChars are all the characters a collection type may hold: printable
// ASCII other than '"', '\\', '<' and '>'.
var typeChars = func() string {
	var b strings.Builder
	for c := byte(0x21); c < 0x7f; c++ {
		if !strings.ContainsRune(`"\<>`, rune(c)) {
			b.WriteByte(c)
		}
	}
	return b.String()
}()

// nameChars are the RFC 6838 restricted-name characters allowed after the
// first one.
const nameChars = "!#$&-^_.+"

// sampleEvidence is a small valid collection with two records, in no
// particular label order, plus the binding record.
func sampleEvidence(t testing.TB) *attest.Evidence {
	t.Helper()
	ev := &attest.Evidence{
		Type: testType,
		Records: map[string]attest.Record{
			"report": {MediaType: "application/vnd.example.report", Value: []byte{0x01, 0x02, 0xfe, 0xff}},
			"certs":  {MediaType: "application/pkix-cert", Value: []byte("not really a certificate")},
		},
	}
	require.NoError(t, ev.SetBinding(attest.RoleServer, attest.ModeNonce))
	return ev
}

// utf8String wraps content in a DER UTF8String.
func utf8String(content []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes(content) })
	return b.BytesOrPanic()
}

// rawTLV builds tag || length || content with the given length octets, so
// that non-DER encodings can be made on purpose.
func rawTLV(tag byte, length []byte, content []byte) []byte {
	out := append([]byte{tag}, length...)
	return append(out, content...)
}

var testKey = func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}()

// certDER makes a self-signed ECDSA certificate carrying exts.
func certDER(t testing.TB, exts ...pkix.Extension) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(42),
		Subject:         pkix.Name{CommonName: "evidence test"},
		NotBefore:       time.Unix(1700000000, 0),
		NotAfter:        time.Unix(1700003600, 0),
		ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &testKey.PublicKey, testKey)
	require.NoError(t, err)
	return der
}

func certWith(t testing.TB, exts ...pkix.Extension) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(certDER(t, exts...))
	require.NoError(t, err)
	return cert
}

func requireCheck(t testing.TB, err error, kind error, check string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, kind)
	var ce *attest.CheckError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, check, ce.Check, "error: %v", err)
	require.Equal(t, check, attest.FailedCheck(err))
}

func TestEvidenceCertificateRoundTrip(t *testing.T) {
	for name, ev := range map[string]*attest.Evidence{
		"sample": sampleEvidence(t),
		"one record": {Type: "t", Records: map[string]attest.Record{
			"a": {MediaType: testMT, Value: []byte{0}},
		}},
		// Every character the rules allow, none of which JSON escapes.
		"all allowed characters": {Type: typeChars, Records: map[string]attest.Record{
			"x-1":                     {MediaType: "A0" + nameChars + "z/Z9" + nameChars + "a", Value: bytes.Repeat([]byte{0xfb, 0xff}, 100)},
			"abcdefghijklmnopqrstuvw": {MediaType: "abcdefghijklmnopqrstuvwxyz/ABCDEFGHIJKLMNOPQRSTUVWXYZ", Value: []byte{0}},
			"xyz-0123456789":          {MediaType: "0123456789/9", Value: []byte{0}},
		}},
		"limits": {Type: strings.Repeat("t", attest.MaxMediaTypeSize), Records: func() map[string]attest.Record {
			m := map[string]attest.Record{}
			for i := range attest.MaxRecords {
				label := fmt.Sprintf("%d%s", i, strings.Repeat("a", attest.MaxLabelSize-1))
				m[label] = attest.Record{MediaType: mediaTypeOfLen(attest.MaxMediaTypeSize), Value: []byte{byte(i)}}
			}
			// The longest type and subtype: 126 bytes each, with a
			// one-byte other half.
			m["1"+strings.Repeat("a", attest.MaxLabelSize-1)] = attest.Record{MediaType: strings.Repeat("t", 126) + "/s", Value: []byte{1}}
			m["2"+strings.Repeat("a", attest.MaxLabelSize-1)] = attest.Record{MediaType: "t/" + strings.Repeat("s", 126), Value: []byte{2}}
			m["0"+strings.Repeat("a", attest.MaxLabelSize-1)] = attest.Record{MediaType: testMT, Value: bytes.Repeat([]byte{7}, attest.MaxRecordSize)}
			return m
		}()},
	} {
		t.Run(name, func(t *testing.T) {
			ext, err := ev.Extension()
			require.NoError(t, err)
			require.True(t, ext.Id.Equal(attest.OIDCMW))
			require.Equal(t, "1.3.6.1.5.5.7.1.35", ext.Id.String())
			require.False(t, ext.Critical)

			cert := certWith(t, ext)
			got, err := attest.FromCertificate(cert)
			require.NoError(t, err)
			require.Equal(t, ev, got)

			// Directly, and through encoding/json.
			got2, err := attest.ParseExtensionValue(ext.Value)
			require.NoError(t, err)
			require.Equal(t, ev, got2)
			j, err := ev.MarshalJSON()
			require.NoError(t, err)
			require.Equal(t, utf8String(j), ext.Value)
			var got3 attest.Evidence
			require.NoError(t, json.Unmarshal(j, &got3))
			require.Equal(t, *ev, got3)

			// Nothing in the encoding needs escaping: it is printable
			// ASCII without backslashes, and encoding/json (without its
			// optional HTML escaping) writes the same bytes.
			for _, c := range j {
				require.True(t, c > 0x20 && c < 0x7f && c != '\\', "byte %q in %s", c, j)
			}
			var plain bytes.Buffer
			enc := json.NewEncoder(&plain)
			enc.SetEscapeHTML(false)
			require.NoError(t, enc.Encode(ev))
			require.Equal(t, string(j)+"\n", plain.String())
			// json.Marshal escapes '&' (an allowed character) as
			// \u0026; that is still legal JSON for the same evidence.
			jm, err := json.Marshal(ev)
			require.NoError(t, err)
			require.Equal(t, strings.ReplaceAll(string(j), "&", `\u0026`), string(jm))
			var got4 attest.Evidence
			require.NoError(t, json.Unmarshal(jm, &got4))
			require.Equal(t, *ev, got4)

			d1, err := ev.Digest()
			require.NoError(t, err)
			d2, err := got.Digest()
			require.NoError(t, err)
			require.Equal(t, d1, d2)
			require.Equal(t, sha256.Sum256(j), d1)
		})
	}
}

func TestEvidenceBindingInCertificate(t *testing.T) {
	for _, role := range []attest.Role{attest.RoleServer, attest.RoleClient} {
		for _, mode := range []attest.Mode{attest.ModeStatic, attest.ModeNonce, attest.ModeBatch} {
			ev := sampleEvidence(t)
			require.NoError(t, ev.SetBinding(role, mode))
			ext, err := ev.Extension()
			require.NoError(t, err)
			got, err := attest.FromCertificate(certWith(t, ext))
			require.NoError(t, err)
			p, err := got.Binding()
			require.NoError(t, err)
			require.Equal(t, attest.BindingParams{Version: attest.BindingParamsVersion, Role: role, Mode: mode}, p)
		}
	}
}

func TestEvidenceDeterministicEncoding(t *testing.T) {
	records := []struct {
		label string
		rec   attest.Record
	}{
		{"zeta", attest.Record{MediaType: "m/z", Value: []byte{0xff}}},
		{"alpha", attest.Record{MediaType: "m/a", Value: []byte{0x01}}},
		{"mid-1", attest.Record{MediaType: "m/m", Value: []byte{0xfb, 0xef}}},
		{"0", attest.Record{MediaType: "m/0", Value: []byte("x")}},
	}
	build := func(order []int) *attest.Evidence {
		ev := &attest.Evidence{Type: "t", Records: map[string]attest.Record{}}
		for _, i := range order {
			ev.Records[records[i].label] = records[i].rec
		}
		return ev
	}
	a, b := build([]int{0, 1, 2, 3}), build([]int{3, 2, 1, 0})

	ja, err := a.MarshalJSON()
	require.NoError(t, err)
	// Labels sorted bytewise after the collection type; values unpadded
	// base64url ("-_" alphabet).
	require.Equal(t,
		`{"__cmwc_t":"t","0":["m/0","eA"],"alpha":["m/a","AQ"],"mid-1":["m/m","--8"],"zeta":["m/z","_w"]}`,
		string(ja))

	for range 20 {
		jb, err := b.MarshalJSON()
		require.NoError(t, err)
		require.Equal(t, ja, jb)
	}
	ea, err := a.Extension()
	require.NoError(t, err)
	eb, err := b.Extension()
	require.NoError(t, err)
	require.Equal(t, ea, eb)
	require.Equal(t, utf8String(ja), ea.Value)

	// Parsing a permuted (but valid) encoding and re-encoding gives the
	// canonical form.
	perm := `{"zeta":["m/z","_w"],"mid-1":["m/m","--8"],"__cmwc_t":"t","alpha":["m/a","AQ"],"0":["m/0","eA"]}`
	ev, err := attest.ParseCollection([]byte(perm))
	require.NoError(t, err)
	require.Equal(t, a, ev)
	jc, err := ev.MarshalJSON()
	require.NoError(t, err)
	require.Equal(t, ja, jc)
}

func TestFromCertificateExtensionLayer(t *testing.T) {
	valid, err := sampleEvidence(t).Extension()
	require.NoError(t, err)

	t.Run("nil certificate", func(t *testing.T) {
		_, err := attest.FromCertificate(nil)
		requireCheck(t, err, attest.ErrNotAttested, "evidence.extension")
	})
	t.Run("no extension", func(t *testing.T) {
		_, err := attest.FromCertificate(certWith(t))
		requireCheck(t, err, attest.ErrNotAttested, "evidence.extension")
		require.NotErrorIs(t, err, attest.ErrMalformedEvidence)
	})
	t.Run("other extension only", func(t *testing.T) {
		other := pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 36}, Value: valid.Value}
		_, err := attest.FromCertificate(certWith(t, other))
		requireCheck(t, err, attest.ErrNotAttested, "evidence.extension")
	})
	t.Run("critical", func(t *testing.T) {
		ext := valid
		ext.Critical = true
		// x509.ParseCertificate records unknown critical extensions in
		// UnhandledCriticalExtensions but still parses.
		cert := certWith(t, ext)
		_, err := attest.FromCertificate(cert)
		requireCheck(t, err, attest.ErrMalformedEvidence, "evidence.extension")
	})
	t.Run("duplicate", func(t *testing.T) {
		// crypto/x509 itself refuses to parse a certificate with a
		// duplicate extension...
		der := certDER(t, valid, valid)
		_, err := x509.ParseCertificate(der)
		require.ErrorContains(t, err, "duplicate extension")

		// ...and FromCertificate rejects one built by other means.
		cert := certWith(t, valid)
		cert.Extensions = append(cert.Extensions, valid)
		_, err = attest.FromCertificate(cert)
		requireCheck(t, err, attest.ErrMalformedEvidence, "evidence.extension")

		// Also when the second copy is critical or garbage.
		cert = certWith(t, valid)
		cert.Extensions = append(cert.Extensions, pkix.Extension{Id: attest.OIDCMW, Value: []byte{0x05, 0x00}})
		_, err = attest.FromCertificate(cert)
		requireCheck(t, err, attest.ErrMalformedEvidence, "evidence.extension")
	})
	t.Run("oversized in certificate", func(t *testing.T) {
		ext := pkix.Extension{Id: attest.OIDCMW, Value: utf8String(bytes.Repeat([]byte{' '}, attest.MaxExtensionSize))}
		_, err := attest.FromCertificate(certWith(t, ext))
		requireCheck(t, err, attest.ErrMalformedEvidence, "evidence.extension")
	})
	t.Run("malformed value in certificate", func(t *testing.T) {
		ext := pkix.Extension{Id: attest.OIDCMW, Value: []byte{0x04, 0x02, '{', '}'}}
		_, err := attest.FromCertificate(certWith(t, ext))
		requireCheck(t, err, attest.ErrMalformedEvidence, "evidence.extension")

		ext = pkix.Extension{Id: attest.OIDCMW, Value: utf8String([]byte(`{"__cmwc_t":"t"}`))}
		_, err = attest.FromCertificate(certWith(t, ext))
		requireCheck(t, err, attest.ErrMalformedEvidence, "evidence.collection")
	})
}

func TestParseExtensionValueRejects(t *testing.T) {
	good := []byte(`{"__cmwc_t":"t","a":["application/x-test","AQ"]}`)
	_, err := attest.ParseCollection(good)
	require.NoError(t, err)
	require.Less(t, len(good), 128) // for the short-form length cases below
	n := byte(len(good))

	for name, tc := range map[string]struct {
		der   []byte
		check string
	}{
		"empty":                   {nil, "evidence.extension"},
		"octet string":            {rawTLV(0x04, []byte{n}, good), "evidence.extension"},
		"printable string":        {rawTLV(0x13, []byte{n}, good), "evidence.extension"},
		"ia5 string":              {rawTLV(0x16, []byte{n}, good), "evidence.extension"},
		"bmp string":              {rawTLV(0x1e, []byte{n}, good), "evidence.extension"},
		"constructed utf8string":  {rawTLV(0x2c, []byte{n + 2}, rawTLV(0x0c, []byte{n}, good)), "evidence.extension"},
		"context tag":             {rawTLV(0x80, []byte{n}, good), "evidence.extension"},
		"cbor map":                {[]byte{0xa1, 0x01, 0x02}, "evidence.extension"},
		"raw json":                {good, "evidence.extension"},
		"sequence of utf8string":  {rawTLV(0x30, []byte{n + 2}, utf8String(good)), "evidence.extension"},
		"trailing zero byte":      {append(utf8String(good), 0x00), "evidence.extension"},
		"trailing second string":  {append(utf8String(good), utf8String(good)...), "evidence.extension"},
		"non-minimal length 81":   {rawTLV(0x0c, []byte{0x81, n}, good), "evidence.extension"},
		"non-minimal length 82":   {rawTLV(0x0c, []byte{0x82, 0x00, n}, good), "evidence.extension"},
		"indefinite length":       {append(rawTLV(0x0c, []byte{0x80}, good), 0x00, 0x00), "evidence.extension"},
		"length too long":         {rawTLV(0x0c, []byte{n + 1}, good), "evidence.extension"},
		"length too short":        {rawTLV(0x0c, []byte{n - 1}, good), "evidence.extension"},
		"truncated header":        {[]byte{0x0c}, "evidence.extension"},
		"truncated long length":   {[]byte{0x0c, 0x82, 0x01}, "evidence.extension"},
		"oversized":               {utf8String(bytes.Repeat([]byte{' '}, attest.MaxExtensionSize)), "evidence.extension"},
		"oversized garbage":       {make([]byte, attest.MaxExtensionSize+1), "evidence.extension"},
		"invalid utf-8":           {utf8String(append(bytes.Clone(good[:len(good)-1]), 0xff, '}')), "evidence.collection"},
		"valid der, invalid json": {utf8String([]byte(`{"__cmwc_t":`)), "evidence.collection"},
		"empty utf8string":        {utf8String(nil), "evidence.collection"},
	} {
		t.Run(name, func(t *testing.T) {
			ev, err := attest.ParseExtensionValue(tc.der)
			require.Nil(t, ev)
			requireCheck(t, err, attest.ErrMalformedEvidence, tc.check)
		})
	}

	// Sanity: the good encoding with a minimal length is accepted, also
	// in long form once the content needs it.
	_, err = attest.ParseExtensionValue(rawTLV(0x0c, []byte{n}, good))
	require.NoError(t, err)
	padded := append(bytes.Repeat([]byte{' '}, 200), good...)
	_, err = attest.ParseExtensionValue(rawTLV(0x0c, []byte{0x81, byte(len(padded))}, padded))
	require.NoError(t, err)
}

// rec is a JSON record member with a valid value.
const rec = `["application/x-test","AQ"]`

func TestParseCollectionRejects(t *testing.T) {
	ok := func(members ...string) string {
		return `{"__cmwc_t":"t"` + func() string {
			var s string
			for _, m := range members {
				s += "," + m
			}
			return s
		}() + `}`
	}
	typ := func(t string) string { return `{"__cmwc_t":"` + t + `","a":` + rec + `}` }
	mt := func(m string) string { return ok(`"a":["` + m + `","AQ"]`) }
	val := func(v string) string { return ok(`"a":["` + testMT + `","` + v + `"]`) }
	manyRecords := func(n int) string {
		var m []string
		for i := range n {
			m = append(m, fmt.Sprintf(`"r%d":%s`, i, rec))
		}
		return ok(m...)
	}
	long := func(n int) string { return strings.Repeat("t", n) }
	b64 := func(n int) string { return base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xab}, n)) }

	// The valid shapes used below really are valid.
	for _, s := range []string{ok(`"a":` + rec), manyRecords(attest.MaxRecords),
		mt(mediaTypeOfLen(attest.MaxMediaTypeSize)),
		mt(strings.Repeat("t", 126) + "/s"),
		mt("t/" + strings.Repeat("s", 126)),
		mt("a/b&c"), mt("A0" + nameChars + "/z" + nameChars),
		val(b64(attest.MaxRecordSize)),
		ok(`"` + strings.Repeat("a", attest.MaxLabelSize) + `":` + rec),
		typ(long(attest.MaxMediaTypeSize)),
		typ(typeChars),
	} {
		_, err := attest.ParseCollection([]byte(s))
		require.NoError(t, err, s)
	}

	const coll, record = "evidence.collection", "evidence.record"
	for name, tc := range map[string]struct {
		json  string
		check string
	}{
		"empty input":               {``, coll},
		"whitespace only":           {" \n", coll},
		"json array":                {`[` + rec + `]`, coll},
		"json string":               {`"t"`, coll},
		"json number":               {`1`, coll},
		"json true":                 {`true`, coll},
		"json null":                 {`null`, coll},
		"empty object":              {`{}`, coll},
		"unclosed object":           {`{"__cmwc_t":"t","a":` + rec, coll},
		"unclosed record":           {`{"__cmwc_t":"t","a":["` + testMT + `","AQ"`, coll},
		"trailing comma":            {ok(`"a":`+rec) + `,`, coll},
		"trailing comma in object":  {`{"__cmwc_t":"t","a":` + rec + `,}`, coll},
		"missing colon":             {`{"__cmwc_t" "t","a":` + rec + `}`, coll},
		"single quotes":             {`{'__cmwc_t':'t','a':['` + testMT + `','AQ']}`, coll},
		"duplicate record":          {ok(`"a":`+rec, `"a":`+rec), coll},
		"duplicate record, escaped": {ok(`"a":`+rec, `"\u0061":`+rec), coll},
		"duplicate record, diff":    {ok(`"a":`+rec, `"a":["application/y","Ag"]`), coll},
		"duplicate type":            {`{"__cmwc_t":"t","__cmwc_t":"t","a":` + rec + `}`, coll},
		"duplicate type, escaped":   {`{"__cmwc_t":"t","\u005f_cmwc_t":"u","a":` + rec + `}`, coll},
		"missing type":              {`{"a":` + rec + `}`, coll},
		"empty type":                {typ(""), coll},
		"type too long":             {typ(long(attest.MaxMediaTypeSize + 1)), coll},
		"type number":               {`{"__cmwc_t":1,"a":` + rec + `}`, coll},
		"type true":                 {`{"__cmwc_t":true,"a":` + rec + `}`, coll},
		"type null":                 {`{"__cmwc_t":null,"a":` + rec + `}`, coll},
		"type array":                {`{"__cmwc_t":["t"],"a":` + rec + `}`, coll},
		"type object":               {`{"__cmwc_t":{},"a":` + rec + `}`, coll},
		"type as record":            {`{"__cmwc_t":` + rec + `,"a":` + rec + `}`, coll},
		// Collection type characters, raw and escaped.
		"type space":              {typ("t u"), coll},
		"type escaped space":      {typ(`t\u0020u`), coll},
		"type leading space":      {typ(" t"), coll},
		"type escaped quote":      {typ(`t\"u`), coll},
		"type escaped backslash":  {typ(`t\\u`), coll},
		"type less than":          {typ("t<u"), coll},
		"type greater than":       {typ("t>u"), coll},
		"type escaped lt gt":      {typ(`\u003ct\u003e`), coll},
		"type non-ascii":          {typ("tag:exämple.com"), coll},
		"type escaped non-ascii":  {typ(`tag:ex\u00e4mple.com`), coll},
		"type u+2028":             {typ("t\u2028"), coll},
		"type escaped u+2028":     {typ(`t\u2028`), coll},
		"type escaped newline":    {typ(`t\n`), coll},
		"type escaped tab":        {typ(`t\tu`), coll},
		"type escaped nul":        {typ(`t\u0000`), coll},
		"type escaped del":        {typ(`t\u007f`), coll},
		"type lone surrogate":     {typ(`\ud800`), coll},
		"type escaped too long":   {typ(`\u0074` + long(attest.MaxMediaTypeSize)), coll},
		"no records":              {`{"__cmwc_t":"t"}`, coll},
		"record empty array":      {ok(`"a":[]`), coll},
		"record one member":       {ok(`"a":["` + testMT + `"]`), coll},
		"record three members":    {ok(`"a":["` + testMT + `","AQ",1]`), coll},
		"record three strings":    {ok(`"a":["` + testMT + `","AQ","x"]`), coll},
		"record is string":        {ok(`"a":"AQ"`), coll},
		"record is number":        {ok(`"a":1`), coll},
		"record is null":          {ok(`"a":null`), coll},
		"record is true":          {ok(`"a":true`), coll},
		"nested collection":       {ok(`"a":{"__cmwc_t":"u","b":` + rec + `}`), coll},
		"nested array value":      {ok(`"a":["` + testMT + `",["AQ"]]`), coll},
		"nested array media type": {ok(`"a":[["` + testMT + `"],"AQ"]`), coll},
		"media type number":       {ok(`"a":[1,"AQ"]`), coll},
		"media type null":         {ok(`"a":[null,"AQ"]`), coll},
		"media type true":         {ok(`"a":[true,"AQ"]`), coll},
		// Media types: type/subtype of restricted-name characters, at
		// most 128 bytes, no parameters, raw or escaped.
		"media type empty":             {mt(""), record},
		"media type too long":          {mt(mediaTypeOfLen(attest.MaxMediaTypeSize + 1)), record},
		"media type type too long":     {mt(strings.Repeat("t", 127) + "/s"), record},
		"media type subtype too long":  {mt("t/" + strings.Repeat("s", 127)), record},
		"media type escaped too long":  {mt(`\u0061` + mediaTypeOfLen(attest.MaxMediaTypeSize)), record},
		"media type no slash":          {mt("m"), record},
		"media type no subtype":        {mt("application/"), record},
		"media type no type":           {mt("/json"), record},
		"media type slash only":        {mt("/"), record},
		"media type two slashes":       {mt("a/b/c"), record},
		"media type wildcard":          {mt("*/*"), record},
		"media type parameter":         {mt("text/plain;charset=utf-8"), record},
		"media type parameter space":   {mt("text/plain; charset=utf-8"), record},
		"media type quoted parameter":  {mt(`text/plain; charset=\"utf-8\"`), record},
		"media type space":             {mt("a /b"), record},
		"media type trailing space":    {mt("a/b "), record},
		"media type leading symbol":    {mt("-a/b"), record},
		"media type subtype symbol":    {mt("a/+b"), record},
		"media type dot first":         {mt("a/.b"), record},
		"media type less than":         {mt("a/<b>"), record},
		"media type escaped html":      {mt(`a/\u003cb\u003e`), record},
		"media type escaped quote":     {mt(`a/b\"`), record},
		"media type escaped backslash": {mt(`a/b\\`), record},
		"media type non-ascii":         {mt("a/é"), record},
		"media type escaped non-ascii": {mt(`a/\u00e9`), record},
		"media type u+2028":            {mt("a/b\u2028"), record},
		"media type escaped u+2028":    {mt(`a/b\u2028`), record},
		"media type escaped u+2029":    {mt(`a/b\u2029`), record},
		"media type escaped newline":   {mt(`a/b\n`), record},
		"media type escaped nul":       {mt(`a/b\u0000`), record},
		"media type lone surrogate":    {mt(`a/\ud800`), record},
		"media type other symbol":      {mt("a/b*"), record},
		"media type equals":            {mt("a/b=c"), record},
		"value number":                 {ok(`"a":["` + testMT + `",1]`), coll},
		"value null":                   {ok(`"a":["` + testMT + `",null]`), coll},
		"value false":                  {ok(`"a":["` + testMT + `",false]`), coll},
		"value object":                 {ok(`"a":["` + testMT + `",{}]`), coll},
		"value padded base64":          {val("AQ=="), coll},
		"value padded base64 one":      {val("AQI="), coll},
		"value std alphabet plus":      {val("+-8"), coll},
		"value std alphabet slash":     {val("_/8"), coll},
		"value std encoding":           {val(base64.StdEncoding.EncodeToString([]byte{0xfb, 0xff})), coll},
		"value bad char":               {val("A*"), coll},
		"value space":                  {val("A Q"), coll},
		"value bad length":             {val("AQIDB"), coll},
		"value non-canonical bits":     {val("AR"), coll},
		"value empty":                  {val(""), coll},
		"value too large":              {val(b64(attest.MaxRecordSize + 1)), coll},
		// encoding/base64 skips '\r' and '\n' even in Strict mode; the
		// alphabet check rejects them, and everything else.
		"value escaped newline":         {val(`A\nQ`), coll},
		"value escaped crlf":            {val(`A\r\nQI`), coll},
		"value escaped cr":              {val(`A\rQ`), coll},
		"value trailing newline":        {val(`AQ\n`), coll},
		"value leading newline":         {val(`\nAQ`), coll},
		"value only newlines":           {val(`\r\n`), coll},
		"value escaped tab":             {val(`A\tQ`), coll},
		"value escaped nul":             {val(`AQ\u0000`), coll},
		"value escaped u+2028":          {val(`A\u2028Q`), coll},
		"value non-ascii":               {val("AQé"), coll},
		"value padding after newline":   {val(`AQ\n==`), coll},
		"too many records":              {manyRecords(attest.MaxRecords + 1), coll},
		"label uppercase":               {ok(`"A":` + rec), record},
		"label mixed case":              {ok(`"Report":` + rec), record},
		"label reserved prefix":         {ok(`"__x":` + rec), record},
		"label escaped reserved prefix": {ok(`"\u005f\u005fx":` + rec), record},
		"label underscore":              {ok(`"a_b":` + rec), record},
		"label dot":                     {ok(`"a.b":` + rec), record},
		"label space":                   {ok(`"a b":` + rec), record},
		"label non-ascii":               {ok(`"é":` + rec), record},
		"label escaped uppercase":       {ok(`"\u0041":` + rec), record},
		"label escaped non-ascii":       {ok(`"\u00e9":` + rec), record},
		"label escaped u+2028":          {ok(`"a\u2028":` + rec), record},
		"label escaped newline":         {ok(`"a\n":` + rec), record},
		"label escaped nul":             {ok(`"a\u0000":` + rec), record},
		"label lone surrogate":          {ok(`"\ud800":` + rec), record},
		"label too long":                {ok(`"` + strings.Repeat("a", attest.MaxLabelSize+1) + `":` + rec), record},
		"label escaped too long":        {ok(`"\u0061` + strings.Repeat("a", attest.MaxLabelSize) + `":` + rec), record},
		"label empty":                   {ok(`"":` + rec), record},
		"trailing object":               {ok(`"a":`+rec) + `{}`, coll},
		"trailing garbage":              {ok(`"a":`+rec) + `x`, coll},
		"trailing bracket":              {ok(`"a":`+rec) + `}`, coll},
		"trailing nul":                  {ok(`"a":`+rec) + "\x00", coll},
		"trailing string":               {ok(`"a":`+rec) + ` "x"`, coll},
		"leading bom":                   {"\ufeff" + ok(`"a":`+rec), coll},
		"leading garbage":               {"x" + ok(`"a":`+rec), coll},
		"invalid utf-8 in type":         {typ("t\xff"), coll},
		"invalid utf-8 in media":        {mt("a/b\xc3\x28"), coll},
		"overlong utf-8":                {mt("a/b\xc0\xaf"), coll},
		"invalid utf-8 outside":         {ok(`"a":`+rec) + "\n\xff", coll},
		"raw control char":              {mt("a/b\x01"), coll},
		"raw newline in value":          {val("A\nQ"), coll},
		"raw control char in type":      {typ("t\x7f"), coll},
		"oversized":                     {ok(`"a":`+rec) + strings.Repeat(" ", attest.MaxExtensionSize), coll},
	} {
		t.Run(name, func(t *testing.T) {
			ev, err := attest.ParseCollection([]byte(tc.json))
			require.Nil(t, ev)
			requireCheck(t, err, attest.ErrMalformedEvidence, tc.check)

			// The same through the extension and UnmarshalJSON.
			if len(tc.json) < attest.MaxExtensionSize-8 {
				ev, err = attest.ParseExtensionValue(utf8String([]byte(tc.json)))
				require.Nil(t, ev)
				requireCheck(t, err, attest.ErrMalformedEvidence, tc.check)
			}
			var e attest.Evidence
			requireCheck(t, e.UnmarshalJSON([]byte(tc.json)), attest.ErrMalformedEvidence, tc.check)
			require.Equal(t, attest.Evidence{}, e, "UnmarshalJSON must not modify its receiver on error")
		})
	}
}

// TestParseCollectionAccepts documents inputs that are legal JSON but not
// in the canonical form MarshalJSON writes. They parse to the same evidence
// as the canonical form, and re-encode canonically. Escapes are accepted
// when what they decode to is allowed.
func TestParseCollectionAccepts(t *testing.T) {
	want := &attest.Evidence{Type: "t", Records: map[string]attest.Record{
		"a": {MediaType: testMT, Value: []byte{0x01}},
		"b": {MediaType: "application/y", Value: []byte{0x01, 0x02}},
	}}
	canonical := `{"__cmwc_t":"t","a":["application/x-test","AQ"],"b":["application/y","AQI"]}`
	for name, in := range map[string]string{
		"canonical": canonical,
		// Whitespace around tokens is JSON-legal, including before the
		// object and after it (trailing whitespace is not "trailing data").
		"whitespace around tokens": " \t\r\n{ \"__cmwc_t\" :\n\"t\" , \"a\" : [ \"application/x-test\" , \"AQ\" ] ,\"b\":[\"application/y\",\"AQI\"]\n}\r\n\t ",
		"type last":                `{"a":["application/x-test","AQ"],"b":["application/y","AQI"],"__cmwc_t":"t"}`,
		"type between records":     `{"b":["application/y","AQI"],"__cmwc_t":"t","a":["application/x-test","AQ"]}`,
		"escaped label":            `{"__cmwc_t":"t","\u0061":["application/x-test","AQ"],"b":["application/y","AQI"]}`,
		"escaped key":              `{"\u005f_cmwc_t":"t","a":["application/x-test","AQ"],"b":["application/y","AQI"]}`,
		"escaped strings":          `{"__cmwc_t":"\u0074","a":["\u0061pplication/x-tes\u0074","\u0041Q"],"b":["application/y","AQ\u0049"]}`,
		"upper-case hex escape":    `{"__cmwc_t":"t","a":["application\u002Fx-test","AQ"],"b":["application\u002fy","AQI"]}`,
		"escaped solidus":          `{"__cmwc_t":"t","a":["application\/x-test","AQ"],"b":["application/y","AQI"]}`,
	} {
		t.Run(name, func(t *testing.T) {
			ev, err := attest.ParseCollection([]byte(in))
			require.NoError(t, err)
			require.Equal(t, want, ev)
			out, err := ev.MarshalJSON()
			require.NoError(t, err)
			require.Equal(t, canonical, string(out))
		})
	}

	// The collection type allows more than media types do, escaped too.
	ev, err := attest.ParseCollection([]byte(`{"__cmwc_t":"tag:x\u0026y\/z?a=b#c","a":["application/x-test","AQ"]}`))
	require.NoError(t, err)
	require.Equal(t, "tag:x&y/z?a=b#c", ev.Type)
	out, err := ev.MarshalJSON()
	require.NoError(t, err)
	require.Equal(t, `{"__cmwc_t":"tag:x&y/z?a=b#c","a":["application/x-test","AQ"]}`, string(out))
}

func TestEvidenceEncodeRejects(t *testing.T) {
	const coll, record, ext = "evidence.collection", "evidence.record", "evidence.extension"
	one := func(label string, r attest.Record) *attest.Evidence {
		return &attest.Evidence{Type: "t", Records: map[string]attest.Record{label: r}}
	}
	withType := func(typ string) *attest.Evidence {
		return &attest.Evidence{Type: typ, Records: map[string]attest.Record{"a": {MediaType: testMT, Value: []byte{1}}}}
	}
	withMT := func(mt string) *attest.Evidence { return one("a", attest.Record{MediaType: mt, Value: []byte{1}}) }
	good := attest.Record{MediaType: testMT, Value: []byte{1}}
	tooMany := one("a", good)
	for i := range attest.MaxRecords {
		tooMany.Records[fmt.Sprint(i)] = good
	}
	big := attest.Record{MediaType: testMT, Value: bytes.Repeat([]byte{1}, attest.MaxRecordSize)}
	for name, tc := range map[string]struct {
		ev    *attest.Evidence
		check string
	}{
		"nil":                          {nil, coll},
		"empty type":                   {withType(""), coll},
		"type too long":                {withType(strings.Repeat("t", attest.MaxMediaTypeSize+1)), coll},
		"type space":                   {withType("t u"), coll},
		"type quote":                   {withType(`t"u`), coll},
		"type backslash":               {withType(`t\u`), coll},
		"type less than":               {withType("t<u"), coll},
		"type greater than":            {withType("t>u"), coll},
		"type non-ascii":               {withType("tag:exämple.com"), coll},
		"type u+2028":                  {withType("t\u2028"), coll},
		"type newline":                 {withType("t\n"), coll},
		"type nul":                     {withType("t\x00"), coll},
		"type del":                     {withType("t\x7f"), coll},
		"type invalid utf-8":           {withType("t\xff"), coll},
		"no records":                   {&attest.Evidence{Type: "t"}, coll},
		"empty records":                {&attest.Evidence{Type: "t", Records: map[string]attest.Record{}}, coll},
		"too many records":             {tooMany, coll},
		"label empty":                  {one("", good), record},
		"label uppercase":              {one("A", good), record},
		"label reserved":               {one("__cmwc_t", good), record},
		"label reserved pfx":           {one("__x", good), record},
		"label too long":               {one(strings.Repeat("a", attest.MaxLabelSize+1), good), record},
		"label non-ascii":              {one("é", good), record},
		"label u+2028":                 {one("a\u2028", good), record},
		"label quote":                  {one(`a"`, good), record},
		"media type empty":             {one("a", attest.Record{Value: []byte{1}}), record},
		"media type too long":          {withMT(mediaTypeOfLen(attest.MaxMediaTypeSize + 1)), record},
		"media type type too long":     {withMT(strings.Repeat("t", 127) + "/s"), record},
		"media type no slash":          {withMT("m"), record},
		"media type two slashes":       {withMT("a/b/c"), record},
		"media type empty subtype":     {withMT("a/"), record},
		"media type empty type":        {withMT("/b"), record},
		"media type parameter":         {withMT(`text/plain; charset="utf-8"`), record},
		"media type leading symbol":    {withMT("a/-b"), record},
		"media type html":              {withMT("a/<b>"), record},
		"media type quote":             {withMT(`a/b"`), record},
		"media type backslash":         {withMT(`a/b\`), record},
		"media type non-ascii":         {withMT("a/é"), record},
		"media type u+2028":            {withMT("a/b\u2028"), record},
		"media type control character": {withMT("a/b\n\t\x00"), record},
		"value empty":                  {one("a", attest.Record{MediaType: testMT, Value: []byte{}}), record},
		"value nil":                    {one("a", attest.Record{MediaType: testMT}), record},
		"value too large":              {one("a", attest.Record{MediaType: testMT, Value: bytes.Repeat([]byte{1}, attest.MaxRecordSize+1)}), record},
		"extension too large":          {&attest.Evidence{Type: "t", Records: map[string]attest.Record{"a": big, "b": big}}, ext},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.ev.Extension()
			requireCheck(t, err, attest.ErrMalformedEvidence, tc.check)
			if tc.check != ext {
				_, err = tc.ev.MarshalJSON()
				requireCheck(t, err, attest.ErrMalformedEvidence, tc.check)
				_, err = tc.ev.Digest()
				requireCheck(t, err, attest.ErrMalformedEvidence, tc.check)
			}
		})
	}
}

func TestEvidenceRecord(t *testing.T) {
	ev := sampleEvidence(t)
	v, err := ev.Record("report", "application/vnd.example.report")
	require.NoError(t, err)
	require.Equal(t, []byte{0x01, 0x02, 0xfe, 0xff}, v)

	_, err = ev.Record("missing", "application/vnd.example.report")
	requireCheck(t, err, attest.ErrMalformedEvidence, "evidence.record")
	_, err = ev.Record("report", "application/octet-stream")
	requireCheck(t, err, attest.ErrMalformedEvidence, "evidence.record")
}

func TestBindingRecordRoundTrip(t *testing.T) {
	for _, role := range []attest.Role{attest.RoleServer, attest.RoleClient} {
		for _, mode := range []attest.Mode{attest.ModeStatic, attest.ModeNonce, attest.ModeBatch} {
			t.Run(role.String()+"/"+mode.String(), func(t *testing.T) {
				ev := &attest.Evidence{Type: "t"} // nil Records
				require.NoError(t, ev.SetBinding(role, mode))
				r := ev.Records[attest.BindingRecordLabel]
				require.Equal(t, attest.BindingMediaType, r.MediaType)
				require.JSONEq(t, fmt.Sprintf(`{"version":1,"role":%q,"mode":%q}`, role, mode), string(r.Value))

				p, err := ev.Binding()
				require.NoError(t, err)
				require.Equal(t, attest.BindingParams{Version: 1, Role: role, Mode: mode}, p)

				// SetBinding replaces the record and leaves others alone.
				ev.Records["other"] = attest.Record{MediaType: testMT, Value: []byte{1}}
				other := attest.RoleClient
				if role == other {
					other = attest.RoleServer
				}
				require.NoError(t, ev.SetBinding(other, mode))
				require.Len(t, ev.Records, 2)
				p, err = ev.Binding()
				require.NoError(t, err)
				require.Equal(t, other, p.Role)
			})
		}
	}

	// Parameters that cannot be encoded are refused by SetBinding.
	for name, tc := range map[string]struct {
		role attest.Role
		mode attest.Mode
	}{
		"zero role": {0, attest.ModeNonce},
		"bad role":  {'X', attest.ModeStatic},
		"mode 4":    {attest.RoleServer, attest.ModeBound + 1},
		"bad mode":  {attest.RoleServer, 9},
	} {
		ev := &attest.Evidence{Type: "t"}
		require.Error(t, ev.SetBinding(tc.role, tc.mode), name)
		_, present := ev.Records[attest.BindingRecordLabel]
		require.False(t, present, name)
	}
}

func TestBindingRecordRejects(t *testing.T) {
	withBinding := func(mediaType, value string) *attest.Evidence {
		return &attest.Evidence{Type: "t", Records: map[string]attest.Record{
			attest.BindingRecordLabel: {MediaType: mediaType, Value: []byte(value)},
		}}
	}
	const valid = `{"version":1,"role":"server","mode":"nonce"}`
	_, err := withBinding(attest.BindingMediaType, valid).Binding()
	require.NoError(t, err)

	for name, tc := range map[string]struct {
		ev    *attest.Evidence
		check string
	}{
		"no binding record":   {&attest.Evidence{Type: "t", Records: map[string]attest.Record{"a": {MediaType: testMT, Value: []byte{1}}}}, "evidence.record"},
		"wrong media type":    {withBinding("application/json", valid), "evidence.record"},
		"unknown field":       {withBinding(attest.BindingMediaType, `{"version":1,"role":"server","mode":"nonce","nonce":"00"}`), "evidence.binding"},
		"version 2":           {withBinding(attest.BindingMediaType, `{"version":2,"role":"server","mode":"nonce"}`), "evidence.binding"},
		"version 0":           {withBinding(attest.BindingMediaType, `{"version":0,"role":"server","mode":"nonce"}`), "evidence.binding"},
		"version missing":     {withBinding(attest.BindingMediaType, `{"role":"server","mode":"nonce"}`), "evidence.binding"},
		"version string":      {withBinding(attest.BindingMediaType, `{"version":"1","role":"server","mode":"nonce"}`), "evidence.binding"},
		"version float":       {withBinding(attest.BindingMediaType, `{"version":1.0,"role":"server","mode":"nonce"}`), "evidence.binding"},
		"trailing object":     {withBinding(attest.BindingMediaType, valid+`{}`), "evidence.binding"},
		"trailing garbage":    {withBinding(attest.BindingMediaType, valid+` x`), "evidence.binding"},
		"trailing bracket":    {withBinding(attest.BindingMediaType, valid+`}`), "evidence.binding"},
		"role capitalised":    {withBinding(attest.BindingMediaType, `{"version":1,"role":"Server","mode":"nonce"}`), "evidence.binding"},
		"role unknown":        {withBinding(attest.BindingMediaType, `{"version":1,"role":"verifier","mode":"nonce"}`), "evidence.binding"},
		"role empty":          {withBinding(attest.BindingMediaType, `{"version":1,"role":"","mode":"nonce"}`), "evidence.binding"},
		"role letter":         {withBinding(attest.BindingMediaType, `{"version":1,"role":"S","mode":"nonce"}`), "evidence.binding"},
		"role number":         {withBinding(attest.BindingMediaType, `{"version":1,"role":83,"mode":"nonce"}`), "evidence.binding"},
		"mode batched":        {withBinding(attest.BindingMediaType, `{"version":1,"role":"server","mode":"batched"}`), "evidence.binding"},
		"mode batch caps":     {withBinding(attest.BindingMediaType, `{"version":1,"role":"server","mode":"Batch"}`), "evidence.binding"},
		"mode capitalised":    {withBinding(attest.BindingMediaType, `{"version":1,"role":"server","mode":"Nonce"}`), "evidence.binding"},
		"mode empty":          {withBinding(attest.BindingMediaType, `{"version":1,"role":"server","mode":""}`), "evidence.binding"},
		"mode number":         {withBinding(attest.BindingMediaType, `{"version":1,"role":"server","mode":1}`), "evidence.binding"},
		"mode true":           {withBinding(attest.BindingMediaType, `{"version":1,"role":"server","mode":true}`), "evidence.binding"},
		"not json":            {withBinding(attest.BindingMediaType, `version=1`), "evidence.binding"},
		"json array":          {withBinding(attest.BindingMediaType, `[1,"server","nonce"]`), "evidence.binding"},
		"json null":           {withBinding(attest.BindingMediaType, `null`), "evidence.binding"},
		"truncated":           {withBinding(attest.BindingMediaType, valid[:len(valid)-1]), "evidence.binding"},
		"binding in cmw form": {withBinding(attest.BindingMediaType, `["application/json","e30"]`), "evidence.binding"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.ev.Binding()
			requireCheck(t, err, attest.ErrMalformedEvidence, tc.check)
		})
	}
}

// TestBindingRecordStrictness lists binding records that encoding/json
// would accept although they are not what SetBinding writes: members
// missing or null (zero Role, ModeStatic), keys matched case-insensitively,
// duplicate keys (last wins), other spellings of the number 1. Binding
// rejects them all. JSON-equivalent forms of a valid record (whitespace,
// member order, escapes) are accepted.
func TestBindingRecordStrictness(t *testing.T) {
	withBinding := func(v string) *attest.Evidence {
		return &attest.Evidence{Type: "t", Records: map[string]attest.Record{
			attest.BindingRecordLabel: {MediaType: attest.BindingMediaType, Value: []byte(v)},
		}}
	}
	for name, v := range map[string]string{
		"empty object":          `{}`,
		"empty value":           ``,
		"whitespace only":       ` `,
		"role and mode missing": `{"version":1}`,
		"mode missing":          `{"version":1,"role":"server"}`,
		"role missing":          `{"version":1,"mode":"nonce"}`,
		"version missing":       `{"role":"server","mode":"nonce"}`,
		"only role":             `{"role":"server"}`,
		"role and mode null":    `{"version":1,"role":null,"mode":null}`,
		"role null":             `{"version":1,"role":null,"mode":"nonce"}`,
		"mode null":             `{"version":1,"role":"server","mode":null}`,
		"version null":          `{"version":null,"role":"server","mode":"nonce"}`,
		"version 1.0":           `{"version":1.0,"role":"server","mode":"nonce"}`,
		"version 01":            `{"version":01,"role":"server","mode":"nonce"}`,
		"version string":        `{"version":"1","role":"server","mode":"nonce"}`,
		"version 1e0":           `{"version":1e0,"role":"server","mode":"nonce"}`,
		"version 10e-1":         `{"version":10e-1,"role":"server","mode":"nonce"}`,
		"version -1":            `{"version":-1,"role":"server","mode":"nonce"}`,
		"version +1":            `{"version":+1,"role":"server","mode":"nonce"}`,
		"version true":          `{"version":true,"role":"server","mode":"nonce"}`,
		"version array":         `{"version":[1],"role":"server","mode":"nonce"}`,
		"version object":        `{"version":{},"role":"server","mode":"nonce"}`,
		"role array":            `{"version":1,"role":["server"],"mode":"nonce"}`,
		"role object":           `{"version":1,"role":{"server":1},"mode":"nonce"}`,
		"role trailing space":   `{"version":1,"role":"server ","mode":"nonce"}`,
		"role trailing nul":     `{"version":1,"role":"server\u0000","mode":"nonce"}`,
		"keys in upper case":    `{"VERSION":1,"Role":"server","MODE":"nonce"}`,
		"version capitalised":   `{"Version":1,"role":"server","mode":"nonce"}`,
		"duplicate role":        `{"version":1,"role":"client","role":"server","mode":"nonce"}`,
		"duplicate role, same":  `{"version":1,"role":"server","role":"server","mode":"nonce"}`,
		"duplicate version":     `{"version":1,"version":1,"role":"server","mode":"nonce"}`,
		"duplicate mode":        `{"version":1,"role":"server","mode":"nonce","mode":"static"}`,
		"duplicate, escaped":    `{"version":1,"role":"server","\u0072ole":"server","mode":"nonce"}`,
		"unknown member null":   `{"version":1,"role":"server","mode":"nonce","extra":null}`,
		"empty key":             `{"version":1,"role":"server","mode":"nonce","":1}`,
		"trailing comma":        `{"version":1,"role":"server","mode":"nonce",}`,
		"nested":                `{"binding":{"version":1,"role":"server","mode":"nonce"}}`,
		"two objects":           `{"version":1,"role":"server","mode":"nonce"}{"version":1,"role":"server","mode":"nonce"}`,
		"leading bom":           "\ufeff" + `{"version":1,"role":"server","mode":"nonce"}`,
		"invalid utf-8":         `{"version":1,"role":"server` + "\xff" + `","mode":"nonce"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := withBinding(v).Binding()
			requireCheck(t, err, attest.ErrMalformedEvidence, "evidence.binding")
		})
	}

	want := attest.BindingParams{Version: attest.BindingParamsVersion, Role: attest.RoleServer, Mode: attest.ModeNonce}
	for name, v := range map[string]string{
		"canonical":     `{"version":1,"role":"server","mode":"nonce"}`,
		"member order":  `{"mode":"nonce","role":"server","version":1}`,
		"whitespace":    " \t\r\n{ \"version\" : 1 ,\n\"role\":\"server\", \"mode\" :\"nonce\" }\n ",
		"escaped key":   `{"\u0076ersion":1,"role":"server","mode":"nonce"}`,
		"escaped value": `{"version":1,"role":"\u0073erver","mode":"non\u0063e"}`,
	} {
		p, err := withBinding(v).Binding()
		require.NoError(t, err, name)
		require.Equal(t, want, p, name)
	}
}
