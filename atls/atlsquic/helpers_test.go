package atlsquic_test

import (
	"crypto/x509"

	"github.com/confidential-go/atls/atls/attest"
)

// The fixture and the other helpers shared with package atls's tests are
// in internal/atlstest.

// hasCMW reports whether a certificate carries the id-pe-cmw extension.
func hasCMW(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(attest.OIDCMW) {
			return true
		}
	}
	return false
}
