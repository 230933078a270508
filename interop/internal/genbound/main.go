// Command genbound writes the session-bound test vectors (interop/SPEC.md
// section 9), issuing from the simulated chain of the certificate vectors.
//
// Usage:
//
//	go run ./internal/genbound -vectors ../testdata/vectors -out ../testdata/bound-vectors
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/confidential-go/atls/interop/internal/vectors"
)

func main() {
	vecs := flag.String("vectors", "", "the certificate vectors' directory (required)")
	out := flag.String("out", "", "output directory (required)")
	flag.Parse()
	if *vecs == "" || *out == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	chain, err := os.ReadFile(filepath.Join(*vecs, vectors.ChainFile))
	if err == nil {
		err = vectors.GenerateBound(context.Background(), *vecs, *out, chain, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "genbound:", err)
		os.Exit(1)
	}
}
