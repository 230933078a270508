package snp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"flag"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/confidential-go/atls/atls/attest"
)

// vtMeasurement is the measurement the simulated guests of these tests
// report and their policies pin.
var vtMeasurement = [48]byte{0: 0x4d, 1: 0x45, 2: 0x41, 47: 0x53}

// vtReportData is the binding the tests expect.
var vtReportData = [64]byte{0: 0xa7, 31: 0x15, 63: 0x5b}

// vtPolicy is NewPolicy with vtMeasurement pinned.
func vtPolicy() *Policy {
	p := NewPolicy()
	p.Measurements = []attest.HexBytes{vtMeasurement[:]}
	return p
}

// vtAttester makes a simulated attester for chain with opts, the
// measurement defaulting to vtMeasurement.
func vtAttester(t *testing.T, chain *SimChain, opts SimOptions) *SimAttester {
	t.Helper()
	if opts.Measurement == ([48]byte{}) {
		opts.Measurement = vtMeasurement
	}
	a, err := NewSimAttester(chain, opts)
	require.NoError(t, err)
	return a
}

// vtVerifier is a verifier trusting roots under policy p.
func vtVerifier(t *testing.T, roots *Roots, p *Policy) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierOptions{Roots: roots, Policy: p})
	require.NoError(t, err)
	return v
}

// resign applies change to a copy of a's report for vtReportData and signs
// it again, so that only the verifier's structure and policy checks can
// catch the change.
func resign(t *testing.T, a *SimAttester, change func(r []byte)) []byte {
	t.Helper()
	r, err := a.Report(vtReportData)
	require.NoError(t, err)
	change(r)
	require.NoError(t, a.SignReport(r))
	return r
}

func TestVerifySimulated(t *testing.T) {
	ctx := context.Background()
	for _, product := range []string{"Milan", "Genoa"} {
		for _, version := range []uint32{2, 3, 5} {
			chain := testSimChain(t, product)
			a := vtAttester(t, chain, SimOptions{ReportVersion: version})
			v := vtVerifier(t, chain.Roots(), vtPolicy())
			ev, err := a.Attest(ctx, vtReportData)
			require.NoError(t, err)
			claims, err := v.Verify(ctx, ev, vtReportData)
			require.NoError(t, err, "%s v%d", product, version)
			o := a.Options()
			require.True(t, claims.Simulated)
			require.Equal(t, Platform, claims.Platform)
			require.Equal(t, vtReportData[:], []byte(claims.ReportData))
			d, err := ev.Digest()
			require.NoError(t, err)
			require.Equal(t, d[:], []byte(claims.EvidenceDigest))
			require.Zero(t, claims.Role)
			require.Zero(t, claims.Mode)
			require.True(t, claims.NotBefore.IsZero())
			s := claims.SNP
			require.Equal(t, version, s.ReportVersion)
			require.Equal(t, product, s.Product)
			require.Equal(t, "VCEK", s.Signer)
			require.Equal(t, vtMeasurement[:], []byte(s.Measurement))
			require.Equal(t, o.ChipID[:], []byte(s.ChipID))
			require.Equal(t, o.ReportID[:], []byte(s.ReportID))
			require.Equal(t, o.TCB, s.ReportedTCB)
			require.Equal(t, o.TCB, s.CertTCB)
			require.Equal(t, o.GuestPolicy, s.GuestPolicy)
			require.Equal(t, "1.55", s.CurrentVersion[:4])
			require.Equal(t, s.CurrentVersion, s.CommittedVersion)
		}
	}
}

// Real roots never accept simulated evidence, and one simulated chain
// does not accept another's.
func TestVerifyForgedChain(t *testing.T) {
	ctx := context.Background()
	a := vtAttester(t, testSimChain(t, "Milan"), SimOptions{})
	r, err := a.Report(vtReportData)
	require.NoError(t, err)
	for name, roots := range map[string]*Roots{
		"AMD roots":         AMDRoots(),
		"another simulator": testSimChain(t, "Milan-other").Roots(),
		"Genoa simulator":   testSimChain(t, "Genoa").Roots(),
	} {
		v := vtVerifier(t, roots, vtPolicy())
		_, err := v.VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
		requireCheck(t, err, attest.ErrVerification, "snp.vcek.chain")
		require.Zero(t, v.cache.Len(), name)
	}

	// A real VCEK with a simulated report: the chain is fine, the
	// signature is not.
	rv := realVectors(t)[0]
	v := vtVerifier(t, AMDRoots(), vtPolicy())
	v.now = func() time.Time { return rv.now }
	_, err = v.VerifyReport(ctx, r, rv.cert, nil, vtReportData)
	requireCheck(t, err, attest.ErrVerification, "snp.report.signature")
}

// A simulated report whose VCEK has expired (or is not yet valid) fails
// the chain.
func TestVerifyExpiredVCEK(t *testing.T) {
	ctx := context.Background()
	chain := testSimChain(t, "Milan")
	a := vtAttester(t, chain, SimOptions{})
	r, err := a.Report(vtReportData)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(a.VCEK())
	require.NoError(t, err)
	for _, now := range []time.Time{cert.NotAfter.Add(time.Minute), cert.NotBefore.Add(-time.Minute)} {
		v, err := NewVerifier(VerifierOptions{Roots: chain.Roots(), Policy: vtPolicy(), Now: func() time.Time { return now }})
		require.NoError(t, err)
		_, err = v.VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
		requireCheck(t, err, attest.ErrVerification, "snp.vcek.chain")
	}
}

