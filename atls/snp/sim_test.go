package snp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	"github.com/google/go-sev-guest/verify"
	"github.com/stretchr/testify/require"
)

// RSA-4096 key generation takes seconds, more under the race detector, so
// each test binary makes one chain per product line and shares it. Only
// the Milan chain has keys of its own: the Genoa chain and the spare
// "Milan-other" chain (an untrusted simulator) certify the same two keys
// in swapped roles, so that Milan-other's ARK key differs from Milan's.
var simTestChains = sync.OnceValues(func() (map[string]*SimChain, error) {
	milan, err := NewSimChain("Milan")
	if err != nil {
		return nil, err
	}
	genoa, err := newSimChain("Genoa", milan.askKey, milan.arkKey)
	if err != nil {
		return nil, err
	}
	other, err := newSimChain("Milan", milan.askKey, milan.arkKey)
	if err != nil {
		return nil, err
	}
	turin, err := newSimChain("Turin", milan.askKey, milan.arkKey)
	if err != nil {
		return nil, err
	}
	return map[string]*SimChain{"Milan": milan, "Genoa": genoa, "Turin": turin, "Milan-other": other}, nil
})

func testSimChain(t *testing.T, name string) *SimChain {
	t.Helper()
	chains, err := simTestChains()
	require.NoError(t, err)
	c, ok := chains[name]
	require.True(t, ok, "no test chain %q", name)
	return c
}

// goSevGuestVerify runs go-sev-guest's verifier on a raw report and VCEK,
// offline, with roots as the only trusted roots.
func goSevGuestVerify(report, vcek []byte, roots *Roots) error {
	pr, err := abi.ReportToProto(report)
	if err != nil {
		return err
	}
	att := &spb.Attestation{Report: pr, CertificateChain: &spb.CertificateChain{VcekCert: vcek}}
	return verify.SnpAttestation(att, &verify.Options{
		TrustedRoots:        roots.trusted(),
		DisableCertFetching: true,
		Now:                 time.Now(),
	})
}

// goSevGuestValidate runs go-sev-guest's policy validation.
func goSevGuestValidate(report, vcek []byte, opts *validate.Options) error {
	pr, err := abi.ReportToProto(report)
	if err != nil {
		return err
	}
	att := &spb.Attestation{Report: pr, CertificateChain: &spb.CertificateChain{VcekCert: vcek}}
	return validate.SnpAttestation(att, opts)
}

// pinnedOptions are validation options that pin what the simulator was
// asked to put in the report.
func pinnedOptions(o SimOptions, reportData [64]byte) *validate.Options {
	vmpl := int(o.VMPL)
	return &validate.Options{
		GuestPolicy:      abi.SnpPolicy{SMT: true},
		ReportData:       reportData[:],
		Measurement:      o.Measurement[:],
		HostData:         o.HostData[:],
		ChipID:           o.ChipID[:],
		ReportID:         o.ReportID[:],
		VMPL:             &vmpl,
		MinimumTCB:       kds.DecomposeTCBVersion(kds.TCBVersion(o.TCB)),
		MinimumLaunchTCB: kds.DecomposeTCBVersion(kds.TCBVersion(o.LaunchTCB)),
		MinimumBuild:     o.CurrentVersion[2],
		MinimumVersion:   uint16(o.CurrentVersion[0])<<8 | uint16(o.CurrentVersion[1]),
		PlatformInfo:     &abi.SnpPlatformInfo{SMTEnabled: true},
	}
}

