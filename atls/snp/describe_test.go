package snp

import (
	"encoding/json"
	"strings"
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
			require.Contains(t, []string{"Milan", "Genoa"}, d.Report.ProductLine)
			require.NotNil(t, d.SignerCert.TCB, "problems: %v", d.Problems)
			require.Equal(t, d.Report.SignerInfo.SigningKey == "VCEK", d.SignerCert.CSPID == "")
		})
	}
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