// Each attack is rejected with the expected kind and check.
func TestVerifyAttacks(t *testing.T) {
	ctx := context.Background()
	milan := testSimChain(t, "Milan")
	base := vtAttester(t, milan, SimOptions{})
	policyBytes := func(p abi.SnpPolicy) uint64 { return abi.SnpPolicyToBytes(p) }
	setU32 := func(off int, v uint32) func(r []byte) {
		return func(r []byte) { binary.LittleEndian.PutUint32(r[off:], v) }
	}
	type tc struct {
		name   string
		opts   *SimOptions                 // nil: the shared default attester
		policy func(p *Policy)             // changes to vtPolicy
		report func(a *SimAttester) []byte // default: a.Report(vtReportData)
		cert   func(a *SimAttester) []byte // default: a.VCEK()
		kind   error
		check  string
	}
	idKey, otherKey, authorKey := bytes.Repeat([]byte{0x1d}, 48), bytes.Repeat([]byte{0x2e}, 48), bytes.Repeat([]byte{0xa7}, 48)
	var chipA [64]byte
	copy(chipA[:], "chip A")
	cases := []tc{
		{name: "debug", opts: &SimOptions{GuestPolicy: policyBytes(abi.SnpPolicy{SMT: true, Debug: true})}, kind: attest.ErrPolicy, check: "policy.debug"},
		{name: "migration agent", opts: &SimOptions{GuestPolicy: policyBytes(abi.SnpPolicy{SMT: true, MigrateMA: true})}, kind: attest.ErrPolicy, check: "policy.migrate_ma"},
		{name: "vmpl 1", opts: &SimOptions{VMPL: 1}, kind: attest.ErrPolicy, check: "policy.vmpl"},
		{name: "vmpl 2", opts: &SimOptions{VMPL: 2}, kind: attest.ErrPolicy, check: "policy.vmpl"},
		{name: "vmpl 3", opts: &SimOptions{VMPL: 3}, kind: attest.ErrPolicy, check: "policy.vmpl"},
		{name: "wrong measurement", opts: &SimOptions{Measurement: [48]byte{1}}, kind: attest.ErrPolicy, check: "policy.measurement"},
		{name: "wrong host data", policy: func(p *Policy) { p.HostData = bytes.Repeat([]byte{7}, 32) }, kind: attest.ErrPolicy, check: "policy.host_data"},
		{name: "untrusted ID key", opts: &SimOptions{IDKeyDigest: [48]byte(otherKey)},
			policy: func(p *Policy) { p.TrustedIDKeyDigests = []attest.HexBytes{idKey} }, kind: attest.ErrPolicy, check: "policy.id_key"},
		{name: "no ID block", policy: func(p *Policy) { p.TrustedIDKeyDigests = []attest.HexBytes{idKey} }, kind: attest.ErrPolicy, check: "policy.id_key"},
		{name: "denied ID key", opts: &SimOptions{IDKeyDigest: [48]byte(idKey)},
			policy: func(p *Policy) { p.DeniedIDKeyDigests = []attest.HexBytes{idKey} }, kind: attest.ErrPolicy, check: "policy.id_key"},
		{name: "denied ID key signed by a trusted author", opts: &SimOptions{IDKeyDigest: [48]byte(idKey), AuthorKeyDigest: [48]byte(authorKey), AuthorKeyEn: true},
			policy: func(p *Policy) {
				p.TrustedAuthorKeyDigests = []attest.HexBytes{authorKey}
				p.DeniedIDKeyDigests = []attest.HexBytes{idKey}
			}, kind: attest.ErrPolicy, check: "policy.id_key"},
		{name: "denied author key", opts: &SimOptions{IDKeyDigest: [48]byte(idKey), AuthorKeyDigest: [48]byte(otherKey), AuthorKeyEn: true},
			policy: func(p *Policy) {
				p.TrustedIDKeyDigests = []attest.HexBytes{idKey}
				p.DeniedAuthorKeyDigests = []attest.HexBytes{otherKey}
			}, kind: attest.ErrPolicy, check: "policy.author_key"},
		{name: "author key required but absent", opts: &SimOptions{IDKeyDigest: [48]byte(idKey), AuthorKeyDigest: [48]byte(authorKey)},
			policy: func(p *Policy) {
				p.RequireAuthorKey = true
				p.TrustedAuthorKeyDigests = []attest.HexBytes{authorKey}
				p.TrustedIDKeyDigests = []attest.HexBytes{idKey}
			}, kind: attest.ErrPolicy, check: "policy.author_key"},
		{name: "TCB below minimum", opts: &SimOptions{TCB: TCB{Bootloader: 2, SNP: 5, Microcode: 68}.Version()}, kind: attest.ErrPolicy, check: "policy.tcb.minimum"},
		{name: "TCB below a raised minimum", policy: func(p *Policy) {
			p.MinimumTCB = map[string]TCB{"Milan": {Bootloader: 4, SNP: 24, Microcode: 220}}
		}, kind: attest.ErrPolicy, check: "policy.tcb.minimum"},
		{name: "VCEK TCB below reported", opts: &SimOptions{VCEKTCB: TCB{Bootloader: 4, SNP: 24, Microcode: 218}.Version()}, kind: attest.ErrPolicy, check: "policy.tcb.vcek"},
		{name: "VCEK TCB above reported", opts: &SimOptions{VCEKTCB: TCB{Bootloader: 4, SNP: 24, Microcode: 220}.Version(), CurrentTCB: TCB{Bootloader: 4, SNP: 24, Microcode: 220}.Version()},
			policy: func(p *Policy) { p.PermitProvisionalFirmware = true }, kind: attest.ErrPolicy, check: "policy.tcb.vcek"},
		{name: "provisional TCB", opts: &SimOptions{CurrentTCB: TCB{Bootloader: 4, SNP: 24, Microcode: 220}.Version()}, kind: attest.ErrPolicy, check: "policy.tcb.provisional"},
		{name: "provisional firmware version", opts: &SimOptions{CurrentVersion: [3]uint8{1, 55, 30}, CommittedVersion: [3]uint8{1, 55, 29}}, kind: attest.ErrPolicy, check: "policy.tcb.provisional"},
		{name: "committed above current", opts: &SimOptions{CurrentVersion: [3]uint8{1, 55, 29}, CommittedVersion: [3]uint8{1, 55, 30}},
			policy: func(p *Policy) { p.PermitProvisionalFirmware = true }, kind: attest.ErrPolicy, check: "policy.tcb.provisional"},
		{name: "chip not pinned", policy: func(p *Policy) { p.ChipIDs = []attest.HexBytes{chipA[:]} }, kind: attest.ErrPolicy, check: "policy.chip_id"},
		{name: "masked chip with pinned chips", opts: &SimOptions{ChipID: chipA, MaskChipID: true},
			policy: func(p *Policy) { p.ChipIDs = []attest.HexBytes{chipA[:]} }, kind: attest.ErrPolicy, check: "policy.chip_id"},
		{name: "chip ID is not the VCEK's", report: func(a *SimAttester) []byte {
			return resign(t, a, func(r []byte) { r[0x1A0] ^= 0x01 })
		}, kind: attest.ErrPolicy, check: "policy.chip_id"},
		{name: "signature algorithm 2", opts: &SimOptions{SignatureAlgo: 2}, kind: attest.ErrUnsupported, check: "snp.report.signature_algo"},
		{name: "signature algorithm 0", report: func(a *SimAttester) []byte { return resign(t, a, setU32(0x34, 0)) }, kind: attest.ErrUnsupported, check: "snp.report.signature_algo"},
		{name: "unknown version 6", report: func(a *SimAttester) []byte { return resign(t, a, setU32(0, 6)) }, kind: attest.ErrUnsupported, check: "snp.report.version"},
		{name: "unknown version 1", report: func(a *SimAttester) []byte { return resign(t, a, setU32(0, 1)) }, kind: attest.ErrUnsupported, check: "snp.report.version"},
		{name: "version 4 not allowed", report: func(a *SimAttester) []byte { return resign(t, a, setU32(0, 4)) }, kind: attest.ErrUnsupported, check: "snp.report.version"},
		{name: "version 2 not allowed", opts: &SimOptions{ReportVersion: 2}, policy: func(p *Policy) { p.AllowedReportVersions = []uint32{3, 5} },
			kind: attest.ErrUnsupported, check: "snp.report.version"},
		{name: "mbz after signer info", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x4C] = 1 }) },
			kind: attest.ErrMalformedEvidence, check: "snp.report.format"},
		{name: "signer info reserved bits", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x49] = 0x80 }) },
			kind: attest.ErrMalformedEvidence, check: "snp.report.format"},
		{name: "reserved signing key", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x48] = 2 << 2 }) },
			kind: attest.ErrMalformedEvidence, check: "snp.report.format"},
		{name: "guest policy reserved bit 17 clear", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x0A] &^= 0x02 }) },
			kind: attest.ErrMalformedEvidence, check: "snp.report.format"},
		{name: "guest policy undefined bit", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x0F] = 0x80 }) },
			kind: attest.ErrMalformedEvidence, check: "snp.report.format"},
		{name: "stepping high nibble", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x18A] |= 0x10 }) },
			kind: attest.ErrMalformedEvidence, check: "snp.report.format"},
		{name: "reserved after CPUID", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x18B] = 1 }) },
			kind: attest.ErrMalformedEvidence, check: "snp.report.format"},
		{name: "reserved between versions", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x1EB] = 1 }) },
			kind: attest.ErrMalformedEvidence, check: "snp.report.format"},
		{name: "mitigation vector in a v3 report", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x1F8] = 1 }) },
			kind: attest.ErrMalformedEvidence, check: "snp.report.format"},
		{name: "reserved tail of the signed part", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x29F] = 1 }) },
			kind: attest.ErrMalformedEvidence, check: "snp.report.format"},
		{name: "bytes after the signature", report: func(a *SimAttester) []byte {
			r, err := a.Report(vtReportData)
			require.NoError(t, err)
			r[0x2A0+0x90] = 1
			return r
		}, kind: attest.ErrMalformedEvidence, check: "snp.report.format"},
		{name: "unsigned report", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x48] = 7 << 2 }) },
			kind: attest.ErrVerification, check: "snp.report.signer"},
		{name: "VLEK claimed with a VCEK", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x48] = 1 << 2 }) },
			policy: func(p *Policy) { p.AllowVLEK = true }, kind: attest.ErrVerification, check: "snp.vcek.extensions"},
		{name: "unknown CPUID family", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x188] = 0x17 }) },
			kind: attest.ErrUnsupported, check: "snp.product"},
		{name: "CPUID of another product line", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x189] = 0x11 }) },
			kind: attest.ErrVerification, check: "snp.vcek.product"},
		{name: "CPUID of another family", report: func(a *SimAttester) []byte { return resign(t, a, func(r []byte) { r[0x188], r[0x189] = 0x1A, 0x7 }) },
			kind: attest.ErrVerification, check: "snp.vcek.product"},
		{name: "tampered measurement", report: func(a *SimAttester) []byte {
			r, err := a.Report(vtReportData)
			require.NoError(t, err)
			r[0x90] ^= 0x01
			return r
		}, kind: attest.ErrVerification, check: "snp.report.signature"},
		{name: "tampered signature", report: func(a *SimAttester) []byte {
			r, err := a.Report(vtReportData)
			require.NoError(t, err)
			r[0x2A0] ^= 0x01
			return r
		}, kind: attest.ErrVerification, check: "snp.report.signature"},
		{name: "truncated report", report: func(a *SimAttester) []byte {
			r, err := a.Report(vtReportData)
			require.NoError(t, err)
			return r[:ReportSize-1]
		}, kind: attest.ErrMalformedEvidence, check: "snp.report.size"},
		{name: "trailing bytes", report: func(a *SimAttester) []byte {
			r, err := a.Report(vtReportData)
			require.NoError(t, err)
			return append(r, 0)
		}, kind: attest.ErrMalformedEvidence, check: "snp.report.size"},
		{name: "empty report", report: func(*SimAttester) []byte { return nil }, kind: attest.ErrMalformedEvidence, check: "snp.report.size"},
		{name: "no certificate", cert: func(*SimAttester) []byte { return nil }, kind: attest.ErrMalformedEvidence, check: "snp.vcek.parse"},
		{name: "garbage certificate", cert: func(*SimAttester) []byte { return []byte("not a certificate") }, kind: attest.ErrMalformedEvidence, check: "snp.vcek.parse"},
		{name: "oversized certificate", cert: func(*SimAttester) []byte { return make([]byte, MaxCertSize+1) }, kind: attest.ErrMalformedEvidence, check: "snp.vcek.parse"},
		{name: "certificate is the ASK", cert: func(*SimAttester) []byte { return milan.ASK.Raw }, kind: attest.ErrVerification, check: "snp.vcek.extensions"},
		{name: "another chip's VCEK", cert: func(*SimAttester) []byte { return vtAttester(t, milan, SimOptions{}).VCEK() },
			kind: attest.ErrVerification, check: "snp.report.signature"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := base
			if c.opts != nil {
				a = vtAttester(t, milan, *c.opts)
			}
			p := vtPolicy()
			if c.policy != nil {
				c.policy(p)
			}
			v := vtVerifier(t, milan.Roots(), p)
			var report []byte
			if c.report != nil {
				report = c.report(a)
			} else {
				var err error
				report, err = a.Report(vtReportData)
				require.NoError(t, err)
			}
			cert := a.VCEK()
			if c.cert != nil {
				cert = c.cert(a)
			}
			claims, err := v.VerifyReport(ctx, report, cert, nil, vtReportData)
			require.Nil(t, claims)
			requireCheck(t, err, c.kind, c.check)
		})
	}
}

