package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"orders verified the server: payments",
		`"payments handled /charge for orders"`,
		"payments verified the server: orders",
		`"orders handled /status for payments"`,
		"SIMULATED",
		"check=policy.measurement",
		"refused in the TLS handshake",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}
