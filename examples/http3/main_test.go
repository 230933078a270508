package main

import (
	"bytes"
	"context"
	"crypto/sha512"
	"strings"
	"testing"

	"github.com/confidential-go/atls/atls/attest"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	serverImage := sha512.Sum384([]byte("example http3 server image"))
	clientImage := sha512.Sum384([]byte("example http3 client image"))
	for _, want := range []string{
		"HTTP/3.0 200 OK",
		"body: hello over HTTP/3.0, client VM " + attest.HexBytes(clientImage[:]).String()[:16],
		"platform     amd-sev-snp (SIMULATED: not real hardware)",
		"role / mode  server / batch",
		"measurement  " + attest.HexBytes(serverImage[:]).String(),
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}
