package atls

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"strings"

	"github.com/confidential-go/atls/atls/attest"
)

// Nonce transport. The client's nonce travels as one extra ALPN entry,
// appended to the application's own protocols; the server's nonce (for
// mutual attestation) travels as a distinguished name in the
// certificate_authorities list of the CertificateRequest. Both are ASCII
// so that every TLS stack passes them through untouched.
const (
	// NoncePrefix starts the ALPN entry and the common name that carry a
	// nonce: NoncePrefix followed by 64 lowercase hex digits.
	NoncePrefix = "atls-nonce-v1:"
	nonceLen    = len(NoncePrefix) + 2*attest.NonceSize
)

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

func newNonce() ([attest.NonceSize]byte, error) {
	var n [attest.NonceSize]byte
	_, err := rand.Read(n[:])
	return n, err
}

func encodeNonce(n [attest.NonceSize]byte) string {
	return NoncePrefix + hex.EncodeToString(n[:])
}

// decodeNonce parses a NoncePrefix string. ok is false when s is not a
// nonce entry at all; err is set when it is one but malformed.
func decodeNonce(s string) (n [attest.NonceSize]byte, ok bool, err error) {
	if !strings.HasPrefix(s, NoncePrefix) {
		return n, false, nil
	}
	h := s[len(NoncePrefix):]
	if len(s) != nonceLen || strings.ToLower(h) != h {
		return n, true, attest.Fail(attest.ErrBinding, "nonce.format", "malformed nonce entry of %d bytes", len(s))
	}
	if _, err := hex.Decode(n[:], []byte(h)); err != nil {
		return n, true, attest.Fail(attest.ErrBinding, "nonce.format", "malformed nonce entry: %v", err)
	}
	if n == ([attest.NonceSize]byte{}) {
		return n, true, attest.Fail(attest.ErrBinding, "nonce.format", "all-zero nonce")
	}
	return n, true, nil
}

// splitALPN separates the nonce entry from the application protocols.
// More than one nonce entry is an error: a verifier must know which one it
// bound to.
func splitALPN(protos []string) (nonce [attest.NonceSize]byte, found bool, rest []string, err error) {
	for _, p := range protos {
		n, ok, err := decodeNonce(p)
		if err != nil {
			return nonce, false, nil, err
		}
		if !ok {
			rest = append(rest, p)
			continue
		}
		if found {
			return nonce, false, nil, attest.Fail(attest.ErrBinding, "nonce.format", "more than one nonce entry in ALPN")
		}
		nonce, found = n, true
	}
	return nonce, found, rest, nil
}

// nonceDN encodes a nonce as a DER distinguished name with one common name.
func nonceDN(n [attest.NonceSize]byte) ([]byte, error) {
	return asn1.Marshal(pkix.Name{CommonName: encodeNonce(n)}.ToRDNSequence())
}

// nonceFromCAs finds the server's nonce in a certificate_authorities list.
// Other names in the list are ignored; two nonces are an error.
func nonceFromCAs(cas [][]byte) (nonce [attest.NonceSize]byte, found bool, err error) {
	for _, der := range cas {
		var rdns pkix.RDNSequence
		rest, err := asn1.Unmarshal(der, &rdns)
		if err != nil || len(rest) != 0 || len(rdns) != 1 || len(rdns[0]) != 1 {
			continue
		}
		atv := rdns[0][0]
		s, ok := atv.Value.(string)
		if !atv.Type.Equal(oidCommonName) || !ok {
			continue
		}
		n, isNonce, err := decodeNonce(s)
		if !isNonce {
			continue
		}
		if err != nil {
			return nonce, false, err
		}
		if found {
			return nonce, false, attest.Fail(attest.ErrBinding, "nonce.format", "more than one nonce in certificate_authorities")
		}
		nonce, found = n, true
	}
	return nonce, found, nil
}
