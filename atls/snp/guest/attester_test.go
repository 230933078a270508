package guest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	hwMilanFMS = abi.MaskedCpuid1EaxFromSevProduct(&sevsnp.SevProduct{Name: sevsnp.SevProduct_SEV_PRODUCT_MILAN})
	hwGenoaFMS = abi.MaskedCpuid1EaxFromSevProduct(&sevsnp.SevProduct{Name: sevsnp.SevProduct_SEV_PRODUCT_GENOA})
)

// hwReport builds a raw report (unsigned: the attester does not check
// signatures) for key k. Version 3 reports carry fms; version 2 ones
// cannot.
func hwReport(t *testing.T, k signerKey, version, fms uint32, reportData [64]byte) []byte {
	t.Helper()
	chip := k.chipID
	if chip == nil {
		chip = make([]byte, abi.ChipIDSize)
	}
	sig := make([]byte, abi.SignatureSize)
	for i := range abi.EcdsaP384Sha384SignatureSize {
		sig[i] = byte(i) | 1
	}
	r := &sevsnp.Report{
		Version:         version,
		Policy:          1<<17 | 1<<16, // reserved bit, SMT
		SignatureAlgo:   abi.SignEcdsaP384Sha384,
		SignerInfo:      abi.ComposeSignerInfo(abi.SignerInfo{SigningKey: k.signer}),
		FamilyId:        make([]byte, abi.FamilyIDSize),
		ImageId:         make([]byte, abi.ImageIDSize),
		ReportData:      reportData[:],
		Measurement:     bytes.Repeat([]byte{0x4D}, abi.MeasurementSize),
		HostData:        make([]byte, abi.HostDataSize),
		IdKeyDigest:     make([]byte, abi.IDKeyDigestSize),
		AuthorKeyDigest: make([]byte, abi.AuthorKeyDigestSize),
		ReportId:        make([]byte, abi.ReportIDSize),
		ReportIdMa:      make([]byte, abi.ReportIDMASize),
		ChipId:          chip,
		CurrentTcb:      uint64(k.tcb),
		ReportedTcb:     uint64(k.tcb),
		CommittedTcb:    uint64(k.tcb),
		LaunchTcb:       uint64(k.tcb),
		Cpuid1EaxFms:    fms,
		Signature:       sig,
	}
	if version < abi.ReportVersion3 {
		r.Cpuid1EaxFms = 0
	}
	b, err := abi.ReportToAbiBytes(r)
	require.NoError(t, err)
	require.Len(t, b, snp.ReportSize)
	return b
}

type hwEntry struct {
	guid string
	data []byte
}

// hwTable builds a GHCB certificate table.
func hwTable(entries ...hwEntry) []byte {
	var tab abi.CertTable
	for _, e := range entries {
		tab.Entries = append(tab.Entries, abi.CertTableEntry{GUID: uuid.MustParse(e.guid), RawCert: e.data})
	}
	return tab.Marshal()
}

func hwPlatformInfo(t *testing.T, fms uint32) hwEntry {
	t.Helper()
	b, err := (&abi.ExtraPlatformInfo{Size: abi.ExtraPlatformInfoV0Size, Cpuid1Eax: fms}).Marshal()
	require.NoError(t, err)
	return hwEntry{abi.ExtraPlatformInfoGUID, b}
}

func hwReportData(b byte) [64]byte {
	var rd [64]byte
	for i := range rd {
		rd[i] = b + byte(i)
	}
	return rd
}

// hwAttester is an attester around p whose cache uses getter; it never
// reads this machine's CPUID.
func hwAttester(p quoteProvider, opts AttesterOptions) *Attester {
	a := newAttester(p, "fake", opts)
	a.cpuProduct = func() string { return "" }
	return a
}

func hwCheckEvidence(t *testing.T, ev *attest.Evidence, report, cert []byte) {
	t.Helper()
	p, err := snp.ParseEvidence(ev)
	require.NoError(t, err)
	require.Equal(t, report, p.Report)
	require.Equal(t, cert, p.Cert)
	require.Nil(t, p.CRL)
	_, err = ev.MarshalJSON()
	require.NoError(t, err)
}

