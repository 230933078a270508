package interop

// The session-bound vectors (SPEC.md section 9) are generated after the
// certificate vectors, from the same simulated chain.
//go:generate go run ./internal/genbound -vectors ../testdata/vectors -out ../testdata/bound-vectors
