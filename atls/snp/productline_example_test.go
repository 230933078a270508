package snp_test

import (
	"fmt"

	"github.com/confidential-go/atls/atls/snp"
)

// The same raw TCB_VERSION means different levels on different product
// lines: decode it with the product line of the report.
func ExampleProductLine_DecodeTCB() {
	const reported = 0x4700000002000100 // REPORTED_TCB of a real Turin report
	fmt.Println(snp.ProductTurin.DecodeTCB(reported))
	fmt.Println(snp.ProductMilan.DecodeTCB(0xdb18000000000004))
	v, err := snp.ProductTurin.EncodeTCB(snp.BaselineTCB()["Turin"])
	fmt.Printf("%#016x %v\n", v, err)
	_, err = snp.ProductGenoa.EncodeTCB(snp.TCB{FMC: 1})
	fmt.Println(err)
	// Output:
	// {bootloader 1, tee 0, snp 2, microcode 71}
	// {bootloader 4, tee 0, snp 24, microcode 219}
	// 0x4700000002000100 <nil>
	// TCB {fmc 1, bootloader 0, tee 0, snp 0, microcode 0} has an FMC level, which Genoa TCBs do not have
}
