package snp

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify/testdata"
	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
)

// vectorsDir holds reports from real AMD hardware, with their sources and
// licenses in its README.md.
const vectorsDir = "testdata"

// realVector is a report from real hardware with the certificate that
// signed it and a policy that accepts it.
type realVector struct {
	name         string
	report, cert []byte
	// adjust relaxes NewPolicy (with the report's measurement pinned) just
	// enough for this report.
	adjust func(p *Policy)
	// now is a time inside the certificate's validity.
	now time.Time
}

// loadCert returns the DER of the VCEK or VLEK in data, which is DER or
// PEM (possibly followed by the ASK and ARK).
func loadCert(t *testing.T, data []byte) []byte {
	t.Helper()
	if _, err := x509.ParseCertificate(data); err == nil {
		return data
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		require.NotNil(t, b, "no VCEK or VLEK in PEM data")
		c, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		if c.Subject.CommonName == "SEV-VCEK" || c.Subject.CommonName == "SEV-VLEK" {
			return b.Bytes
		}
	}
}

// midValidity is the middle of cert's validity, so that tests do not
// depend on the wall clock.
func midValidity(t *testing.T, der []byte) time.Time {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
}

// readVector reads a file of vectorsDir.
func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorsDir, name))
	require.NoError(t, err)
	return b
}

func realVectors(t *testing.T) []realVector {
	t.Helper()
	permitProvisional := func(p *Policy) { p.PermitProvisionalFirmware = true }
	vs := []realVector{{
		// go-sev-guest's own test report: Milan, v2, from a debug guest on
		// 2022 firmware, below today's baseline.
		name:   "go-sev-guest/attestation.bin",
		report: testdata.AttestationBytes[:abi.ReportSize],
		cert:   testdata.VcekBytes,
		adjust: func(p *Policy) {
			p.AllowDebug = true
			p.MinimumTCB = map[string]TCB{"Milan": {Bootloader: 2, TEE: 0, SNP: 5, Microcode: 68}}
			p.AllowTCBBelowBaseline = map[string]string{"Milan": "go-sev-guest's test report comes from 2022 firmware"}
		},
	}}
	{
		read := func(name string) []byte { return readVector(t, name) }
		vs = append(vs,
			realVector{name: "virtee/report_milan.bin", report: read("virtee/report_milan.bin"), cert: read("virtee/vcek_milan.der")},
			realVector{name: "trustee/test-report.bin", report: read("trustee/test-report.bin"), cert: read("trustee/test-vcek.der"), adjust: permitProvisional},
			realVector{name: "trustee/test-vlek-report.bin", report: read("trustee/test-vlek-report.bin"), cert: read("trustee/test-vlek.der"),
				adjust: func(p *Policy) {
					p.AllowVLEK = true
					p.AllowedVMPLs = []uint32{1}
					p.PermitProvisionalFirmware = true
				}},
			realVector{name: "trustee/report-genoa.bin", report: read("trustee/report-genoa.bin"), cert: read("trustee/vcek-genoa.pem")},
			realVector{name: "trustee/report-azure-milan.bin", report: read("trustee/report-azure-milan.bin"), cert: read("trustee/vcek.pem"), adjust: permitProvisional},
			realVector{name: "microsoft-tav/milan_attestation_report.bin", report: read("microsoft-tav/milan_attestation_report.bin"), cert: read("microsoft-tav/milan_vcek.pem")},
			realVector{name: "microsoft-tav/genoa_attestation_report.bin", report: read("microsoft-tav/genoa_attestation_report.bin"), cert: read("microsoft-tav/genoa_vcek.pem")},
			realVector{name: "oak/genoa_oc_report.bin", report: read("oak/genoa_oc_report.bin"), cert: read("oak/genoa_oc_vcek.der")},
			realVector{name: "oak/turin_oc_report.bin", report: read("oak/turin_oc_report.bin"), cert: read("oak/turin_oc_vcek.der")},
		)
	}
	for i := range vs {
		vs[i].cert = loadCert(t, vs[i].cert)
		vs[i].now = midValidity(t, vs[i].cert)
	}
	return vs
}