func TestNewAttesterUnsupportedHere(t *testing.T) {
	for _, p := range []string{"/dev/sev-guest", "/sys/kernel/config/tsm/report"} {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("%s exists; this test is for machines without SEV-SNP", p)
		}
	}
	a, err := NewAttester(AttesterOptions{})
	require.Nil(t, a)
	require.ErrorIs(t, err, attest.ErrUnsupported)
	require.ErrorContains(t, err, "SEV-SNP is not available on this machine (no configfs-tsm report provider and no /dev/sev-guest); use the simulator for development")
}

func TestNewAttesterRejectsBadVMPL(t *testing.T) {
	for _, v := range []int{-1, 4} {
		_, err := NewAttester(AttesterOptions{VMPL: &v})
		require.ErrorIs(t, err, attest.ErrConfig, v)
		require.ErrorContains(t, err, "VMPL", v)
	}
}

func TestAttesterEvidenceFromCertTable(t *testing.T) {
	k := ccKey(t)
	rd := hwReportData(1)
	vcek := ccCert(t, k)
	report := hwReport(t, k, 3, hwMilanFMS, rd)
	raw := append(bytes.Clone(report), hwTable(
		hwEntry{abi.ArkGUID, []byte("ark")},
		hwEntry{abi.AskGUID, []byte("ask")},
		hwEntry{abi.VcekGUID, vcek},
	)...)

	g := &ccFakeGetter{err: errors.New("must not be called")}
	a := hwAttester(nil, AttesterOptions{AllowNetwork: true, Getter: g, CertCacheDir: t.TempDir()})
	ev, err := a.evidence(t.Context(), raw, rd)
	require.NoError(t, err)
	hwCheckEvidence(t, ev, report, vcek)
	require.Zero(t, g.calls())
}

func TestAttesterEvidencePicksVLEK(t *testing.T) {
	k := ccKey(t)
	k.signer = abi.VlekReportSigner
	rd := hwReportData(2)
	vlek := ccCert(t, k)
	vcekKey := ccKey(t)
	report := hwReport(t, k, 3, hwGenoaFMS, rd)
	raw := append(bytes.Clone(report), hwTable(
		hwEntry{abi.VcekGUID, ccCert(t, vcekKey)},
		hwEntry{abi.VlekGUID, vlek},
	)...)
	ev, err := hwAttester(nil, AttesterOptions{}).evidence(t.Context(), raw, rd)
	require.NoError(t, err)
	hwCheckEvidence(t, ev, report, vlek)
}

func TestAttesterEvidenceFallsBackToCache(t *testing.T) {
	genoa := ccKey(t)
	genoa.product = "Genoa"
	milan := ccKey(t)
	stale := milan
	stale.tcb--
	rd := hwReportData(3)

	for name, tc := range map[string]struct {
		k     signerKey
		raw   []byte
		warns bool // the host's certificate was there but rejected
	}{
		// Version 2 reports do not name the product; go-sev-guest's
		// providers add the CPUID when the host has no VCEK.
		"v2, platform info only": {genoa, append(hwReport(t, genoa, 2, 0, rd), hwTable(hwPlatformInfo(t, hwGenoaFMS))...), false},
		"v3, no table":           {milan, hwReport(t, milan, 3, hwMilanFMS, rd), false},
		"v3, empty table":        {milan, append(hwReport(t, milan, 3, hwMilanFMS, rd), make([]byte, 4096)...), false},
		"stale host VCEK":        {milan, append(hwReport(t, milan, 3, hwMilanFMS, rd), hwTable(hwEntry{abi.VcekGUID, ccCert(t, stale)})...), true},
		"garbage host VCEK":      {milan, append(hwReport(t, milan, 3, hwMilanFMS, rd), hwTable(hwEntry{abi.VcekGUID, []byte("junk")})...), true},
	} {
		t.Run(name, func(t *testing.T) {
			want := ccCert(t, tc.k)
			g := &ccFakeGetter{body: want}
			var logs bytes.Buffer
			a := hwAttester(nil, AttesterOptions{
				AllowNetwork: true,
				Getter:       g,
				CertCacheDir: t.TempDir(),
				Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
			})
			ev, err := a.evidence(t.Context(), tc.raw, rd)
			require.NoError(t, err)
			hwCheckEvidence(t, ev, tc.raw[:snp.ReportSize], want)
			require.Equal(t, []string{kds.VCEKCertURL(tc.k.product, tc.k.chipID, tc.k.tcb)}, g.urls)
			if tc.warns {
				require.Contains(t, logs.String(), "unusable")
			}

			// Next time the cache answers.
			_, err = a.evidence(t.Context(), tc.raw, rd)
			require.NoError(t, err)
			require.Equal(t, 1, g.calls())
		})
	}
}

