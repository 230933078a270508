package snp

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
)

func TestDescribeEvidenceSimulated(t *testing.T) {
	chain := testSimChain(t, "Milan")
	opts := SimOptions{
		ReportVersion:    5,
		Measurement:      [48]byte{0: 0xaa, 47: 0xbb},
		HostData:         [32]byte{0: 0x01},
		GuestSVN:         7,
		GuestPolicy:      0x30000 | 1<<19 | 0x0102, // SMT, reserved bit, debug, ABI 1.2
		VMPL:             2,
		IDKeyDigest:      [48]byte{0: 0x1d},
		AuthorKeyDigest:  [48]byte{0: 0xa7},
		AuthorKeyEn:      true,
		FamilyID:         [16]byte{0: 0xf1},
		ImageID:          [16]byte{0: 0x11},
		PlatformInfo:     0x5,
		LaunchMitVector:  0x3,
		CurrentMitVector: 0x7,
		CommittedVersion: [3]uint8{1, 55, 20},
	}
	a, err := NewSimAttester(chain, opts)
	require.NoError(t, err)
	o := a.Options()
	ev, err := a.Attest(t.Context(), vtReportData)
	require.NoError(t, err)
	require.NoError(t, ev.SetBinding(attest.RoleClient, attest.ModeStatic))
	ev.Records[CRLLabel] = attest.Record{MediaType: CRLMediaType, Value: vtCRL(t, chain, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))}

	d, err := DescribeEvidence(ev)
	require.NoError(t, err)
	require.Empty(t, d.Problems)
	require.Equal(t, CollectionType, d.CollectionType)
	digest, err := ev.Digest()
	require.NoError(t, err)
	require.Equal(t, digest[:], []byte(d.Digest))
	require.Equal(t, &attest.BindingParams{Version: 1, Role: attest.RoleClient, Mode: attest.ModeStatic}, d.Binding)

	r := d.Report
	require.Equal(t, uint32(5), r.Version)
	require.Equal(t, uint32(7), r.GuestSVN)
	require.Equal(t, Hex64(opts.GuestPolicy), r.GuestPolicy.Raw)
	require.Equal(t, "1.2", r.GuestPolicy.MinimumABI)
	require.True(t, r.GuestPolicy.SMT)
	require.True(t, r.GuestPolicy.Debug)
	require.False(t, r.GuestPolicy.MigrateMA)
	require.Equal(t, opts.FamilyID[:], []byte(r.FamilyID))
	require.Equal(t, opts.ImageID[:], []byte(r.ImageID))
	require.Equal(t, uint32(2), r.VMPL)
	require.Equal(t, "ECDSA P-384 with SHA-384", r.SignatureAlgName)
	require.True(t, r.PlatformInfo.SMTEnabled)
	require.True(t, r.PlatformInfo.ECCEnabled)
	require.False(t, r.PlatformInfo.TSMEEnabled)
	require.Equal(t, SignerInfoDescription{SigningKey: "VCEK", AuthorKeyEn: true}, r.SignerInfo)
	require.Equal(t, vtReportData[:], []byte(r.ReportData))
	require.Equal(t, opts.Measurement[:], []byte(r.Measurement))
	require.Equal(t, opts.HostData[:], []byte(r.HostData))
	require.Equal(t, opts.IDKeyDigest[:], []byte(r.IDKeyDigest))
	require.Equal(t, opts.AuthorKeyDigest[:], []byte(r.AuthorKeyDigest))
	require.Equal(t, o.ReportID[:], []byte(r.ReportID))
	require.Equal(t, o.ChipID[:], []byte(r.ChipID))
	require.False(t, r.ChipIDMasked)
	require.Equal(t, "Milan", r.ProductLine)
	require.Equal(t, &CPUIDDescription{Family: 0x19, Model: 0x01, Stepping: 1}, r.CPUID)
	// The Milan default TCB: BL 4, TEE 0, SNP 24, microcode 219.
	require.Equal(t, TCBDescription{Raw: 0xdb18000000000004, Bootloader: 4, SNP: 24, Microcode: 219}, r.ReportedTCB)
	require.Equal(t, r.ReportedTCB, r.CurrentTCB)
	require.Equal(t, "1.55.29", r.CurrentVersion)
	require.Equal(t, "1.55.20", r.CommittedVersion)
	require.Equal(t, Hex64(3), *r.LaunchMitVector)
	require.Equal(t, Hex64(7), *r.CurrentMitVector)
	require.Len(t, r.SignatureR, 48)
	require.Len(t, r.SignatureS, 48)
	report, err := ev.Record(ReportLabel, ReportMediaType)
	require.NoError(t, err)
	require.Equal(t, abi.AmdBigInt(report[0x2A0:0x2E8]).FillBytes(make([]byte, 48)), []byte(r.SignatureR))

	c := d.SignerCert
	require.Contains(t, c.Subject, "CN=SEV-VCEK")
	require.Contains(t, c.Issuer, "CN=SEV-Milan")
	require.Equal(t, "Milan-B1", c.ProductName)
	require.Equal(t, r.ReportedTCB, *c.TCB)
	require.Equal(t, o.ChipID[:], []byte(c.HWID))
	require.Equal(t, "ECDSA", c.PublicKeyAlgorithm)
	require.NotNil(t, d.CRL)
	require.Contains(t, d.CRL.Issuer, "ARK-Milan")

	j, err := json.Marshal(d)
	require.NoError(t, err)
	for _, want := range []string{`"raw":"0xdb18000000000004"`, `"role":"client"`, `"mode":"static"`, `"debug_allowed":true`, `"product_line":"Milan"`} {
		require.Contains(t, string(j), want)
	}
	require.Equal(t, "0xdb18000000000004 (bootloader 4, tee 0, snp 24, microcode 219)", r.ReportedTCB.String())
}