// policy returns the policy that accepts v: NewPolicy, v's measurement
// pinned, v's adjustments.
func (v realVector) policy(t *testing.T) *Policy {
	t.Helper()
	r, err := abi.ReportToProto(v.report)
	require.NoError(t, err)
	p := NewPolicy()
	p.Measurements = []attest.HexBytes{r.GetMeasurement()}
	if v.adjust != nil {
		v.adjust(p)
	}
	return p
}

func (v realVector) reportData() [64]byte {
	var rd [64]byte
	copy(rd[:], v.report[0x50:0x90])
	return rd
}

func (v realVector) verifier(t *testing.T) *Verifier {
	t.Helper()
	ver, err := NewVerifier(VerifierOptions{
		Roots:  AMDRoots(),
		Policy: v.policy(t),
		Now:    func() time.Time { return v.now },
	})
	require.NoError(t, err)
	return ver
}

// requireCheck asserts that err is a *attest.CheckError of the given kind
// and check name.
func requireCheck(t *testing.T, err error, kind error, check string) {
	t.Helper()
	require.Error(t, err)
	var ce *attest.CheckError
	require.True(t, errors.As(err, &ce), "error %v is not a *attest.CheckError", err)
	require.ErrorIs(t, err, kind, "check %s: %v", ce.Check, err)
	require.Equal(t, check, ce.Check, "error: %v", err)
}

func TestRealVectorsAccepted(t *testing.T) {
	for _, v := range realVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			ver := v.verifier(t)
			claims, err := ver.VerifyReport(context.Background(), v.report, v.cert, nil, v.reportData())
			require.NoError(t, err)
			require.Equal(t, Platform, claims.Platform)
			require.False(t, claims.Simulated)
			require.Equal(t, v.report[0x90:0xC0], []byte(claims.SNP.Measurement))
			require.Equal(t, v.report[0x50:0x90], []byte(claims.ReportData))
			require.Len(t, claims.EvidenceDigest, 32)
			require.Equal(t, claims.SNP.ReportedTCB, claims.SNP.CertTCB)
			require.Contains(t, []string{"Milan", "Genoa", "Turin"}, claims.SNP.Product)

			// The same through Evidence.
			ev := NewEvidence(v.report, v.cert, nil)
			claims2, err := ver.Verify(context.Background(), ev, v.reportData())
			require.NoError(t, err)
			d, err := ev.Digest()
			require.NoError(t, err)
			require.Equal(t, d[:], []byte(claims2.EvidenceDigest))
			require.Equal(t, claims.EvidenceDigest, claims2.EvidenceDigest)

			// Another REPORT_DATA is a binding failure.
			other := v.reportData()
			other[63] ^= 1
			_, err = ver.VerifyReport(context.Background(), v.report, v.cert, nil, other)
			requireCheck(t, err, attest.ErrBinding, "snp.report_data")
		})
	}
}

// The real vectors need each of their policy relaxations: without them,
// the default policy refuses them for the right reason.
func TestRealVectorsNeedTheirRelaxations(t *testing.T) {
	byName := map[string]realVector{}
	for _, v := range realVectors(t) {
		byName[v.name] = v
	}
	strict := func(t *testing.T, v realVector, undo func(p *Policy)) error {
		p := v.policy(t)
		undo(p)
		ver, err := NewVerifier(VerifierOptions{Roots: AMDRoots(), Policy: p, Now: func() time.Time { return v.now }})
		require.NoError(t, err)
		_, err = ver.VerifyReport(context.Background(), v.report, v.cert, nil, v.reportData())
		return err
	}
	v := byName["go-sev-guest/attestation.bin"]
	requireCheck(t, strict(t, v, func(p *Policy) { p.AllowDebug = false }), attest.ErrPolicy, "policy.debug")
	requireCheck(t, strict(t, v, func(p *Policy) { p.MinimumTCB, p.AllowTCBBelowBaseline = nil, nil }), attest.ErrPolicy, "policy.tcb.minimum")

	if v, ok := byName["trustee/test-vlek-report.bin"]; ok {
		requireCheck(t, strict(t, v, func(p *Policy) { p.AllowVLEK = false }), attest.ErrPolicy, "policy.vlek")
		requireCheck(t, strict(t, v, func(p *Policy) { p.AllowedVMPLs = nil }), attest.ErrPolicy, "policy.vmpl")
		requireCheck(t, strict(t, v, func(p *Policy) { p.PermitProvisionalFirmware = false }), attest.ErrPolicy, "policy.tcb.provisional")
		// The VLEK expired in December 2025: at the wall clock time (or
		// any time after) the chain fails.
		p := v.policy(t)
		ver, err := NewVerifier(VerifierOptions{Roots: AMDRoots(), Policy: p, Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }})
		require.NoError(t, err)
		_, err = ver.VerifyReport(context.Background(), v.report, v.cert, nil, v.reportData())
		requireCheck(t, err, attest.ErrVerification, "snp.vcek.chain")
	}
	if v, ok := byName["trustee/report-azure-milan.bin"]; ok {
		requireCheck(t, strict(t, v, func(p *Policy) { p.PermitProvisionalFirmware = false }), attest.ErrPolicy, "policy.tcb.provisional")
	}
	if v, ok := byName["trustee/report-genoa.bin"]; ok {
		requireCheck(t, strict(t, v, func(p *Policy) { p.Measurements[0][0] ^= 1 }), attest.ErrPolicy, "policy.measurement")
		// Genoa evidence is not Milan evidence: without Genoa roots the
		// chain fails.
		ver, err := NewVerifier(VerifierOptions{Roots: mustRoots(t, AMDRoots(), "Milan"), Policy: v.policy(t), Now: func() time.Time { return v.now }})
		require.NoError(t, err)
		_, err = ver.VerifyReport(context.Background(), v.report, v.cert, nil, v.reportData())
		requireCheck(t, err, attest.ErrVerification, "snp.vcek.chain")
	}
}