// The attacks above fail for the reason named, not for another: with the
// policy relaxed, the same evidence is accepted.
func TestVerifyRelaxedPolicyAccepts(t *testing.T) {
	ctx := context.Background()
	milan := testSimChain(t, "Milan")
	idKey, authorKey := bytes.Repeat([]byte{0x1d}, 48), bytes.Repeat([]byte{0xa7}, 48)
	var chipA [64]byte
	copy(chipA[:], "chip A")
	for _, c := range []struct {
		name   string
		opts   SimOptions
		policy func(p *Policy)
	}{
		{"debug", SimOptions{GuestPolicy: abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true, Debug: true})}, func(p *Policy) { p.AllowDebug = true }},
		{"migration agent", SimOptions{GuestPolicy: abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true, MigrateMA: true})}, func(p *Policy) { p.AllowMigrateMA = true }},
		{"vmpl 2", SimOptions{VMPL: 2}, func(p *Policy) { p.AllowedVMPLs = []uint32{0, 2} }},
		{"one of two measurements", SimOptions{Measurement: [48]byte{1}}, func(p *Policy) {
			next := [48]byte{1}
			p.Measurements = append(p.Measurements, next[:])
		}},
		{"trusted ID key, no measurement", SimOptions{IDKeyDigest: [48]byte(idKey)}, func(p *Policy) {
			p.Measurements = nil
			p.TrustedIDKeyDigests = []attest.HexBytes{idKey}
		}},
		{"trusted author key", SimOptions{IDKeyDigest: [48]byte{9}, AuthorKeyDigest: [48]byte(authorKey), AuthorKeyEn: true}, func(p *Policy) {
			p.RequireAuthorKey = true
			p.TrustedAuthorKeyDigests = []attest.HexBytes{authorKey}
		}},
		{"pinned chip", SimOptions{ChipID: chipA}, func(p *Policy) { p.ChipIDs = []attest.HexBytes{chipA[:]} }},
		{"masked chip", SimOptions{MaskChipID: true}, nil},
		{"provisional firmware", SimOptions{CurrentTCB: TCB{Bootloader: 4, SNP: 24, Microcode: 220}.Version(), CurrentVersion: [3]uint8{1, 55, 30}, CommittedVersion: [3]uint8{1, 55, 29}},
			func(p *Policy) { p.PermitProvisionalFirmware = true }},
		{"old TCB with a lowered minimum", SimOptions{TCB: TCB{Bootloader: 2, SNP: 5, Microcode: 68}.Version()},
			func(p *Policy) {
				p.MinimumTCB = map[string]TCB{"Milan": {Bootloader: 2, SNP: 5, Microcode: 68}}
				p.AllowTCBBelowBaseline = map[string]string{"Milan": "this test needs old firmware"}
			}},
		{"version 2", SimOptions{ReportVersion: 2}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := vtAttester(t, milan, c.opts)
			p := vtPolicy()
			if c.policy != nil {
				c.policy(p)
			}
			r, err := a.Report(vtReportData)
			require.NoError(t, err)
			_, err = vtVerifier(t, milan.Roots(), p).VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
			require.NoError(t, err)
		})
	}
}

