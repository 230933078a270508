package main

import (
	"bytes"
	"context"
	"crypto/sha512"
	"fmt"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	s := out.String()
	frontend := fmt.Sprintf("%x", sha512.Sum384([]byte("frontend v5")))
	inventory := fmt.Sprintf("%x", sha512.Sum384([]byte("inventory service v2")))
	for _, want := range []string{
		"[inventory] Check from frontend (measurement " + frontend + ")",
		"[frontend] the server is inventory (measurement " + inventory + ", batch mode, simulated true)",
		"[inventory] Watch from frontend: streaming",
		"[frontend] Watch: 2 updates",
		"[inventory] Check from reporting",
		"[reporting] Watch refused: PermissionDenied: atls: not authorized: reporting may not call Watch",
		"[frontend] reconnected and attested again",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "Watch from reporting") {
		t.Errorf("a refused RPC reached its handler:\n%s", s)
	}
	if got := strings.Count(s, "Check from frontend"); got != 2 {
		t.Errorf("want 2 Checks from frontend (before and after the restart), got %d:\n%s", got, s)
	}
}
