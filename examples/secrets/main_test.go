package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	dir := t.TempDir()
	if err := run(context.Background(), &out, dir); err != nil {
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
	expect["disk unlocker v2, prod, SVN 2"] = append(expect["disk unlocker v2, prod, SVN 2"], "disk-key       sealed to disk-key.sealed")
	// After the broker is down: the same image on the same host unseals
	// the key it was released, and nothing else does.
	restart := map[string]string{
		"disk unlocker v2, prod, SVN 2, restarted": "unsealed disk-key: 32 bytes",
		"disk unlocker v2, prod, SVN 1":            "cannot unseal: check seal.guest_svn",
		"unknown image":                            "cannot unseal: check seal.measurement",
	}
	_, after, ok := strings.Cut(s, "The key broker is down.")
	if !ok {
		t.Fatalf("no restart in the output:\n%s", s)
	}
	for client, want := range restart {
		if !regexp.MustCompile(regexp.QuoteMeta(client) + ` +` + regexp.QuoteMeta(want)).MatchString(after) {
			t.Errorf("after the restart, %s: output lacks %q:\n%s", client, want, after)
		}
	}
	// The unsealed key is the one the broker released.
	released := regexp.MustCompile(`disk-key       released: 32 bytes \(([0-9a-f]{8})…\)`).FindStringSubmatch(s)
	unsealed := regexp.MustCompile(`unsealed disk-key: 32 bytes \(([0-9a-f]{8})…\)`).FindStringSubmatch(after)
	if released == nil || unsealed == nil || released[1] != unsealed[1] {
		t.Errorf("the unsealed disk key %v is not the released one %v", unsealed, released)
	}
	if _, err := os.Stat(filepath.Join(dir, "disk-key.sealed")); err != nil {
		t.Errorf("no sealed key on disk: %v", err)
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