// A Genoa VCEK whose product name has no stepping ("Genoa", as the KDS
// issues them today) places a version 2 report, which has no CPUID, by its
// chain: it must chain to the Genoa ARK. go-sev-guest cannot tell the
// product, so it gives no second opinion there.
func TestVerifyGenoaV2(t *testing.T) {
	genoa := testSimChain(t, "Genoa")
	milan := testSimChain(t, "Milan")
	ctx := context.Background()
	a := vtAttester(t, genoa, SimOptions{ReportVersion: 2, ProductName: "Genoa"})
	r, err := a.Report(vtReportData)
	require.NoError(t, err)
	claims, err := vtVerifier(t, genoa.Roots(), vtPolicy()).VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
	require.NoError(t, err)
	require.Equal(t, "Genoa", claims.SNP.Product)
	// A "Genoa" VCEK that a Milan ASK signed is no Genoa VCEK.
	m := vtAttester(t, milan, SimOptions{ReportVersion: 2, ProductName: "Genoa"})
	r, err = m.Report(vtReportData)
	require.NoError(t, err)
	_, err = vtVerifier(t, milan.Roots(), vtPolicy()).VerifyReport(ctx, r, m.VCEK(), nil, vtReportData)
	requireCheck(t, err, attest.ErrVerification, "snp.vcek.chain")

	// With a stepping in the product name, it can.
	a = vtAttester(t, genoa, SimOptions{ReportVersion: 2})
	r, err = a.Report(vtReportData)
	require.NoError(t, err)
	_, err = vtVerifier(t, genoa.Roots(), vtPolicy()).VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
	require.NoError(t, err)
}

