package certgen_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"crypto/tls"
	"encoding/pem"
	"fmt"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/certgen"
)

// Issue a static-mode server certificate whose evidence binds its key and
// validity, then check the binding as a verifier would. The simulator
// stands in for SEV-SNP hardware (guest.NewAttester on a real guest).
func ExampleIssue() {
	ctx := context.Background()
	chain, err := snp.NewSimChain("Milan") // RSA-4096: takes a moment
	if err != nil {
		panic(err)
	}
	image := sha512.Sum384([]byte("my service image"))
	vm, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: image})
	if err != nil {
		panic(err)
	}

	cert, err := certgen.Issue(ctx, certgen.Request{
		Attester:   vm,
		Role:       attest.RoleServer,
		Mode:       attest.ModeStatic,
		CommonName: "service.internal",
	})
	if err != nil {
		panic(err)
	}
	leaf := cert.Leaf
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(attest.OIDCMW) {
			fmt.Println("id-pe-cmw extension, critical:", ext.Critical)
		}
	}

	// The evidence and the binding parameters it declares.
	evidence, err := attest.FromCertificate(leaf)
	if err != nil {
		panic(err)
	}
	params, err := evidence.Binding()
	if err != nil {
		panic(err)
	}
	fmt.Println("role:", params.Role, "mode:", params.Mode)

	// A verifier recomputes REPORT_DATA from the certificate (static mode:
	// no nonce) and checks the report against it.
	binding := attest.BindingForCertificate(leaf, params.Role, params.Mode, [attest.NonceSize]byte{})
	reportData, err := binding.ReportData()
	if err != nil {
		panic(err)
	}
	policy := snp.NewPolicy()
	policy.Measurements = []attest.HexBytes{image[:]}
	verifier, err := snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: policy})
	if err != nil {
		panic(err)
	}
	claims, err := verifier.Verify(ctx, evidence, reportData)
	if err != nil {
		panic(err)
	}
	fmt.Println("verified, simulated:", claims.Simulated)
	// Output:
	// id-pe-cmw extension, critical: false
	// role: server mode: static
	// verified, simulated: true
}

// Write an attested certificate and its key as PEM, for a TLS stack that
// reads files (nginx, OpenSSL, Node.js...).
func ExampleEncodePEM() {
	chain, err := snp.NewSimChain("Genoa") // RSA-4096: takes a moment
	if err != nil {
		panic(err)
	}
	vm, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: sha512.Sum384([]byte("image"))})
	if err != nil {
		panic(err)
	}
	cert, err := certgen.Issue(context.Background(), certgen.Request{
		Attester: vm, Role: attest.RoleServer, Mode: attest.ModeStatic, KeyType: certgen.ECDSAP384,
	})
	if err != nil {
		panic(err)
	}

	certPEM, keyPEM, err := certgen.EncodePEM(cert)
	if err != nil {
		panic(err)
	}
	// Write them with os.WriteFile, the key with mode 0600.
	for _, data := range [][]byte{certPEM, keyPEM} {
		block, _ := pem.Decode(data)
		fmt.Println(block.Type)
	}

	// They load back with tls.X509KeyPair.
	loaded, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		panic(err)
	}
	fmt.Println("same certificate:", bytes.Equal(loaded.Certificate[0], cert.Certificate[0]))
	// Output:
	// CERTIFICATE
	// PRIVATE KEY
	// same certificate: true
}