func TestSimAttestationVerifies(t *testing.T) {
	var measurement [48]byte
	var hostData [32]byte
	copy(measurement[:], "simulated launch measurement")
	copy(hostData[:], "host data")
	for _, product := range []string{"Milan", "Genoa"} {
		for _, version := range []uint32{2, 3, 5} {
			t.Run(fmt.Sprintf("%s/v%d", product, version), func(t *testing.T) {
				chain := testSimChain(t, product)
				a, err := NewSimAttester(chain, SimOptions{
					ReportVersion: version,
					Measurement:   measurement,
					HostData:      hostData,
				})
				require.NoError(t, err)
				var reportData [64]byte
				copy(reportData[:], "bound to a TLS key")
				ev, err := a.Attest(context.Background(), reportData)
				require.NoError(t, err)
				p, err := ParseEvidence(ev)
				require.NoError(t, err)
				require.Len(t, p.Report, ReportSize)
				require.Nil(t, p.CRL)

				pr, err := abi.ReportToProto(p.Report)
				require.NoError(t, err)
				require.Equal(t, version, pr.Version)
				if version >= 3 {
					require.Equal(t, product, kds.ProductLineFromFms(pr.Cpuid1EaxFms))
				} else {
					require.Zero(t, pr.Cpuid1EaxFms)
				}

				require.NoError(t, goSevGuestVerify(p.Report, p.Cert, chain.Roots()))
				opts := pinnedOptions(a.Options(), reportData)
				require.NoError(t, goSevGuestValidate(p.Report, p.Cert, opts))

				// Other report data fails the pinned validation.
				wrongData := reportData
				wrongData[63] ^= 1
				require.Error(t, goSevGuestValidate(p.Report, p.Cert, pinnedOptions(a.Options(), wrongData)))

				// Real AMD roots do not accept a simulated chain, nor does
				// another simulated chain of the same product line.
				const untrusted = "could not be verified by any trusted roots"
				require.ErrorContains(t, goSevGuestVerify(p.Report, p.Cert, AMDRoots()), untrusted)
				require.ErrorContains(t, goSevGuestVerify(p.Report, p.Cert, testSimChain(t, "Milan-other").Roots()), untrusted)

				// A one-byte change in any field of the signed part breaks
				// the signature. (A change in a reserved byte, such as the
				// last signed one, already fails parsing.)
				for _, off := range []int{0x04, 0x38, 0x50, 0x90, 0x140, 0x180, 0x1A0, 0x1F7} {
					bad := bytes.Clone(p.Report)
					bad[off] ^= 0x01
					require.ErrorContains(t, goSevGuestVerify(bad, p.Cert, chain.Roots()), "signature", "offset 0x%x", off)
				}
				bad := bytes.Clone(p.Report)
				bad[0x29F] ^= 0x01
				require.Error(t, goSevGuestVerify(bad, p.Cert, chain.Roots()))

				// SignReport makes the tampered report authentic again, so
				// only policy catches it.
				bad = bytes.Clone(p.Report)
				bad[0x90] ^= 0x01
				require.NoError(t, a.SignReport(bad))
				require.NoError(t, goSevGuestVerify(bad, p.Cert, chain.Roots()))
				require.ErrorContains(t, goSevGuestValidate(bad, p.Cert, opts), "MEASUREMENT")
			})
		}
	}
}

func TestSimDefaults(t *testing.T) {
	for product, want := range map[string]struct {
		tcb     uint64
		version [3]uint8
		fms     uint32
	}{
		"Milan": {0xdb18000000000004, [3]uint8{1, 55, 29}, 0x00a00f11},
		"Genoa": {0x541700000000000a, [3]uint8{1, 55, 40}, 0x00a10f11},
	} {
		t.Run(product, func(t *testing.T) {
			chain := testSimChain(t, product)
			a, err := NewSimAttester(chain, SimOptions{})
			require.NoError(t, err)
			o := a.Options()
			require.Equal(t, uint32(3), o.ReportVersion)
			require.Equal(t, uint8(1), o.Stepping)
			require.Equal(t, product+"-B1", o.ProductName)
			require.Equal(t, uint64(0x30000), o.GuestPolicy)
			require.Equal(t, uint64(1), o.PlatformInfo)
			require.Equal(t, uint32(1), o.SignatureAlgo)
			require.Equal(t, want.tcb, o.TCB)
			for _, tcb := range []uint64{o.CurrentTCB, o.CommittedTCB, o.LaunchTCB, o.VCEKTCB} {
				require.Equal(t, want.tcb, tcb)
			}
			require.Equal(t, want.version, o.CurrentVersion)
			require.Equal(t, want.version, o.CommittedVersion)
			require.NotEqual(t, [64]byte{}, o.ChipID)
			require.NotEqual(t, [32]byte{}, o.ReportID)
			require.Equal(t, bytes.Repeat([]byte{0xff}, 32), o.ReportIDMA[:])

			// Random identities differ between attesters.
			b, err := NewSimAttester(chain, SimOptions{})
			require.NoError(t, err)
			require.NotEqual(t, o.ChipID, b.Options().ChipID)
			require.NotEqual(t, o.ReportID, b.Options().ReportID)

			report, err := a.Report([64]byte{})
			require.NoError(t, err)
			pr, err := abi.ReportToProto(report)
			require.NoError(t, err)
			require.Equal(t, want.fms, pr.Cpuid1EaxFms)
			require.Equal(t, o.ChipID[:], pr.ChipId)
			require.Equal(t, o.ReportID[:], pr.ReportId)
			require.Equal(t, want.tcb, pr.ReportedTcb)
			require.Equal(t, uint32(want.version[1]), pr.CurrentMinor)
			info, err := abi.ParseSignerInfo(pr.SignerInfo)
			require.NoError(t, err)
			require.Equal(t, abi.SignerInfo{SigningKey: abi.VcekReportSigner}, info)

			// Successive reports of one attester differ only in their
			// report data and signature.
			again, err := a.Report([64]byte{})
			require.NoError(t, err)
			require.Equal(t, abi.SignedComponent(report), abi.SignedComponent(again))
		})
	}
}