func TestDescribeEvidenceVariants(t *testing.T) {
	genoa := testSimChain(t, "Genoa")

	// A version 2 report names no product; the certificate does. A
	// masked chip ID is shown as such.
	a, err := NewSimAttester(genoa, SimOptions{ReportVersion: 2, MaskChipID: true})
	require.NoError(t, err)
	ev, err := a.Attest(t.Context(), vtReportData)
	require.NoError(t, err)
	d, err := DescribeEvidence(ev)
	require.NoError(t, err)
	require.Nil(t, d.Report.CPUID)
	require.Nil(t, d.Report.LaunchMitVector)
	require.Equal(t, "Genoa", d.Report.ProductLine)
	require.True(t, d.Report.ChipIDMasked)
	require.True(t, d.Report.SignerInfo.MaskChipKey)
	require.Nil(t, d.Binding)
	require.Len(t, d.Problems, 1)
	require.Contains(t, d.Problems[0], "no binding record")

	// A broken certificate and binding record are problems, not errors.
	ev.Records[CertLabel] = attest.Record{MediaType: CertMediaType, Value: []byte("not a certificate")}
	ev.Records[attest.BindingRecordLabel] = attest.Record{MediaType: attest.BindingMediaType, Value: []byte(`{"version":2}`)}
	d, err = DescribeEvidence(ev)
	require.NoError(t, err)
	require.Len(t, d.Problems, 2)
	require.Contains(t, strings.Join(d.Problems, "\n"), "VCEK certificate")
	require.Contains(t, strings.Join(d.Problems, "\n"), "binding record")
	require.NotEmpty(t, d.SignerCert.SHA256)

	// What cannot be decoded at all is an error.
	_, err = DescribeEvidence(nil)
	require.ErrorIs(t, err, attest.ErrNotAttested)
	_, err = DescribeEvidence(&attest.Evidence{Type: "tag:example.com,2026:other", Records: ev.Records})
	require.ErrorIs(t, err, attest.ErrMalformedEvidence)
	bad := make([]byte, ReportSize)
	bad[0x08] = 0x01 // guest policy without the must-be-one bit 17
	_, err = DescribeEvidence(NewEvidence(bad, a.VCEK(), nil))
	require.ErrorIs(t, err, attest.ErrMalformedEvidence)
}

