package main

import (
	"fmt"

	"github.com/confidential-go/atls/atls/snp"
)

var rootsSpec = &cmdSpec{
	name:    "roots",
	summary: "Prints the AMD root certificates (ARK and ASK/ASVK per product line) a verifier trusts.",
}

var rootsExportSpec = &cmdSpec{
	name:     "roots export",
	synopsis: []string{"roots export [--simulate] [--out FILE]"},
	summary: `Writes the roots in use as PEM: AMD's published ARK and ASK/ASVK certificates
(Milan, Genoa, Turin) that atls trusts by default, or with --simulate the
simulator's ARK and ASK (certificates only, never the private keys; the chain
is created in --sim-dir on first use). Give the simulator's roots to verifiers
with --roots; claims verified under them say SIMULATED.`,
	examples: []string{
		"# AMD's roots, to review or pin elsewhere:",
		"atls roots export > amd-roots.pem",
		"",
		"atls roots export --simulate > sim-roots.pem",
	},
}

func runRoots(e *env, args []string) int {
	return runGroup(e, rootsSpec, []subcommand{{rootsExportSpec, runRootsExport}}, args)
}

func runRootsExport(e *env, args []string) int {
	fs := newFlags(e, rootsExportSpec)
	simulate := fs.Bool("simulate", false, "export the simulator's roots (SIMULATED) instead of AMD's")
	simDir := addSimDirFlag(fs)
	out := fs.String("out", "", "write to `file` instead of stdout")
	force := fs.Bool("force", false, "overwrite --out if it exists")
	if _, code := parseArgs(e, fs, rootsExportSpec, args, 0, 0); code >= 0 {
		return code
	}
	err := func() error {
		var data []byte
		if *simulate {
			store, err := openSimStore(*simDir, e.stderr)
			if err != nil {
				return err
			}
			chain, err := store.chain()
			if err != nil {
				return err
			}
			data = chain.Roots().PEM()
			fmt.Fprintf(e.stderr, "atls roots export: SIMULATED roots (%s) of the simulator in %s\n", chain.Product, store.dir)
		} else {
			data = snp.AMDRoots().PEM()
		}
		return writeOutput(e, *out, data, *force)
	}()
	return finish(e, rootsExportSpec, err)
}
