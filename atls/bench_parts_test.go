package atls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"testing"

	"github.com/confidential-go/atls/internal/atlstest"
)

// BenchmarkParts measures alone the costs a nonce handshake adds to a
// plain one, so that BenchmarkHandshake's nonce case can be compared with
// their sum (plain + report signing + report verification):
//
//   - sim-report: the simulator signs one report (ECDSA P-384), which
//     real hardware replaces by a firmware call;
//   - p384-verify: one ECDSA P-384 signature check over a SHA-384 digest,
//     the unavoidable part of appraising a new report.
func BenchmarkParts(b *testing.B) {
	f := atlstest.Get(b)
	b.Run("sim-report", func(b *testing.B) {
		var rd [64]byte
		for b.Loop() {
			if _, err := f.ServerAttester.Report(rd); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("p384-verify", func(b *testing.B) {
		key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		digest := sha512.Sum384([]byte("report"))
		sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
				b.Fatal("signature does not verify")
			}
		}
	})
}
