package idblock_test

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log"
	"os"

	"github.com/confidential-go/atls/atls/snp/idblock"
)

// The guest owner signs an ID block for a launch measurement, gives the
// two base64 strings to QEMU (-object sev-snp-guest,...,id-block=...,
// id-auth=...,author-key-enabled=on) and pins the ID key digest in the
// verifier's policy (snp.Policy.TrustedIDKeyDigests).
func ExampleSign() {
	idPEM, err := os.ReadFile("testdata/virtee/test_id_key.pem")
	if err != nil {
		log.Fatal(err)
	}
	authorPEM, err := os.ReadFile("testdata/virtee/test_auth_key.pem")
	if err != nil {
		log.Fatal(err)
	}
	idKey, err := idblock.ParsePrivateKey(idPEM)
	if err != nil {
		log.Fatal(err)
	}
	authorKey, err := idblock.ParsePrivateKey(authorPEM)
	if err != nil {
		log.Fatal(err)
	}

	var b idblock.Block // policy 0x30000, family and image ID zero, SVN 0
	hex.Decode(b.Measurement[:], []byte("a14d638341e5674628fe1e02fbedebe5e5ab4faf1dd72d8966068e615bb99efd13d214b35c231715b38e263dc6059745"))
	block, auth, err := idblock.Sign(&b, idKey, authorKey)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("id-block:", base64.StdEncoding.EncodeToString(block))
	fmt.Println("id-auth bytes:", len(auth)) // randomized ECDSA signatures

	// What the firmware checks, and what the reports will carry.
	l, err := idblock.ParseAndVerify(block, auth)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ID_KEY_DIGEST:     %x\n", l.IDKeyDigest)
	fmt.Printf("AUTHOR_KEY_DIGEST: %x\n", l.AuthorKeyDigest)
	// Output:
	// id-block: oU1jg0HlZ0Yo/h4C++3r5eWrT68d1y2JZgaOYVu5nv0T0hSzXCMXFbOOJj3GBZdFAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAwAAAAAA
	// id-auth bytes: 4096
	// ID_KEY_DIGEST:     59fb2c686dfa4fef49f38339aa775c90051c28d57383ddc3baf3b5eb4b1496df3b0dbbdcbae5fe27677a644820773fe2
	// AUTHOR_KEY_DIGEST: eed81169fb0cb5e0ec34794f128fd4e0c4a46f67c65a1adfa81fcb24bcc088c272369b7ffc3eb2b6af6a4284a1b36c5f
}
