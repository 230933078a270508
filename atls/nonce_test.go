package atls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
)

// testNonce returns a nonce with every byte distinct and non-zero.
func testNonce(seed byte) [attest.NonceSize]byte {
	var n [attest.NonceSize]byte
	for i := range n {
		n[i] = seed + byte(i)*7 + 1
	}
	return n
}

func requireNonceFormatError(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, attest.ErrBinding)
	var ce *attest.CheckError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, attest.ErrBinding, ce.Kind)
	require.Equal(t, "nonce.format", ce.Check)
}

func TestEncodeDecodeNonce(t *testing.T) {
	for _, n := range [][attest.NonceSize]byte{
		testNonce(0),
		testNonce(0xf0),
		{0: 1},
		{31: 0xff},
		func() (n [attest.NonceSize]byte) {
			for i := range n {
				n[i] = 0xff
			}
			return n
		}(),
	} {
		s := encodeNonce(n)
		require.True(t, strings.HasPrefix(s, NoncePrefix))
		require.Len(t, s, len(NoncePrefix)+64)
		require.Equal(t, strings.ToLower(s), s)
		// ALPN protocol names are at most 255 bytes.
		require.LessOrEqual(t, len(s), 255)

		got, ok, err := decodeNonce(s)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, n, got)
	}
	require.Equal(t, NoncePrefix+"01"+strings.Repeat("00", 31), encodeNonce([attest.NonceSize]byte{0: 1}))

	n1, err := newNonce()
	require.NoError(t, err)
	n2, err := newNonce()
	require.NoError(t, err)
	require.NotEqual(t, n1, n2)
	require.NotEqual(t, [attest.NonceSize]byte{}, n1)
}

func TestDecodeNonceMalformed(t *testing.T) {
	valid := encodeNonce(testNonce(0x10))
	hexPart := valid[len(NoncePrefix):]
	for name, s := range map[string]string{
		"uppercase hex":      NoncePrefix + strings.ToUpper(hexPart),
		"one uppercase":      valid[:len(valid)-1] + "A",
		"prefix only":        NoncePrefix,
		"one digit short":    valid[:len(valid)-1],
		"one digit long":     valid + "0",
		"odd length":         NoncePrefix + hexPart[:63],
		"half length":        NoncePrefix + hexPart[:32],
		"double length":      valid + hexPart,
		"all zero":           NoncePrefix + strings.Repeat("0", 64),
		"non-hex letter":     valid[:len(valid)-1] + "g",
		"non-hex punct":      valid[:len(valid)-2] + "-1",
		"space":              valid[:len(valid)-1] + " ",
		"0x prefix":          NoncePrefix + "0x" + hexPart[2:],
		"non-ascii":          NoncePrefix + strings.Repeat("é", 32),
		"invalid utf-8":      NoncePrefix + strings.Repeat("\xff", 64),
		"nul":                NoncePrefix + strings.Repeat("\x00", 64),
		"trailing separator": valid + ":",
	} {
		t.Run(name, func(t *testing.T) {
			_, ok, err := decodeNonce(s)
			require.True(t, ok, "a string with the prefix is a nonce entry")
			requireNonceFormatError(t, err)
		})
	}
}

func TestDecodeNonceNotANonce(t *testing.T) {
	hexPart := encodeNonce(testNonce(1))[len(NoncePrefix):]
	for _, s := range []string{
		"",
		"h2",
		"http/1.1",
		hexPart,
		"atls-nonce-v1" + hexPart,   // no colon
		"atls-nonce-v2:" + hexPart,  // other version
		"ATLS-NONCE-V1:" + hexPart,  // prefix is case-sensitive
		" atls-nonce-v1:" + hexPart, // leading space
		"x" + NoncePrefix + hexPart, // prefix not at the start
		"atls-nonce-v1",
		"atls-nonce-v1-" + hexPart,
	} {
		n, ok, err := decodeNonce(s)
		require.NoError(t, err, s)
		require.False(t, ok, s)
		require.Equal(t, [attest.NonceSize]byte{}, n, s)
	}
}