// mustRoots returns the roots of r for the given product lines only.
func mustRoots(t *testing.T, r *Roots, products ...string) *Roots {
	t.Helper()
	out := &Roots{Simulated: r.Simulated, chains: map[string][]chain{}}
	for _, p := range products {
		require.NotEmpty(t, r.chains[p], p)
		out.chains[p] = r.chains[p]
	}
	return out
}

// tamperAllEnv, when set, makes TestRealVectorsTampered flip every byte
// of every vector instead of sampling all but two of them.
const tamperAllEnv = "ATLS_SNP_TAMPER_ALL"

// Every single-byte change of a genuine report is rejected, and none
// panics. Each change costs an ECDSA P-384 verification, which is slow
// under the race detector, so three vectors (go-sev-guest's Milan v2
// report, the Genoa v3 report and the Turin v5 report, whose TCB layout,
// CHIP_ID and CPUID are Turin's) get every byte of the signed part flipped
// and the others a sample: every byte of the fields that steer parsing
// (version, guest policy, VMPL, signature algorithm, signer info, CPUID,
// firmware versions, the four TCBs, whose layout differs by product line,
// and the mitigation vectors) and every 32nd byte elsewhere (set
// ATLS_SNP_TAMPER_ALL=1 to flip them all). All get a sample of the
// signature.
func TestRealVectorsTampered(t *testing.T) {
	vs := realVectors(t)
	full := map[string]bool{"go-sev-guest/attestation.bin": true, "trustee/report-genoa.bin": true, "oak/turin_oc_report.bin": true}
	all := os.Getenv(tamperAllEnv) != ""
	sigOffsets := []int{
		0x2A0, 0x2A0 + 1, 0x2A0 + 47, // R, low end (little-endian)
		0x2A0 + 48, 0x2A0 + 71, // R's zero padding
		0x2E8, 0x2E8 + 24, 0x2E8 + 47, // S
		0x2E8 + 48, 0x2E8 + 71, // S's zero padding
		0x330, 0x400, abi.ReportSize - 1, // the reserved rest
	}
	dense := func(off int) bool {
		in := func(lo, hi int) bool { return off >= lo && off < hi }
		return in(0x00, 0x04) || in(0x08, 0x10) || in(0x30, 0x38) || in(0x48, 0x50) || // version, policy, VMPL, algorithm, signer
			in(0x188, 0x18B) || in(0x1E8, 0x1F0) || // CPUID, firmware versions
			in(0x38, 0x40) || in(0x180, 0x188) || in(0x1E0, 0x1E8) || in(0x1F0, 0x208) || // the TCBs, the mitigation vectors
			off%32 == 0 // a sample of the rest
	}
	var wg sync.WaitGroup
	for _, v := range vs {
		ver := v.verifier(t)
		_, err := ver.VerifyReport(context.Background(), v.report, v.cert, nil, v.reportData())
		require.NoError(t, err, v.name)
		require.Equal(t, 1, ver.cache.Len(), "the chain result is cached")

		var offsets []int
		for off := range 0x2A0 {
			if all || full[v.name] || dense(off) {
				offsets = append(offsets, off)
			}
		}
		offsets = append(offsets, sigOffsets...)
		t.Logf("%s: %d tampered copies", v.name, len(offsets))
		// Two goroutines per vector: the Verifier is safe for concurrent
		// use, which this also exercises.
		for half := range 2 {
			wg.Go(func() {
				for j, off := range offsets {
					if j%2 != half {
						continue
					}
					bad := append([]byte(nil), v.report...)
					bad[off] ^= 0x01
					claims, err := ver.VerifyReport(context.Background(), bad, v.cert, nil, v.reportData())
					if err == nil || claims != nil {
						t.Errorf("%s: byte 0x%x flipped: accepted", v.name, off)
						continue
					}
					var ce *attest.CheckError
					if !errors.As(err, &ce) || ce.Check == "snp.internal" {
						t.Errorf("%s: byte 0x%x flipped: unexpected error %v", v.name, off, err)
					}
				}
			})
		}
	}
	wg.Wait()
}

