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
	// Each client's section, in order.
	sections := map[string][]string{}
	var cur string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " ") {
			cur = strings.TrimSuffix(line, ":")
			continue
		}
		if cur != "" {
			sections[cur] = append(sections[cur], line)
		}
	}
	expect := map[string][]string{
		"disk unlocker v2, prod, SVN 2":    {"disk-key       released: 32 bytes", "metrics-token  403 refused: check policy.measurement"},
		"disk unlocker v2, prod, SVN 1":    {"disk-key       403 refused: check policy.guest_svn", "metrics-token  403 refused: check policy.measurement"},
		"disk unlocker v2, staging, SVN 2": {"disk-key       403 refused: check policy.host_data", "metrics-token  403 refused: check policy.measurement"},
		"metrics agent v1":                 {"disk-key       403 refused: check policy.measurement", "metrics-token  released: 32 bytes"},
		"unknown image":                    {"[broker log] level=WARN", "check=policy.measurement", "disk-key       TLS handshake refused"},
		"client without attestation":       {"disk-key       TLS handshake refused", "metrics-token  TLS handshake refused"},
	}
	for client, wants := range expect {
		got := strings.Join(sections[client], "\n")
		for _, want := range wants {
			if !strings.Contains(got, want) {
				t.Errorf("%s: output lacks %q:\n%s", client, want, got)
			}
		}
	}
	if n := strings.Count(s, "released:"); n != 2 {
		t.Errorf("%d secrets released, want 2:\n%s", n, s)
	}
}