// vtCRL makes a CRL for chain signed by signer's ARK key.
func vtCRL(t *testing.T, signer *SimChain, thisUpdate, nextUpdate time.Time, revoked ...*big.Int) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: thisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(1),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
		SignatureAlgorithm:        x509.SHA384WithRSAPSS,
	}, signer.ARK, signer.arkKey)
	require.NoError(t, err)
	return der
}

// crlSetup is a Milan chain and a report of it, for the CRL tests.
func crlSetup(t *testing.T) (milan *SimChain, a *SimAttester, report []byte) {
	milan = testSimChain(t, "Milan")
	a = vtAttester(t, milan, SimOptions{})
	report, err := a.Report(vtReportData)
	require.NoError(t, err)
	return milan, a, report
}

func TestVerifyCRL(t *testing.T) {
	ctx := context.Background()
	milan, a, r := crlSetup(t)
	now := time.Now()
	day := 24 * time.Hour
	verify := func(crl []byte) error {
		_, err := vtVerifier(t, milan.Roots(), vtPolicy()).VerifyReport(ctx, r, a.VCEK(), crl, vtReportData)
		return err
	}

	// A current CRL that revokes something else: accepted, offline.
	require.NoError(t, verify(vtCRL(t, milan, now.Add(-day), now.Add(day), big.NewInt(12345))))
	ev := NewEvidence(r, a.VCEK(), vtCRL(t, milan, now.Add(-day), now.Add(day)))
	_, err := vtVerifier(t, milan.Roots(), vtPolicy()).Verify(ctx, ev, vtReportData)
	require.NoError(t, err)

	requireCheck(t, verify(vtCRL(t, milan, now.Add(-day), now.Add(day), milan.ASK.SerialNumber)), attest.ErrVerification, "snp.revocation")
	requireCheck(t, verify(vtCRL(t, milan, now.Add(-2*day), now.Add(-day))), attest.ErrVerification, "snp.crl.stale")
	requireCheck(t, verify(vtCRL(t, milan, now.Add(day), now.Add(2*day))), attest.ErrVerification, "snp.crl.stale")
	other := testSimChain(t, "Milan-other")
	requireCheck(t, verify(vtCRL(t, other, now.Add(-day), now.Add(day))), attest.ErrVerification, "snp.crl")
	requireCheck(t, verify([]byte("not a CRL")), attest.ErrMalformedEvidence, "snp.crl")
	requireCheck(t, verify(make([]byte, MaxCRLSize+1)), attest.ErrMalformedEvidence, "snp.crl")

	// A CRL is part of the cache key: a cached result without a CRL does
	// not vouch for evidence with a revoking one.
	v := vtVerifier(t, milan.Roots(), vtPolicy())
	_, err = v.VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
	require.NoError(t, err)
	_, err = v.VerifyReport(ctx, r, a.VCEK(), vtCRL(t, milan, now.Add(-day), now.Add(day), milan.ASK.SerialNumber), vtReportData)
	requireCheck(t, err, attest.ErrVerification, "snp.revocation")
}

