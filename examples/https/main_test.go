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
	image := fmt.Sprintf("%x", sha512.Sum384([]byte("example https service v1")))
	for _, want := range []string{
		"200 OK: hello from inside the confidential VM",
		"freshness    batch",
		"freshness    static",
		"measurement  " + image,
		"(SIMULATED)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "Logging before logger.Init") {
		t.Errorf("go-sev-guest logged:\n%s", s)
	}
}
