// Command genvectors writes the test vectors of the atls evidence format
// (see interop/SPEC.md and package interop/internal/vectors).
//
// Usage:
//
//	go run ./internal/genvectors -out ../testdata/vectors [-new-chain]
//
// It issues from the simulated chain already in the output directory
// (sim-chain.pem), so that regenerating changes keys and signatures but
// not the roots; -new-chain makes a new chain instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/confidential-go/atls/interop/internal/vectors"
)

func main() {
	out := flag.String("out", "", "output directory (required)")
	newChain := flag.Bool("new-chain", false, "make a new simulated AMD chain instead of reusing the one in the output directory")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*out, *newChain); err != nil {
		fmt.Fprintln(os.Stderr, "genvectors:", err)
		os.Exit(1)
	}
}

func run(out string, newChain bool) error {
	opts := vectors.Options{Out: out, Log: os.Stderr}
	if !newChain {
		data, err := os.ReadFile(filepath.Join(out, vectors.ChainFile))
		switch {
		case err == nil:
			opts.ChainPEM = data
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	return vectors.Generate(context.Background(), opts)
}