func TestAttesterEvidenceMissingCertIsActionable(t *testing.T) {
	k := ccKey(t)
	rd := hwReportData(4)
	raw := hwReport(t, k, 3, hwMilanFMS, rd)
	g := &ccFakeGetter{body: ccCert(t, k)}
	dir := t.TempDir()
	_, err := hwAttester(nil, AttesterOptions{Getter: g, CertCacheDir: dir}).evidence(t.Context(), raw, rd)
	require.ErrorIs(t, err, attest.ErrConfig)
	require.ErrorContains(t, err, "network access is off")
	require.ErrorContains(t, err, "AllowNetwork")
	require.ErrorContains(t, err, dir)
	require.Zero(t, g.calls())

	// A v2 report from a driver that gave no platform info, on a CPU
	// that is not an SEV-SNP product: the product line is unknown.
	raw = hwReport(t, k, 2, 0, rd)
	_, err = hwAttester(nil, AttesterOptions{Getter: g, AllowNetwork: true}).evidence(t.Context(), raw, rd)
	require.ErrorIs(t, err, attest.ErrConfig)
	require.ErrorContains(t, err, "product line is unknown")
	require.Zero(t, g.calls())
}

func TestAttesterEvidenceRejectsMalformed(t *testing.T) {
	k := ccKey(t)
	rd := hwReportData(5)
	good := hwReport(t, k, 3, hwMilanFMS, rd)
	vcek := ccCert(t, k)

	unsigned := k
	unsigned.signer = abi.NoneReportSigner
	badPolicy := bytes.Clone(good)
	binary.LittleEndian.PutUint64(badPolicy[0x08:], 0) // reserved bit 17 must be 1

	// A table entry whose offset+length wraps around 32 bits: go-sev-guest's
	// own parser would slice out of range.
	overflow := make([]byte, 3*abi.CertTableEntrySize)
	g := uuid.MustParse(abi.VcekGUID)
	copy(overflow, g[:])
	binary.LittleEndian.PutUint32(overflow[16:], 0xFFFFFFF0)
	binary.LittleEndian.PutUint32(overflow[20:], 0x20)

	for name, tc := range map[string]struct {
		raw  []byte
		want string
	}{
		"empty":             {nil, "report is 0 bytes, want 1184"},
		"short":             {good[:snp.ReportSize-1], "want 1184"},
		"longer report":     {append(bytes.Clone(good), bytes.Repeat([]byte{0xAA}, 64)...), "reports of other sizes are not supported"},
		"overflowing table": {append(bytes.Clone(good), overflow...), "spans bytes"},
		"truncated table":   {append(bytes.Clone(good), hwTable(hwEntry{abi.VcekGUID, vcek})[:200]...), "not a certificate table"},
		"unsigned":          {hwReport(t, unsigned, 3, hwMilanFMS, rd), "not signed"},
		"bad policy":        {badPolicy, "malformed attestation report"},
		"other report data": {hwReport(t, k, 3, hwMilanFMS, hwReportData(6)), "does not carry the requested REPORT_DATA"},
	} {
		g := &ccFakeGetter{body: vcek}
		a := hwAttester(nil, AttesterOptions{AllowNetwork: true, Getter: g})
		ev, err := a.evidence(t.Context(), tc.raw, rd)
		require.Nil(t, ev, name)
		require.ErrorContains(t, err, tc.want, name)
		require.Zero(t, g.calls(), name)
	}
}