func TestSimVCEKProfile(t *testing.T) {
	chain := testSimChain(t, "Milan")
	var chipID [64]byte
	chipID[0], chipID[63] = 0xC0, 0xDE
	const tcb = 0xdb18000000000004
	der, key, err := chain.IssueVCEK(chipID, tcb)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	require.True(t, key.PublicKey.Equal(cert.PublicKey))

	require.Equal(t, 3, cert.Version)
	require.Equal(t, x509.SHA384WithRSAPSS, cert.SignatureAlgorithm)
	require.Equal(t, "SEV-VCEK", cert.Subject.CommonName)
	require.Equal(t, "SEV-Milan", cert.Issuer.CommonName)
	require.Equal(t, []string{"Santa Clara"}, cert.Subject.Locality)
	require.NoError(t, cert.CheckSignatureFrom(chain.ASK))
	require.Empty(t, cert.AuthorityKeyId, "real VCEKs have no authority key ID")
	require.WithinDuration(t, time.Now().Add(-time.Hour).AddDate(7, 0, 0), cert.NotAfter, time.Minute)

	exts, err := kds.VcekCertificateExtensions(cert)
	require.NoError(t, err)
	require.Equal(t, "Milan-B1", exts.ProductName)
	require.Equal(t, chipID[:], exts.HWID)
	require.Equal(t, kds.TCBVersion(tcb), exts.TCBVersion)
	// The KDS writes the HWID without an ASN.1 tag.
	for _, e := range cert.Extensions {
		if e.Id.Equal(kds.OidHwid) {
			require.Equal(t, chipID[:], e.Value)
		}
	}

	// ARK and ASK follow AMD's profile.
	for _, c := range []*x509.Certificate{chain.ARK, chain.ASK} {
		require.Equal(t, x509.SHA384WithRSAPSS, c.SignatureAlgorithm)
		require.True(t, c.IsCA)
		require.Equal(t, []string{"https://kdsintf.amd.com/vcek/v1/Milan/crl"}, c.CRLDistributionPoints)
		require.Equal(t, []string{"Advanced Micro Devices"}, c.Subject.Organization)
		require.Equal(t, []string{"Engineering"}, c.Subject.OrganizationalUnit)
		require.Equal(t, []string{"CA"}, c.Subject.Province)
		require.Equal(t, []string{"US"}, c.Subject.Country)
	}
	require.Equal(t, "ARK-Milan", chain.ARK.Subject.CommonName)
	require.Equal(t, "SEV-Milan", chain.ASK.Subject.CommonName)
	require.NoError(t, chain.ARK.CheckSignatureFrom(chain.ARK))
	require.NoError(t, chain.ASK.CheckSignatureFrom(chain.ARK))

	// An SPL above 127 is not a TCB the KDS certifies.
	_, _, err = chain.IssueVCEK(chipID, 0x0080000000000000)
	require.ErrorContains(t, err, "snp: simulator")
}

func TestSimRoots(t *testing.T) {
	chain := testSimChain(t, "Genoa")
	r := chain.Roots()
	require.True(t, r.Simulated)
	require.Equal(t, []string{"Genoa"}, r.ProductLines())
	// The roots survive a PEM round trip through ParseRootsPEM.
	r2, err := ParseRootsPEM(r.PEM(), true)
	require.NoError(t, err)
	require.Equal(t, r.PEM(), r2.PEM())
	// AMD's roots never include a simulated ARK.
	require.False(t, AMDRoots().Simulated)
	require.NotContains(t, string(AMDRoots().PEM()), string(r.PEM()))
}