func TestSplitALPN(t *testing.T) {
	n := testNonce(3)
	e := encodeNonce(n)
	for name, tc := range map[string]struct {
		in        []string
		wantFound bool
		wantRest  []string
	}{
		"nil":              {nil, false, nil},
		"empty":            {[]string{}, false, nil},
		"only nonce":       {[]string{e}, true, nil},
		"no nonce":         {[]string{"h2", "http/1.1"}, false, []string{"h2", "http/1.1"}},
		"nonce last":       {[]string{"h2", "http/1.1", e}, true, []string{"h2", "http/1.1"}},
		"nonce first":      {[]string{e, "h2", "http/1.1"}, true, []string{"h2", "http/1.1"}},
		"nonce in middle":  {[]string{"c", e, "a", "b"}, true, []string{"c", "a", "b"}},
		"duplicates kept":  {[]string{"h2", e, "h2"}, true, []string{"h2", "h2"}},
		"lookalike kept":   {[]string{"ATLS-NONCE-V1:00", e}, true, []string{"ATLS-NONCE-V1:00"}},
		"empty proto kept": {[]string{"", e}, true, []string{""}},
	} {
		t.Run(name, func(t *testing.T) {
			got, found, rest, err := splitALPN(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.wantFound, found)
			require.Equal(t, tc.wantRest, rest)
			if found {
				require.Equal(t, n, got)
			} else {
				require.Equal(t, [attest.NonceSize]byte{}, got)
			}
		})
	}

	// The input is not modified.
	in := []string{"a", e, "b"}
	_, _, _, err := splitALPN(in)
	require.NoError(t, err)
	require.Equal(t, []string{"a", e, "b"}, in)
}

func TestSplitALPNRejects(t *testing.T) {
	e1, e2 := encodeNonce(testNonce(1)), encodeNonce(testNonce(2))
	for name, in := range map[string][]string{
		"two different nonces":  {"h2", e1, e2},
		"same nonce twice":      {e1, "h2", e1},
		"malformed nonce":       {"h2", NoncePrefix + "00"},
		"zero nonce":            {NoncePrefix + strings.Repeat("0", 64), "h2"},
		"valid then malformed":  {e1, e1[:len(e1)-1]},
		"malformed then valid":  {strings.ToUpper(e1[:len(NoncePrefix)]) + "x", NoncePrefix + "zz", e1},
		"uppercase nonce entry": {NoncePrefix + strings.ToUpper(e1[len(NoncePrefix):])},
	} {
		t.Run(name, func(t *testing.T) {
			_, found, rest, err := splitALPN(in)
			requireNonceFormatError(t, err)
			require.False(t, found)
			require.Nil(t, rest)
		})
	}
}

func TestNonceDNRoundTrip(t *testing.T) {
	n := testNonce(9)
	der, err := nonceDN(n)
	require.NoError(t, err)

	// It is a well-formed DN with exactly one common name.
	var rdns pkix.RDNSequence
	rest, err := asn1.Unmarshal(der, &rdns)
	require.NoError(t, err)
	require.Empty(t, rest)
	var name pkix.Name
	name.FillFromRDNSequence(&rdns)
	require.Equal(t, encodeNonce(n), name.CommonName)
	require.Len(t, rdns, 1)
	require.Len(t, rdns[0], 1)

	got, found, err := nonceFromCAs([][]byte{der})
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, n, got)
}

// caSubjectDER makes a real CA certificate with a multi-attribute subject
// and returns its raw subject, as a TLS stack would put it in
// certificate_authorities.
func caSubjectDER(t *testing.T, subject pkix.Name) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               subject,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert.RawSubject
}

