package measure_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp/measure"
)

// FuzzParseOVMF: any image either parses into metadata that measures (or
// is refused with a named check) or is refused with a named check; never
// a panic.
func FuzzParseOVMF(f *testing.F) {
	for _, name := range []string{"ovmf_AmdSev_suffix.bin", "ovmf_OvmfX64_suffix.bin"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(make([]byte, measure.PageSize))
	kernel, err := measure.HashKernel(bytes.NewReader(nil), nil, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := measure.ParseOVMF(data)
		if err != nil {
			if o != nil || attest.FailedCheck(err) == "" {
				t.Fatalf("ParseOVMF: %v with %v", err, o)
			}
			return
		}
		m := o.Metadata()
		pages := 0
		for _, s := range m.Sections {
			pages += int(s.Size / measure.PageSize)
		}
		if pages > 1<<12 {
			return // valid but slow to measure
		}
		for _, k := range []*measure.KernelHashes{nil, kernel} {
			d, err := measure.SNP(measure.Inputs{OVMF: o, Kernel: k, VCPUs: 2, VCPUSig: 0x800f12})
			if err != nil && (d != [48]byte{} || attest.FailedCheck(err) == "") {
				t.Fatalf("SNP: %v with %x", err, d)
			}
		}
	})
}
