package snp_test

import (
	"context"
	"fmt"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// instantAttester answers at once, as the simulator nearly does.
type instantAttester struct{}

func (instantAttester) Attest(context.Context, [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	return &attest.Evidence{}, nil
}

// The gcp profile in front of an attester, on a clock that only moves when
// the model waits: ten reports pass in a burst at 8 ms each, then the
// throttle lets one through per second.
func ExampleNewSPModel() {
	profile, err := snp.ParseSPProfile("gcp")
	if err != nil {
		panic(err)
	}
	now := time.Unix(0, 0)
	model, err := snp.NewSPModel(instantAttester{}, snp.SPModelOptions{
		Profile: profile,
		Now:     func() time.Time { return now },
		Sleep: func(_ context.Context, d time.Duration) error {
			now = now.Add(d)
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	start := now
	for range 12 {
		if _, err := model.Attest(context.Background(), [attest.ReportDataSize]byte{}); err != nil {
			panic(err)
		}
	}
	st := model.Stats()
	fmt.Println(profile)
	fmt.Println("reports:", st.Reports, "throttled:", st.Throttled)
	fmt.Println("elapsed:", now.Sub(start).Round(time.Millisecond))
	// Output:
	// gcp (8ms per report, serialized, burst 10, 1/s, fails after 1m0s throttled)
	// reports: 12 throttled: 2
	// elapsed: 2.008s
}
