package atls

import (
	"bytes"
	"context"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/certgen"
)

// FuzzCertificateToClaims feeds certificates through the whole verifier
// path a handshake uses: X.509 parsing, extension and collection
// decoding, binding, the SNP verifier and the policy. Properties: no
// panic; every rejection names a check; an acceptance yields the pinned
// measurement.
func FuzzCertificateToClaims(f *testing.F) {
	chain, err := snp.NewSimChain("Milan")
	if err != nil {
		f.Fatal(err)
	}
	m := sha512.Sum384([]byte("fuzz image"))
	att, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: m})
	if err != nil {
		f.Fatal(err)
	}
	policy := snp.NewPolicy()
	policy.Measurements = []attest.HexBytes{m[:]}
	v, err := snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: policy})
	if err != nil {
		f.Fatal(err)
	}
	nonce := [attest.NonceSize]byte{7, 7, 7}
	ctx := context.Background()
	for _, req := range []certgen.Request{
		{Attester: att, Role: attest.RoleServer, Mode: attest.ModeNonce, Nonce: nonce},
		{Attester: att, Role: attest.RoleServer, Mode: attest.ModeStatic},
		{Attester: att, Role: attest.RoleClient, Mode: attest.ModeNonce, Nonce: nonce, KeyType: certgen.Ed25519},
	} {
		c, err := certgen.Issue(ctx, req)
		if err != nil {
			f.Fatal(err)
		}
		der := c.Certificate[0]
		f.Add(der)
		f.Add(der[:len(der)/2])
		// The same certificate with one byte of the report flipped.
		i := bytes.Index(der, []byte("snp-report"))
		if i > 0 && i+200 < len(der) {
			flipped := bytes.Clone(der)
			flipped[i+200] ^= 0x04
			f.Add(flipped)
		}
	}

	p := &peerCheck{
		verifier:     v,
		role:         attest.RoleServer,
		acceptStatic: true,
		maxAge:       time.Hour,
		now:          time.Now,
		cache:        newCache(-1),
		claims:       newCache(16),
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		cs := tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true, PeerCertificates: []*x509.Certificate{cert}}
		claims, err := p.verify(ctx, cs, &nonce)
		if err != nil {
			var ce *attest.CheckError
			if !errors.As(err, &ce) || ce.Check == "" {
				t.Fatalf("rejection without a check name: %v", err)
			}
			return
		}
		if !bytes.Equal(claims.SNP.Measurement, m[:]) || claims.Role != attest.RoleServer {
			t.Fatalf("accepted unexpected claims: %+v", claims)
		}
	})
}