func TestDescribeEvidenceRealReports(t *testing.T) {
	for _, v := range realVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			d, err := DescribeEvidence(NewEvidence(v.report, v.cert, nil))
			require.NoError(t, err)
			r, err := abi.ReportToProto(v.report)
			require.NoError(t, err)
			require.Equal(t, r.GetMeasurement(), []byte(d.Report.Measurement))
			require.Equal(t, r.GetVersion(), d.Report.Version)
			require.Equal(t, Hex64(r.GetReportedTcb()), d.Report.ReportedTCB.Raw)
			require.Contains(t, []string{"Milan", "Genoa", "Turin"}, d.Report.ProductLine)
			require.NotNil(t, d.SignerCert.TCB, "problems: %v", d.Problems)
			require.Equal(t, d.Report.ReportedTCB, *d.SignerCert.TCB)
			// The Turin layout has an FMC level; the others do not.
			require.Equal(t, d.Report.ProductLine == "Turin", d.Report.ReportedTCB.FMC != nil)
			require.Equal(t, d.Report.SignerInfo.SigningKey == "VCEK", d.SignerCert.CSPID == "")
		})
	}
}

// A Turin TCB is described in the Turin layout.
func TestDescribeTurinTCB(t *testing.T) {
	d := describeTCB(ProductTurin, 0x4700000002000100)
	require.NotNil(t, d.FMC)
	require.Equal(t, uint8(0), *d.FMC)
	require.Equal(t, [4]uint8{1, 0, 2, 71}, [4]uint8{d.Bootloader, d.TEE, d.SNP, d.Microcode})
	require.Equal(t, "0x4700000002000100 (fmc 0, bootloader 1, tee 0, snp 2, microcode 71)", d.String())
	d = describeTCB(ProductTurin, 0x4700010002000103)
	require.Equal(t, uint8(3), *d.FMC)
	require.Equal(t, [4]uint8{0, 1, 0, 0}, d.Reserved)
	m := describeTCB(ProductMilan, 0xdb18000000000004)
	require.Nil(t, m.FMC)
	require.Equal(t, [4]uint8{4, 0, 24, 219}, [4]uint8{m.Bootloader, m.TEE, m.SNP, m.Microcode})
}

func TestDescribeJSONRoundTrip(t *testing.T) {
	a, err := NewSimAttester(testSimChain(t, "Milan"), SimOptions{ReportVersion: 5})
	require.NoError(t, err)
	ev, err := a.Attest(t.Context(), vtReportData)
	require.NoError(t, err)
	d, err := DescribeEvidence(ev)
	require.NoError(t, err)
	j, err := json.Marshal(d)
	require.NoError(t, err)
	var back Description
	require.NoError(t, json.Unmarshal(j, &back))
	require.Equal(t, d.Report.ReportedTCB, back.Report.ReportedTCB)
	require.Equal(t, *d.Report.CurrentMitVector, *back.Report.CurrentMitVector)
	require.Equal(t, d.Report.GuestPolicy, back.Report.GuestPolicy)

	var h Hex64
	for _, bad := range []string{`"12"`, `"0x"`, `"0x12345678901234567"`, `"0xzz"`} {
		require.Error(t, json.Unmarshal([]byte(bad), &h), bad)
	}
}