func TestSimChainPEM(t *testing.T) {
	chain := testSimChain(t, "Milan")
	data, err := chain.MarshalPEM()
	require.NoError(t, err)

	loaded, err := ParseSimChainPEM(data)
	require.NoError(t, err)
	require.Equal(t, "Milan", loaded.Product)
	require.True(t, chain.ARK.Equal(loaded.ARK))
	require.True(t, chain.ASK.Equal(loaded.ASK))

	// A chain reloaded elsewhere issues VCEKs that the original roots
	// accept.
	a, err := NewSimAttester(loaded, SimOptions{})
	require.NoError(t, err)
	report, err := a.Report([64]byte{1})
	require.NoError(t, err)
	require.NoError(t, goSevGuestVerify(report, a.VCEK(), chain.Roots()))

	// The marshaled chain is also usable as roots (the keys are skipped).
	roots, err := ParseRootsPEM(data, true)
	require.NoError(t, err)
	require.NoError(t, goSevGuestVerify(report, a.VCEK(), roots))

	// Blocks in any order.
	blocks := pemBlocks(t, data)
	require.Len(t, blocks, 4)
	var reordered []byte
	for _, i := range []int{3, 1, 2, 0} {
		reordered = append(reordered, pem.EncodeToMemory(blocks[i])...)
	}
	_, err = ParseSimChainPEM(reordered)
	require.NoError(t, err)

	other, err := testSimChain(t, "Milan-other").MarshalPEM()
	require.NoError(t, err)
	otherBlocks := pemBlocks(t, other)
	unrelated, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	unrelatedDER, err := x509.MarshalPKCS8PrivateKey(unrelated)
	require.NoError(t, err)
	unrelatedKey := &pem.Block{Type: "PRIVATE KEY", Bytes: unrelatedDER}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	require.NoError(t, err)
	encode := func(bs ...*pem.Block) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, pem.EncodeToMemory(b)...)
		}
		return out
	}
	for name, bad := range map[string][]byte{
		"unrelated ASK key":    encode(blocks[0], blocks[1], blocks[2], unrelatedKey),
		"unrelated ARK key":    encode(blocks[0], blocks[1], unrelatedKey, blocks[3]),
		"ARK key twice":        encode(blocks[0], blocks[1], blocks[2], blocks[2]),
		"ECDSA key":            encode(blocks[0], blocks[1], blocks[2], &pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}),
		"ASK of another chain": encode(blocks[0], otherBlocks[1], blocks[2], otherBlocks[3]),
		"ASK of a Genoa chain": encode(blocks[0], genoaBlocks(t)[1], blocks[2], blocks[3]),
		"no ASK key":           encode(blocks[0], blocks[1], blocks[2]),
		"no ARK":               encode(blocks[1], blocks[2], blocks[3]),
		"three keys":           encode(blocks[0], blocks[1], blocks[2], blocks[3], blocks[3]),
		"two ARKs":             encode(blocks[0], blocks[0], blocks[1], blocks[2], blocks[3]),
		"unknown block":        encode(blocks[0], blocks[1], blocks[2], blocks[3], &pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{0}}),
		"trailing garbage":     append(bytes.Clone(data), "garbage"...),
		"empty":                nil,
	} {
		_, err := ParseSimChainPEM(bad)
		require.ErrorContains(t, err, "snp: simulator", name)
	}
}

func genoaBlocks(t *testing.T) []*pem.Block {
	t.Helper()
	data, err := testSimChain(t, "Genoa").MarshalPEM()
	require.NoError(t, err)
	return pemBlocks(t, data)
}

func pemBlocks(t *testing.T, data []byte) []*pem.Block {
	t.Helper()
	var out []*pem.Block
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		out = append(out, b)
	}
}