// hwFakeProvider answers like go-sev-guest's providers: a report for the
// given REPORT_DATA followed by a certificate table. It records the VMPLs
// asked for (-1 for the default) and how many requests overlapped.
type hwFakeProvider struct {
	t     *testing.T
	key   signerKey
	table []byte
	err   error
	panic bool

	mu       sync.Mutex
	levels   []int
	inFlight int
	maxIn    int
}

func (p *hwFakeProvider) quote(rd [64]byte, level int) ([]byte, error) {
	p.mu.Lock()
	p.levels = append(p.levels, level)
	p.inFlight++
	p.maxIn = max(p.maxIn, p.inFlight)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.inFlight--
		p.mu.Unlock()
	}()
	time.Sleep(time.Millisecond) // give overlapping requests a chance
	if p.panic {
		panic("slice bounds out of range")
	}
	if p.err != nil {
		return nil, p.err
	}
	return append(hwReport(p.t, p.key, 3, hwMilanFMS, rd), p.table...), nil
}

func (p *hwFakeProvider) GetRawQuote(rd [64]byte) ([]byte, error) { return p.quote(rd, -1) }

func (p *hwFakeProvider) GetRawQuoteAtLevel(rd [64]byte, vmpl uint) ([]byte, error) {
	return p.quote(rd, int(vmpl))
}

func TestAttesterAttestThroughProvider(t *testing.T) {
	k := ccKey(t)
	vcek := ccCert(t, k)
	p := &hwFakeProvider{t: t, key: k, table: hwTable(hwEntry{abi.VcekGUID, vcek})}

	// Default VMPL, then an explicit one.
	ev, err := hwAttester(p, AttesterOptions{}).Attest(t.Context(), hwReportData(7))
	require.NoError(t, err)
	pe, err := snp.ParseEvidence(ev)
	require.NoError(t, err)
	require.Equal(t, vcek, pe.Cert)
	vmpl := 2
	_, err = hwAttester(p, AttesterOptions{VMPL: &vmpl}).Attest(t.Context(), hwReportData(8))
	require.NoError(t, err)
	require.Equal(t, []int{-1, 2}, p.levels)
}

func TestAttesterAttestSerializesDevice(t *testing.T) {
	k := ccKey(t)
	p := &hwFakeProvider{t: t, key: k, table: hwTable(hwEntry{abi.VcekGUID, ccCert(t, k)})}
	a := hwAttester(p, AttesterOptions{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			_, err := a.Attest(context.Background(), hwReportData(byte(i)))
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	require.Len(t, p.levels, 8)
	require.Equal(t, 1, p.maxIn, "device requests overlapped")
}

func TestAttesterAttestDeviceFailures(t *testing.T) {
	k := ccKey(t)

	p := &hwFakeProvider{t: t, key: k, err: errors.New("firmware busy")}
	_, err := hwAttester(p, AttesterOptions{}).Attest(t.Context(), hwReportData(9))
	require.ErrorContains(t, err, "getting an extended attestation report from fake: firmware busy")

	p = &hwFakeProvider{t: t, key: k, panic: true}
	_, err = hwAttester(p, AttesterOptions{}).Attest(t.Context(), hwReportData(9))
	require.ErrorContains(t, err, "panic getting a report from fake")

	p = &hwFakeProvider{t: t, key: k}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = hwAttester(p, AttesterOptions{}).Attest(ctx, hwReportData(9))
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, p.levels, "a cancelled request must not reach the device")
}
