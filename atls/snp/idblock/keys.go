package idblock

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"

	"github.com/confidential-go/atls/atls/attest"
)

// ParsePrivateKey reads an ECDSA P-384 private key (an ID or author key)
// from PEM ("PRIVATE KEY", PKCS #8, or "EC PRIVATE KEY", SEC 1) or from
// DER in either encoding; openssl, snpguest and sev-snp-measure write
// these. It fails with check idblock.key (ErrConfig) on anything else:
// other key types and curves, encrypted PEM, several PEM blocks, or data
// around the block.
func ParsePrivateKey(data []byte) (*ecdsa.PrivateKey, error) {
	der := data
	if block, rest := pem.Decode(data); block != nil {
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, attest.Fail(attest.ErrConfig, CheckKey, "data after the PEM block (want exactly one private key)")
		}
		if len(block.Headers) != 0 {
			return nil, attest.Fail(attest.ErrConfig, CheckKey, "PEM block has headers (encrypted keys are not supported)")
		}
		switch block.Type {
		case "PRIVATE KEY", "EC PRIVATE KEY":
		default:
			return nil, attest.Fail(attest.ErrConfig, CheckKey, "PEM block is %q, want PRIVATE KEY or EC PRIVATE KEY", block.Type)
		}
		der = block.Bytes
	}
	var key any
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		ec, ecErr := x509.ParseECPrivateKey(der)
		if ecErr != nil {
			return nil, attest.Fail(attest.ErrConfig, CheckKey, "not a PKCS #8 or SEC 1 private key: %v", err)
		}
		key = ec
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, attest.Fail(attest.ErrConfig, CheckKey, "the key is %T, want an ECDSA P-384 key", key)
	}
	if ec.Curve != elliptic.P384() {
		return nil, attest.Fail(attest.ErrConfig, CheckKey, "the key is on %s, want P-384", ec.Curve.Params().Name)
	}
	return ec, nil
}