func TestSimOptionsVariants(t *testing.T) {
	milan := testSimChain(t, "Milan")
	tcb := kds.TCBVersion(0xdb18000000000004)
	higher := uint64(0xdc18000000000004) // newer microcode
	var reportData [64]byte

	for _, tc := range []struct {
		name  string
		opts  SimOptions
		check func(t *testing.T, o SimOptions, pr *spb.Report)
		// tweak adjusts the pinned validation options; validateErr is
		// the expected validation failure, "" for success.
		tweak       func(v *validate.Options)
		verifyErr   string
		validateErr string
	}{
		{
			name: "masked chip ID",
			opts: SimOptions{MaskChipID: true},
			check: func(t *testing.T, o SimOptions, pr *spb.Report) {
				require.Equal(t, make([]byte, 64), pr.ChipId)
				info, err := abi.ParseSignerInfo(pr.SignerInfo)
				require.NoError(t, err)
				require.True(t, info.MaskChipKey)
			},
			tweak: func(v *validate.Options) { v.ChipID = nil },
		},
		{
			name: "author key",
			opts: SimOptions{AuthorKeyEn: true, AuthorKeyDigest: [48]byte{1}, IDKeyDigest: [48]byte{2}},
			check: func(t *testing.T, o SimOptions, pr *spb.Report) {
				info, err := abi.ParseSignerInfo(pr.SignerInfo)
				require.NoError(t, err)
				require.True(t, info.AuthorKeyEn)
				require.Equal(t, o.AuthorKeyDigest[:], pr.AuthorKeyDigest)
			},
			tweak: func(v *validate.Options) {
				v.RequireAuthorKey = true
				v.TrustedAuthorKeyHashes = [][]byte{append([]byte{1}, make([]byte, 47)...)}
			},
		},
		{
			name: "fields",
			opts: SimOptions{VMPL: 2, GuestSVN: 7, FamilyID: [16]byte{3}, ImageID: [16]byte{4}, ReportIDMA: [32]byte{5}},
			check: func(t *testing.T, o SimOptions, pr *spb.Report) {
				require.Equal(t, uint32(2), pr.Vmpl)
				require.Equal(t, uint32(7), pr.GuestSvn)
				require.Equal(t, o.FamilyID[:], pr.FamilyId)
				require.Equal(t, o.ImageID[:], pr.ImageId)
				require.Equal(t, o.ReportIDMA[:], pr.ReportIdMa)
			},
			tweak: func(v *validate.Options) { v.MinimumGuestSvn = 7; v.ImageID = append([]byte{4}, make([]byte, 15)...) },
		},
		{
			name: "debug policy",
			opts: SimOptions{GuestPolicy: abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true, Debug: true})},
			// The default validation options forbid debugging.
			validateErr: "debug",
		},
		{
			name: "provisional firmware",
			opts: SimOptions{CurrentTCB: higher, CurrentVersion: [3]uint8{1, 55, 30}, CommittedVersion: [3]uint8{1, 55, 29}},
			check: func(t *testing.T, o SimOptions, pr *spb.Report) {
				require.Equal(t, higher, pr.CurrentTcb)
				require.Equal(t, uint64(tcb), pr.ReportedTcb)
				require.Equal(t, uint64(tcb), pr.CommittedTcb)
				require.Equal(t, uint32(30), pr.CurrentBuild)
				require.Equal(t, uint32(29), pr.CommittedBuild)
			},
			validateErr: "COMMITTED_TCB",
		},
		{
			name:  "provisional firmware permitted",
			opts:  SimOptions{CurrentTCB: higher, CurrentVersion: [3]uint8{1, 55, 30}, CommittedVersion: [3]uint8{1, 55, 29}},
			tweak: func(v *validate.Options) { v.PermitProvisionalFirmware = true },
		},
		{
			name:        "VCEK for another TCB",
			opts:        SimOptions{CurrentTCB: higher, VCEKTCB: higher},
			tweak:       func(v *validate.Options) { v.PermitProvisionalFirmware = true },
			validateErr: "TCB of the V[CL]EK certificate",
		},
		{
			name: "v5 mitigation vectors",
			opts: SimOptions{ReportVersion: 5, LaunchMitVector: 0x3, CurrentMitVector: 0x7},
			check: func(t *testing.T, o SimOptions, pr *spb.Report) {
				require.Equal(t, uint64(3), pr.LaunchMitVector)
				require.Equal(t, uint64(7), pr.CurrentMitVector)
			},
			tweak: func(v *validate.Options) { v.MinimumCurrentMitigationVector = 0x4 },
		},
		{
			name:        "v5 mitigation vector missing",
			opts:        SimOptions{ReportVersion: 5, CurrentMitVector: 0x3},
			tweak:       func(v *validate.Options) { v.MinimumCurrentMitigationVector = 0x4 },
			validateErr: "mitigation vector",
		},
		{
			name: "Milan-B0 part",
			opts: SimOptions{ReportVersion: 2, ProductName: "Milan-B0"},
			check: func(t *testing.T, o SimOptions, pr *spb.Report) {
				require.Equal(t, uint8(0), o.Stepping)
			},
		},
		{
			name: "stepping 0 in a v3 report",
			opts: SimOptions{ProductName: "Milan-B0"},
			check: func(t *testing.T, o SimOptions, pr *spb.Report) {
				require.Equal(t, uint32(0x00a00f10), pr.Cpuid1EaxFms)
			},
		},
		{
			name:      "unknown product name in a v2 report",
			opts:      SimOptions{ReportVersion: 2, ProductName: "Milan"},
			verifyErr: "unknown product name",
		},
		{
			name:      "wrong signature algorithm",
			opts:      SimOptions{SignatureAlgo: 2},
			verifyErr: "algorithm",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewSimAttester(milan, tc.opts)
			require.NoError(t, err)
			report, err := a.Report(reportData)
			require.NoError(t, err)
			if tc.opts.SignatureAlgo > 1 {
				// abi.ReportToProto refuses nothing here, but the
				// verifier refuses the algorithm.
				err := goSevGuestVerify(report, a.VCEK(), milan.Roots())
				require.ErrorContains(t, err, tc.verifyErr)
				return
			}
			pr, err := abi.ReportToProto(report)
			require.NoError(t, err)
			if tc.check != nil {
				tc.check(t, a.Options(), pr)
			}
			err = goSevGuestVerify(report, a.VCEK(), milan.Roots())
			if tc.verifyErr != "" {
				require.ErrorContains(t, err, tc.verifyErr)
				return
			}
			require.NoError(t, err)
			v := pinnedOptions(a.Options(), reportData)
			if tc.tweak != nil {
				tc.tweak(v)
			}
			err = goSevGuestValidate(report, a.VCEK(), v)
			if tc.validateErr != "" {
				require.ErrorContains(t, err, tc.validateErr)
			} else {
				require.NoError(t, err)
			}
		})
	}
}

