// Package interop holds the specification of the atls evidence format
// (SPEC.md) and what keeps other implementations honest about it: test
// vectors in ../testdata/vectors, made by internal/genvectors; an
// independent verifier written from the specification in Python
// (pyverify/atls_verify.py); and tests that run the format against TLS
// peers that are not this library (OpenSSL, curl, Node.js).
package interop

//go:generate go run ./internal/genvectors -out ../testdata/vectors
