package attest_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/confidential-go/atls/atls/attest"
)

// echoAttester stands in for a TEE: its "report" is the REPORT_DATA it was
// asked to bind.
type echoAttester struct{}

func (echoAttester) Attest(_ context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	return &attest.Evidence{Type: "tag:example.com,2026:echo", Records: map[string]attest.Record{
		"report": {MediaType: "application/vnd.example.report", Value: bytes.Clone(rd[:])},
	}}, nil
}

func ExampleNewBatcher() {
	// Up to 3 handshakes share a report. For the example, gather until the
	// batch is full; a server leaves MaxWait 0 (a lone handshake never
	// waits) or bounds it to a few milliseconds.
	b, err := attest.NewBatcher(echoAttester{}, attest.BatcherOptions{MaxSize: 3, MaxWait: time.Hour})
	if err != nil {
		panic(err)
	}

	// Three handshakes, each with its own key and its verifier's nonce.
	bindings := make([]attest.Binding, 3)
	evs := make([]*attest.Evidence, 3)
	var wg sync.WaitGroup
	for i := range bindings {
		bindings[i] = attest.Binding{Role: attest.RoleServer, Mode: attest.ModeBatch,
			SPKIHash: [32]byte{byte(i)}, Nonce: [32]byte{0xa0 + byte(i)}, NotBefore: 1700000000, NotAfter: 1700000600}
		leaf, err := bindings[i].ReportData()
		if err != nil {
			panic(err)
		}
		wg.Go(func() {
			ev, err := b.Attest(context.Background(), leaf)
			if err != nil {
				panic(err)
			}
			evs[i] = ev
		})
	}
	wg.Wait()
	fmt.Println("reports:", b.Reports())

	// A verifier recomputes what the report must carry from its own binding
	// and the evidence's proof.
	for i, ev := range evs {
		p, _ := attest.ParseBatchProof(ev.Records[attest.BatchRecordLabel].Value)
		want, err := attest.ExpectedReportData(ev, bindings[i])
		if err != nil {
			panic(err)
		}
		fmt.Printf("handshake %d: leaf of a batch of %d, bound: %v\n", i, p.Size, bytes.Equal(want[:], ev.Records["report"].Value))
	}
	// Another handshake's nonce does not verify.
	other, _ := attest.ExpectedReportData(evs[0], bindings[1])
	fmt.Println("with another binding:", bytes.Equal(other[:], evs[0].Records["report"].Value))
	// Output:
	// reports: 1
	// handshake 0: leaf of a batch of 3, bound: true
	// handshake 1: leaf of a batch of 3, bound: true
	// handshake 2: leaf of a batch of 3, bound: true
	// with another binding: false
}