func TestSimOptionsRejected(t *testing.T) {
	chain := testSimChain(t, "Genoa")
	for name, o := range map[string]SimOptions{
		"version 1":                 {ReportVersion: 1},
		"version 4":                 {ReportVersion: 4},
		"version 6":                 {ReportVersion: 6},
		"stepping 16":               {Stepping: 16},
		"unnamed stepping":          {Stepping: 9},
		"policy without bit 17":     {GuestPolicy: 1 << 16},
		"VMPL 4":                    {VMPL: 4},
		"mitigation vector in v3":   {ReportVersion: 3, CurrentMitVector: 1},
		"VCEK TCB SPL out of range": {VCEKTCB: 0x00ff000000000000},
	} {
		_, err := NewSimAttester(chain, o)
		require.ErrorContains(t, err, "snp: simulator", name)
	}
	_, err := NewSimAttester(nil, SimOptions{})
	require.Error(t, err)
	_, err = NewSimChain("Rome")
	require.ErrorContains(t, err, "Rome")

	a, err := NewSimAttester(chain, SimOptions{})
	require.NoError(t, err)
	require.Error(t, a.SignReport(make([]byte, ReportSize-1)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = a.Attest(ctx, [64]byte{})
	require.ErrorIs(t, err, context.Canceled)
}

func TestSimAttesterConcurrent(t *testing.T) {
	chain := testSimChain(t, "Milan")
	a, err := NewSimAttester(chain, SimOptions{})
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			var rd [64]byte
			rd[0] = byte(i)
			ev, err := a.Attest(context.Background(), rd)
			if err != nil {
				errs[i] = err
				return
			}
			p, err := ParseEvidence(ev)
			if err != nil {
				errs[i] = err
				return
			}
			if !bytes.Equal(p.Report[0x50:0x90], rd[:]) {
				errs[i] = fmt.Errorf("report %d carries the wrong report data", i)
				return
			}
			errs[i] = goSevGuestVerify(p.Report, p.Cert, chain.Roots())
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
}

// The KDS names Genoa VCEKs "Genoa", without the stepping: go-sev-guest
// accepts them with v3+ reports, which name the product in CPUID, only.
func TestSimGenoaKDSProductName(t *testing.T) {
	chain := testSimChain(t, "Genoa")
	for version, wantErr := range map[uint32]string{3: "", 2: "unknown product name"} {
		a, err := NewSimAttester(chain, SimOptions{ReportVersion: version, ProductName: "Genoa"})
		require.NoError(t, err)
		require.Equal(t, uint8(1), a.Options().Stepping)
		report, err := a.Report([64]byte{})
		require.NoError(t, err)
		err = goSevGuestVerify(report, a.VCEK(), chain.Roots())
		if wantErr == "" {
			require.NoError(t, err)
		} else {
			require.ErrorContains(t, err, wantErr)
		}
	}
}