func TestNewVerifierConfig(t *testing.T) {
	milan := testSimChain(t, "Milan")
	for name, opts := range map[string]VerifierOptions{
		"no roots":       {Policy: vtPolicy()},
		"empty roots":    {Roots: &Roots{}, Policy: vtPolicy()},
		"no policy":      {Roots: AMDRoots()},
		"empty policy":   {Roots: AMDRoots(), Policy: NewPolicy()},
		"invalid policy": {Roots: milan.Roots(), Policy: &Policy{Measurements: []attest.HexBytes{{1, 2, 3}}}},
	} {
		_, err := NewVerifier(opts)
		require.ErrorIs(t, err, attest.ErrConfig, name)
		var ce *attest.CheckError
		require.ErrorAs(t, err, &ce, name)
	}
}

// The verifier keeps its own copies: changing the caller's policy or
// roots afterwards changes nothing.
func TestVerifierSnapshots(t *testing.T) {
	ctx := context.Background()
	milan := testSimChain(t, "Milan")
	a := vtAttester(t, milan, SimOptions{})
	r, err := a.Report(vtReportData)
	require.NoError(t, err)

	p := vtPolicy()
	roots := milan.Roots()
	v := vtVerifier(t, roots, p)
	p.Measurements[0][0] ^= 1
	p.AllowedVMPLs[0] = 3
	roots.chains = nil
	_, err = v.VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
	require.NoError(t, err)
}

func TestVerifyNilAndMalformedEvidence(t *testing.T) {
	ctx := context.Background()
	v := vtVerifier(t, testSimChain(t, "Milan").Roots(), vtPolicy())
	_, err := v.Verify(ctx, nil, vtReportData)
	requireCheck(t, err, attest.ErrNotAttested, "snp.evidence")
	_, err = v.Verify(ctx, &attest.Evidence{Type: "other", Records: map[string]attest.Record{"x": {MediaType: "a", Value: []byte{1}}}}, vtReportData)
	requireCheck(t, err, attest.ErrMalformedEvidence, "snp.evidence")
}

