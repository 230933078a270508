package measure_test

import (
	"bytes"
	"fmt"
	"log"
	"os"

	"github.com/confidential-go/atls/atls/snp/measure"
)

// The launch measurement of a direct-boot QEMU guest: firmware, kernel,
// initrd and command line, one EPYC-v4 vCPU, SEV_FEATURES 0x21. (The
// firmware here is the last page of an AmdSevX64 build and the kernel
// and initrd are empty: the known answer of sev-snp-measure's tests.)
func ExampleSNP() {
	firmware, err := os.ReadFile("testdata/ovmf_AmdSev_suffix.bin")
	if err != nil {
		log.Fatal(err)
	}
	ovmf, err := measure.ParseOVMF(firmware)
	if err != nil {
		log.Fatal(err)
	}
	var kernel, initrd []byte // os.ReadFile("vmlinuz"), os.ReadFile("initrd.img")
	hashes, err := measure.HashKernel(bytes.NewReader(kernel), bytes.NewReader(initrd), "console=ttyS0 loglevel=7")
	if err != nil {
		log.Fatal(err)
	}
	digest, err := measure.SNP(measure.Inputs{
		OVMF:          ovmf,
		Kernel:        hashes,
		VCPUs:         1,
		VCPUType:      "EPYC-v4",
		GuestFeatures: 0x21,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%x\n", digest)
	// Output:
	// 803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977
}

// A kernel with firmware that cannot measure it is refused: its digest
// would not cover the kernel.
func ExampleSNP_refused() {
	firmware, err := os.ReadFile("testdata/ovmf_OvmfX64_suffix.bin")
	if err != nil {
		log.Fatal(err)
	}
	ovmf, err := measure.ParseOVMF(firmware)
	if err != nil {
		log.Fatal(err)
	}
	hashes, err := measure.HashKernel(bytes.NewReader(nil), nil, "")
	if err != nil {
		log.Fatal(err)
	}
	_, err = measure.SNP(measure.Inputs{OVMF: ovmf, Kernel: hashes, VCPUs: 1, VCPUType: "EPYC-v4"})
	fmt.Println(err != nil)
	// Output:
	// true
}