// Batched evidence: the platform verifier and the describer accept the
// batch-proof record; the verifier, given the REPORT_DATA the proof leads
// to, accepts each leaf's evidence, and no other leaf's.
func TestBatchedEvidence(t *testing.T) {
	chain := testSimChain(t, "Milan")
	a := vtAttester(t, chain, SimOptions{})
	v := vtVerifier(t, chain.Roots(), vtPolicy())
	b, err := attest.NewBatcher(a, attest.BatcherOptions{MaxSize: 3, MaxWait: time.Hour})
	require.NoError(t, err)

	bindings := make([]attest.Binding, 3)
	evs := make([]*attest.Evidence, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range bindings {
		bindings[i] = attest.Binding{Role: attest.RoleServer, Mode: attest.ModeBatch, SPKIHash: [32]byte{byte(i)},
			Nonce: [32]byte{1, byte(i)}, NotBefore: 1700000000, NotAfter: 1700000600}
		leaf, err := bindings[i].ReportData()
		require.NoError(t, err)
		wg.Go(func() { evs[i], errs[i] = b.Attest(t.Context(), leaf) })
	}
	wg.Wait()
	require.Equal(t, uint64(1), b.Reports())
	seen := map[uint32]bool{}
	for i, ev := range evs {
		require.NoError(t, errs[i])
		require.NoError(t, ev.SetBinding(attest.RoleServer, attest.ModeBatch))
		p, err := ParseEvidence(ev)
		require.NoError(t, err)
		require.Len(t, p.Report, ReportSize)

		want, err := attest.ExpectedReportData(ev, bindings[i])
		require.NoError(t, err)
		claims, err := v.Verify(t.Context(), ev, want)
		require.NoError(t, err)
		require.Equal(t, want[:], []byte(claims.ReportData))
		other, err := attest.ExpectedReportData(ev, bindings[(i+1)%3])
		require.NoError(t, err)
		_, err = v.Verify(t.Context(), ev, other)
		require.ErrorIs(t, err, attest.ErrBinding)
		require.Equal(t, "snp.report_data", attest.FailedCheck(err))

		d, err := DescribeEvidence(ev)
		require.NoError(t, err)
		require.Empty(t, d.Problems)
		require.Equal(t, attest.ModeBatch, d.Binding.Mode)
		// Arrival order decides the index; the last leaf of three has one
		// sibling, the others two.
		require.NotNil(t, d.BatchProof)
		require.Equal(t, uint32(3), d.BatchProof.Size)
		require.Equal(t, map[uint32]int{0: 2, 1: 2, 2: 1}[d.BatchProof.Index], d.BatchProof.PathLength)
		require.False(t, seen[d.BatchProof.Index])
		seen[d.BatchProof.Index] = true
		j, err := json.Marshal(d)
		require.NoError(t, err)
		require.Contains(t, string(j), `"batch_proof":{"index":`)
		require.Contains(t, string(j), `"mode":"batch"`)
	}

	// A malformed proof is a problem for the describer, not an error.
	ev := evs[0]
	ev.Records[attest.BatchRecordLabel] = attest.Record{MediaType: attest.BatchMediaType, Value: []byte{2, 0, 0, 0, 0, 0, 0, 0, 1}}
	d, err := DescribeEvidence(ev)
	require.NoError(t, err)
	require.Nil(t, d.BatchProof)
	require.Contains(t, strings.Join(d.Problems, "\n"), "batch.proof")
	ev.Records[attest.BatchRecordLabel] = attest.Record{MediaType: "application/octet-stream", Value: []byte{1}}
	d, err = DescribeEvidence(ev)
	require.NoError(t, err)
	require.Nil(t, d.BatchProof)
	require.Contains(t, strings.Join(d.Problems, "\n"), "media type")
	// A proof in nonce mode, or none in batch mode, is a problem too.
	ev.Records[attest.BatchRecordLabel] = evs[1].Records[attest.BatchRecordLabel]
	require.NoError(t, ev.SetBinding(attest.RoleServer, attest.ModeNonce))
	d, err = DescribeEvidence(ev)
	require.NoError(t, err)
	require.NotNil(t, d.BatchProof)
	require.Equal(t, []string{"nonce-mode evidence with a batch-proof record (verifiers refuse it: batch.proof)"}, d.Problems)
	delete(ev.Records, attest.BatchRecordLabel)
	require.NoError(t, ev.SetBinding(attest.RoleServer, attest.ModeBatch))
	d, err = DescribeEvidence(ev)
	require.NoError(t, err)
	require.Nil(t, d.BatchProof)
	require.Equal(t, []string{"batch-mode evidence without a batch-proof record (verifiers refuse it: batch.proof)"}, d.Problems)
	// Other unknown records are still refused.
	ev.Records["batch-extra"] = attest.Record{MediaType: attest.BatchMediaType, Value: []byte{1}}
	_, err = ParseEvidence(ev)
	require.ErrorIs(t, err, attest.ErrMalformedEvidence)
	require.Equal(t, "snp.evidence", attest.FailedCheck(err))
}