// Verification logs a rejection with the check name, and is silent
// without a logger.
func TestVerifierLogs(t *testing.T) {
	milan := testSimChain(t, "Milan")
	a := vtAttester(t, milan, SimOptions{VMPL: 1})
	r, err := a.Report(vtReportData)
	require.NoError(t, err)
	var buf bytes.Buffer
	v, err := NewVerifier(VerifierOptions{Roots: milan.Roots(), Policy: vtPolicy(),
		Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	_, err = v.VerifyReport(context.Background(), r, a.VCEK(), nil, vtReportData)
	require.Error(t, err)
	require.Contains(t, buf.String(), "check=policy.vmpl")
}

// The verifier never reaches the network: its getter refuses.
func TestOfflineGetter(t *testing.T) {
	_, err := offlineGetter{}.Get("https://kdsintf.amd.com/vcek/v1/Milan/cert_chain")
	require.Error(t, err)
	_, err = offlineGetter{}.GetContext(context.Background(), "https://kdsintf.amd.com/vcek/v1/Milan/crl")
	require.Error(t, err)
}

// Concurrent verifications of good and bad evidence share one verifier
// and its cache (run with -race).
func TestVerifyConcurrent(t *testing.T) {
	ctx := context.Background()
	milan := testSimChain(t, "Milan")
	a := vtAttester(t, milan, SimOptions{})
	good, err := a.Report(vtReportData)
	require.NoError(t, err)
	bad := bytes.Clone(good)
	bad[0x90] ^= 1
	v := vtVerifier(t, milan.Roots(), vtPolicy())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			r := good
			if i%2 == 1 {
				r = bad
			}
			_, err := v.VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
			if (err == nil) != (i%2 == 0) {
				t.Errorf("goroutine %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	require.Equal(t, 1, v.cache.Len())
}

// A certificate with an unknown AMD extension is unsupported; one without
// AMD's extensions, or with the wrong ones for the signer, is not a VCEK.
func TestParseSignerCertExtensions(t *testing.T) {
	milan := testSimChain(t, "Milan")
	_, _, err := parseSignerCert(milan.ARK.Raw, abi.VcekReportSigner)
	requireCheck(t, err, attest.ErrVerification, "snp.vcek.extensions")
	_, _, err = parseSignerCert(vtAttester(t, milan, SimOptions{}).VCEK(), abi.VlekReportSigner)
	requireCheck(t, err, attest.ErrVerification, "snp.vcek.extensions")

	// A certificate with an AMD extension no published profile has
	// (the SPL after Turin's fmcSPL).
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	unknownSPL := append(slices.Clone(amdKDSArc), 3, 10)
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(0),
		Subject:         amdName("SEV-VCEK"),
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: unknownSPL, Value: []byte{2, 1, 0}}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	_, _, err = parseSignerCert(der, abi.VcekReportSigner)
	requireCheck(t, err, attest.ErrUnsupported, "snp.vcek.extensions")
	require.ErrorContains(t, err, "1.3.6.1.4.1.3704.1.3.10")
}

// FuzzVerifyReport feeds arbitrary reports, certificates and CRLs to the
// verifier: nothing may panic (which the verifier would report as
// "snp.internal"), and nothing but the genuine report may be accepted.
func FuzzVerifyReport(f *testing.F) {
	t := &testing.T{}
	rv := realVectors(t)[0]
	f.Add(rv.report, rv.cert, []byte(nil))
	bad := bytes.Clone(rv.report)
	bad[0] = 3
	f.Add(bad, rv.cert, []byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Add(rv.report[:100], []byte("not a certificate"), []byte(nil))
	p := rv.policy(t)
	v, err := NewVerifier(VerifierOptions{Roots: AMDRoots(), Policy: p, Now: func() time.Time { return rv.now }})
	if err != nil {
		f.Fatal(err)
	}
	rd := rv.reportData()
	check := func(t *testing.T, report, cert, crl []byte) {
		claims, err := v.VerifyReport(context.Background(), report, cert, crl, rd)
		if err == nil {
			if !bytes.Equal(report, rv.report) || claims == nil {
				t.Fatalf("accepted a report that is not the genuine one")
			}
			return
		}
		var ce *attest.CheckError
		if !errors.As(err, &ce) {
			t.Fatalf("error is not a *attest.CheckError: %v", err)
		}
		if ce.Check == "snp.internal" {
			t.Fatalf("verifier panicked: %v", err)
		}
	}
	f.Fuzz(func(t *testing.T, report, cert, crl []byte) {
		check(t, report, cert, crl)
		// Most inputs have the wrong size; also try them at the right
		// one, so that the fuzzer reaches the parsers behind the size
		// check.
		if len(report) != ReportSize {
			sized := make([]byte, ReportSize)
			copy(sized, report)
			check(t, sized, cert, crl)
		}
	})
}

// Simulated roots added to AMD's roots still mark claims simulated.
func TestMixedRootsAreSimulated(t *testing.T) {
	chain := testSimChain(t, "Milan")
	mixed := AMDRoots()
	require.NoError(t, mixed.AddPEM(chain.Roots().PEM()))
	require.False(t, mixed.Simulated)
	v, err := NewVerifier(VerifierOptions{Roots: mixed, Policy: vtPolicy()})
	require.NoError(t, err)
	require.True(t, v.live.Load().roots.Simulated)

	amd, err := NewVerifier(VerifierOptions{Roots: AMDRoots(), Policy: vtPolicy()})
	require.NoError(t, err)
	require.False(t, amd.live.Load().roots.Simulated)
}

// The verifier's own CRL is checked instead of the attester's, so that a
// peer cannot pick an older one; a policy can require a CRL at all.
func TestVerifierCRLs(t *testing.T) {
	ctx := context.Background()
	milan, a, r := crlSetup(t)
	now := time.Now()
	day := 24 * time.Hour
	clean := vtCRL(t, milan, now.Add(-day), now.Add(day))
	revoking := vtCRL(t, milan, now.Add(-day), now.Add(day), milan.ASK.SerialNumber)

	withCRL := func(p *Policy, crls map[string][]byte) *Verifier {
		v, err := NewVerifier(VerifierOptions{Roots: milan.Roots(), Policy: p, CRLs: crls})
		require.NoError(t, err)
		return v
	}

	// The verifier's revoking CRL wins over a clean one from the peer.
	v := withCRL(vtPolicy(), map[string][]byte{"Milan": revoking})
	_, err := v.VerifyReport(ctx, r, a.VCEK(), clean, vtReportData)
	requireCheck(t, err, attest.ErrVerification, "snp.revocation")
	_, err = v.VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
	requireCheck(t, err, attest.ErrVerification, "snp.revocation")

	// A clean verifier CRL: accepted, and the verdict lapses with it.
	c, err := withCRL(vtPolicy(), map[string][]byte{"Milan": clean}).VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
	require.NoError(t, err)
	require.WithinDuration(t, now.Add(day), c.ValidUntil, time.Second)

	// require_crl: refused without any CRL, accepted with one.
	p := vtPolicy()
	p.RequireCRL = true
	_, err = withCRL(p, nil).VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
	requireCheck(t, err, attest.ErrPolicy, "policy.crl")
	_, err = withCRL(p, nil).VerifyReport(ctx, r, a.VCEK(), clean, vtReportData)
	require.NoError(t, err)
	_, err = withCRL(p, map[string][]byte{"Milan": clean}).VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
	require.NoError(t, err)

	// Misconfigured CRLs are refused up front.
	for name, crls := range map[string]map[string][]byte{
		"garbage":       {"Milan": []byte("not a CRL")},
		"empty":         {"Milan": nil},
		"wrong product": {"Genoa": clean},
	} {
		_, err := NewVerifier(VerifierOptions{Roots: milan.Roots(), Policy: vtPolicy(), CRLs: crls})
		requireCheck(t, err, attest.ErrConfig, "snp.config")
		require.Error(t, err, name)
	}
}

// Issue 13, finding 8 (verify side): go-sev-guest's verify package
// registers workaround_kds_productname on flag.CommandLine, so any
// program that parses its command line lets it be set. Set, it skips
// go-sev-guest's comparison of the VCEK's stepping with an expected
// product. The verifier never gives go-sev-guest an expected product nor
// lets it fetch certificates, and checks the product line itself, so the
// flag changes none of its verdicts.
func TestVerifyIgnoresKDSProductNameFlag(t *testing.T) {
	const name = "workaround_kds_productname"
	f := flag.CommandLine.Lookup(name)
	require.NotNil(t, f, "go-sev-guest no longer registers %s: review the comment in verifyChain", name)
	saved := f.Value.String()
	t.Cleanup(func() { require.NoError(t, flag.CommandLine.Set(name, saved)) })

	ctx := context.Background()
	milan, genoa := testSimChain(t, "Milan"), testSimChain(t, "Genoa")
	cases := []struct {
		name  string
		chain *SimChain
		opts  SimOptions
		kind  error // nil: accepted
		check string
	}{
		{"genuine v3", milan, SimOptions{}, nil, ""},
		{"genuine v2", milan, SimOptions{ReportVersion: 2}, nil, ""},
		// The stepping is signed in the report; the VCEK's name for it
		// is not compared, with or without the flag.
		{"VCEK named for another stepping", milan, SimOptions{Stepping: 1, ProductName: "Milan-B0"}, nil, ""},
		{"VCEK of another product line v3", milan, SimOptions{ProductName: "Genoa-B1"}, attest.ErrVerification, "snp.vcek.product"},
		{"VCEK of another product line v5", milan, SimOptions{ReportVersion: 5, ProductName: "Genoa-B0"}, attest.ErrVerification, "snp.vcek.product"},
		{"VCEK of an unknown product v3", milan, SimOptions{ProductName: "Rome-B0"}, attest.ErrVerification, "snp.vcek.product"},
		{"VCEK of another product line v2", milan, SimOptions{ReportVersion: 2, ProductName: "Genoa-B1"}, attest.ErrVerification, "snp.vcek.chain"},
		{"VCEK without stepping v2", genoa, SimOptions{ReportVersion: 2, ProductName: "Genoa"}, nil, ""},
	}
	verdicts := func(t *testing.T) []string {
		var out []string
		for _, c := range cases {
			a := vtAttester(t, c.chain, c.opts)
			r, err := a.Report(vtReportData)
			require.NoError(t, err)
			_, err = vtVerifier(t, c.chain.Roots(), vtPolicy()).VerifyReport(ctx, r, a.VCEK(), nil, vtReportData)
			if c.kind == nil {
				require.NoError(t, err, c.name)
				out = append(out, "accepted")
			} else {
				requireCheck(t, err, c.kind, c.check)
				out = append(out, err.Error())
			}
		}
		return out
	}
	require.NoError(t, flag.CommandLine.Set(name, "false"))
	strict := verdicts(t)
	require.NoError(t, flag.CommandLine.Set(name, "true"))
	require.Equal(t, strict, verdicts(t), "the flag changed a verdict")

	// The flag is live: go-sev-guest itself, given an expected product
	// (as the verifier never does), stops comparing steppings when it is
	// set.
	a := vtAttester(t, milan, SimOptions{ReportVersion: 2, ProductName: "Milan-B0"})
	r, err := a.Report(vtReportData)
	require.NoError(t, err)
	pr, err := abi.ReportToProto(r)
	require.NoError(t, err)
	withExpectation := func() error {
		return verify.SnpAttestation(&spb.Attestation{Report: pr, CertificateChain: &spb.CertificateChain{VcekCert: a.VCEK()}}, &verify.Options{
			TrustedRoots:        milan.Roots().trusted(),
			DisableCertFetching: true,
			Getter:              offlineGetter{},
			Now:                 time.Now(),
			Product:             &spb.SevProduct{Name: spb.SevProduct_SEV_PRODUCT_MILAN, MachineStepping: wrapperspb.UInt32(1)},
		})
	}
	require.NoError(t, withExpectation())
	require.NoError(t, flag.CommandLine.Set(name, "false"))
	require.ErrorContains(t, withExpectation(), "stepping")
}
