package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
)

// value returns the value of the sample named series (name and labels,
// exactly as exposed), or 0 when absent.
func value(t *testing.T, lines []string, series string) float64 {
	t.Helper()
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			return f
		}
	}
	return 0
}

// The counters on /metrics move with the handshakes: one accepted
// verification and one batch report per request, one refusal naming its
// check, and a latency observation for each.
func TestMetricsMove(t *testing.T) {
	ctx := context.Background()
	ex, err := newExample()
	if err != nil {
		t.Fatal(err)
	}
	defer ex.close()
	const (
		accepted = `atls_verifications_total{check="",peer_role="server",result="accepted"}`
		refused  = `atls_verifications_total{check="policy.measurement",peer_role="server",result="refused"}`
		reports  = `atls_attestations_total{mode="batch",result="ok",role="server"}`
		verifyN  = `atls_verification_seconds_count{peer_role="server"}`
		misses   = `atls_cache_lookups_total{level="evidence",result="miss"}`
	)
	before, err := ex.scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := ex.get(ctx, ex.good); err != nil {
			t.Fatal(err)
		}
	}
	if err := ex.get(ctx, ex.wrong); err == nil {
		t.Fatal("the client pinning another image accepted the server")
	}
	after, err := ex.scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for series, want := range map[string]float64{accepted: 2, refused: 1, reports: 3, verifyN: 3, misses: 3} {
		if got := value(t, after, series) - value(t, before, series); got != want {
			t.Errorf("%s moved by %v, want %v\nbefore:\n%s\nafter:\n%s", series, got, want, strings.Join(before, "\n"), strings.Join(after, "\n"))
		}
	}
}

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"1 refused (check policy.measurement)", "atls_attestations_total{", "atls_verification_seconds_sum{"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