func TestNonceFromCAs(t *testing.T) {
	n := testNonce(5)
	nonce, err := nonceDN(n)
	require.NoError(t, err)
	other, err := nonceDN(testNonce(6))
	require.NoError(t, err)

	realCA := caSubjectDER(t, pkix.Name{
		Country:      []string{"DE"},
		Organization: []string{"Example Org"},
		CommonName:   "Example Root CA",
	})
	// A CA whose only attribute is a common name that is not a nonce.
	cnOnly := caSubjectDER(t, pkix.Name{CommonName: "Plain CA"})
	// A nonce-looking common name next to another attribute is not a
	// nonce DN: only a DN with exactly one attribute is considered.
	withOrg, err := asn1.Marshal(pkix.Name{Organization: []string{"x"}, CommonName: encodeNonce(testNonce(7))}.ToRDNSequence())
	require.NoError(t, err)
	// Two attributes in one RDN (multi-valued RDN).
	multiValued, err := asn1.Marshal(pkix.RDNSequence{{
		{Type: oidCommonName, Value: encodeNonce(testNonce(7))},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "x"},
	}})
	require.NoError(t, err)
	// The nonce string under another attribute type (organization).
	wrongType, err := asn1.Marshal(pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: encodeNonce(testNonce(7))}}})
	require.NoError(t, err)
	// A common name that is not a string.
	intCN, err := asn1.Marshal(pkix.RDNSequence{{{Type: oidCommonName, Value: 42}}})
	require.NoError(t, err)
	garbage := [][]byte{
		nil,
		{},
		{0x30},
		{0x30, 0x00},                     // empty RDNSequence
		{0x04, 0x02, 0x01, 0x02},         // OCTET STRING
		{0xff, 0xff, 0xff, 0xff},         // not DER
		append(cloneBytes(nonce), 0x00),  // trailing byte
		cloneBytes(nonce)[:len(nonce)-1], // truncated
	}

	for name, tc := range map[string]struct {
		cas       [][]byte
		wantFound bool
	}{
		"nil list":           {nil, false},
		"only nonce":         {[][]byte{nonce}, true},
		"real CA then nonce": {[][]byte{realCA, cnOnly, nonce}, true},
		"nonce then real CA": {[][]byte{nonce, realCA}, true},
		"only real CAs":      {[][]byte{realCA, cnOnly}, false},
		"org next to nonce":  {[][]byte{withOrg}, false},
		"org and nonce dn":   {[][]byte{withOrg, nonce}, true},
		"multi-valued rdn":   {[][]byte{multiValued, nonce}, true},
		"wrong attribute":    {[][]byte{wrongType, nonce}, true},
		"integer cn":         {[][]byte{intCN, nonce}, true},
		"garbage ignored":    {append(append([][]byte{}, garbage...), nonce), true},
		"only garbage":       {garbage, false},
	} {
		t.Run(name, func(t *testing.T) {
			got, found, err := nonceFromCAs(tc.cas)
			require.NoError(t, err)
			require.Equal(t, tc.wantFound, found)
			if found {
				require.Equal(t, n, got)
			} else {
				require.Equal(t, [attest.NonceSize]byte{}, got)
			}
		})
	}

	// Other string types for the common name are accepted too.
	for _, tag := range []string{"utf8", "ia5", "printable"} {
		der, err := asn1.Marshal(pkix.RDNSequence{{{Type: oidCommonName, Value: encodeNonce(n)}}})
		require.NoError(t, err)
		if tag != "printable" {
			// Re-tag the string: PrintableString (0x13) -> UTF8String
			// (0x0c) or IA5String (0x16). Same length, same content.
			i := strings.Index(string(der), encodeNonce(n)) - 2
			require.Equal(t, byte(0x13), der[i])
			der = append([]byte(nil), der...)
			der[i] = map[string]byte{"utf8": 0x0c, "ia5": 0x16}[tag]
		}
		got, found, err := nonceFromCAs([][]byte{der})
		require.NoError(t, err, tag)
		require.True(t, found, tag)
		require.Equal(t, n, got, tag)
	}

	for name, cas := range map[string][][]byte{
		"two different nonces": {nonce, other},
		"same nonce twice":     {nonce, realCA, nonce},
		"malformed nonce CN":   {mustDN(t, NoncePrefix+"00"), nonce},
		"uppercase nonce CN":   {mustDN(t, NoncePrefix+strings.ToUpper(encodeNonce(n)[len(NoncePrefix):]))},
		"zero nonce CN":        {realCA, mustDN(t, NoncePrefix+strings.Repeat("0", 64))},
	} {
		t.Run(name, func(t *testing.T) {
			_, found, err := nonceFromCAs(cas)
			requireNonceFormatError(t, err)
			require.False(t, found)
		})
	}
}

func cloneBytes(b []byte) []byte { return append([]byte(nil), b...) }

func mustDN(t *testing.T, cn string) []byte {
	t.Helper()
	der, err := asn1.Marshal(pkix.Name{CommonName: cn}.ToRDNSequence())
	require.NoError(t, err)
	return der
}
