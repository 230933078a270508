package interop

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/confidential-go/atls/atls/attest"
)

// TestBoundSpecExample recomputes SPEC.md section 9.6.
func TestBoundSpecExample(t *testing.T) {
	var b attest.BoundBinding
	b.Role = attest.RoleServer
	for i := range b.Exporter {
		b.Exporter[i] = byte(0xa0 + i)
	}
	b.LeafHash = sha256.Sum256([]byte("example leaf certificate"))
	want := map[string]string{
		"first":    "a44cb4c2ffc5203f8be12298d9b6d51540f0336a08010da61aea02c9ef63c658b585fe898d61eea3633d59db7f8bc8405f698735e7a9f7f227507cc57e5317d1",
		"reattest": "fda2caefc927ead1397c770fe5e8c8500b0ec09da79dbcdf8f0266c7f6243dfcb79d77b5c0ccae708333b49cbbd834a45279fce83db5155abca0bf70849d7ee0",
		"client":   "6466f3f42bb8b592808eb8f751bee8b2302db343d7d10447a0e702a5dff7b6bdae96100b8a795f488368a606502eeb6caa8207684a57298b9430424538305994",
	}
	check := func(name string) {
		t.Helper()
		rd, err := b.ReportData()
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(rd[:]); got != want[name] {
			t.Errorf("%s: REPORT_DATA %s, SPEC.md says %s", name, got, want[name])
		}
	}
	check("first")
	for i := range b.Nonce {
		b.Nonce[i] = byte(i)
	}
	check("reattest")
	b.Nonce, b.Role = [32]byte{}, attest.RoleClient
	check("client")

	raw, err := os.ReadFile("SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	spec := string(raw)
	for _, h := range []string{"2086969df25efa1f1da0cc8c416c6ef7df0a3dec9802f965aad614f21bfc0416", want["first"][:64], want["first"][64:]} {
		if !strings.Contains(spec, h) {
			t.Errorf("SPEC.md section 9.6 does not show %s", h)
		}
	}
}