// A cache hit skips the chain, never the signature: a tampered report
// with a cached VCEK is still rejected, as is a report whose REPORT_DATA
// was changed.
func TestChainCacheHitStillChecksSignature(t *testing.T) {
	v := realVectors(t)[0]
	ver := v.verifier(t)
	ctx := context.Background()
	_, err := ver.VerifyReport(ctx, v.report, v.cert, nil, v.reportData())
	require.NoError(t, err)
	require.Equal(t, 1, ver.cache.Len())

	bad := append([]byte(nil), v.report...)
	bad[0x90] ^= 0x80 // the measurement
	_, err = ver.VerifyReport(ctx, bad, v.cert, nil, v.reportData())
	requireCheck(t, err, attest.ErrVerification, "snp.report.signature")

	bad = append([]byte(nil), v.report...)
	bad[0x50] ^= 0x80 // REPORT_DATA, with reportData following it
	rd := v.reportData()
	rd[0] ^= 0x80
	_, err = ver.VerifyReport(ctx, bad, v.cert, nil, rd)
	requireCheck(t, err, attest.ErrVerification, "snp.report.signature")

	// The cache entry is still there, and still only one.
	require.Equal(t, 1, ver.cache.Len())
	_, err = ver.VerifyReport(ctx, v.report, v.cert, nil, v.reportData())
	require.NoError(t, err)

	// Without a cache the verdicts are the same.
	nc, err := NewVerifier(VerifierOptions{Roots: AMDRoots(), Policy: v.policy(t), Now: func() time.Time { return v.now }, CertCacheSize: -1})
	require.NoError(t, err)
	require.Nil(t, nc.cache)
	_, err = nc.VerifyReport(ctx, v.report, v.cert, nil, v.reportData())
	require.NoError(t, err)
	_, err = nc.VerifyReport(ctx, bad, v.cert, nil, rd)
	requireCheck(t, err, attest.ErrVerification, "snp.report.signature")
}

// A cached chain result is only good inside the certificates' validity.
func TestChainCacheExpires(t *testing.T) {
	v := realVectors(t)[0]
	now := v.now
	ver, err := NewVerifier(VerifierOptions{Roots: AMDRoots(), Policy: v.policy(t), Now: func() time.Time { return now }})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = ver.VerifyReport(ctx, v.report, v.cert, nil, v.reportData())
	require.NoError(t, err)
	require.Equal(t, 1, ver.cache.Len())

	c, err := x509.ParseCertificate(v.cert)
	require.NoError(t, err)
	now = c.NotAfter.Add(time.Second)
	_, err = ver.VerifyReport(ctx, v.report, v.cert, nil, v.reportData())
	requireCheck(t, err, attest.ErrVerification, "snp.vcek.chain")
	now = c.NotBefore.Add(-time.Second)
	_, err = ver.VerifyReport(ctx, v.report, v.cert, nil, v.reportData())
	requireCheck(t, err, attest.ErrVerification, "snp.vcek.chain")
}
