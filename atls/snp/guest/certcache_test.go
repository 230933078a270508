package guest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ccFakeGetter stands in for AMD KDS: it records the URLs asked for and
// answers with body (or err).
type ccFakeGetter struct {
	mu   sync.Mutex
	urls []string
	body []byte
	err  error
}

func (g *ccFakeGetter) Get(url string) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.urls = append(g.urls, url)
	return g.body, g.err
}

func (g *ccFakeGetter) calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.urls)
}

// ccKey is a Milan VCEK key with a recognizable chip ID and a realistic TCB.
func ccKey(t *testing.T) signerKey {
	t.Helper()
	tcb, err := kds.ComposeTCBParts(kds.TCBParts{BlSpl: 3, TeeSpl: 0, SnpSpl: 8, UcodeSpl: 115})
	require.NoError(t, err)
	chip := make([]byte, abi.ChipIDSize)
	for i := range chip {
		chip[i] = byte(0xC0 + i)
	}
	return signerKey{signer: abi.VcekReportSigner, product: "Milan", chipID: chip, tcb: tcb}
}

// ccCert makes a self-signed P-384 certificate with AMD's KDS extensions
// for k, shaped like a VCEK (HWID) or a VLEK (CSP_ID).
func ccCert(t *testing.T, k signerKey) []byte {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	u8 := func(v uint8) []byte {
		b, err := asn1.Marshal(int(v))
		require.NoError(t, err)
		return b
	}
	ia5 := func(s string) []byte {
		b, err := asn1.MarshalWithParams(s, "ia5")
		require.NoError(t, err)
		return b
	}
	p := kds.DecomposeTCBVersion(k.tcb)
	exts := []pkix.Extension{
		{Id: kds.OidStructVersion, Value: u8(1)},
		{Id: kds.OidProductName1, Value: ia5(k.product + "-B0")},
		{Id: kds.OidBlSpl, Value: u8(p.BlSpl)},
		{Id: kds.OidTeeSpl, Value: u8(p.TeeSpl)},
		{Id: kds.OidSnpSpl, Value: u8(p.SnpSpl)},
		{Id: kds.OidSpl4, Value: u8(p.Spl4)},
		{Id: kds.OidSpl5, Value: u8(p.Spl5)},
		{Id: kds.OidSpl6, Value: u8(p.Spl6)},
		{Id: kds.OidSpl7, Value: u8(p.Spl7)},
		{Id: kds.OidUcodeSpl, Value: u8(p.UcodeSpl)},
	}
	cn := "SEV-VCEK"
	if k.signer == abi.VlekReportSigner {
		cn = "SEV-VLEK"
		exts = append(exts, pkix.Extension{Id: kds.OidCspID, Value: ia5("test-csp")})
	} else {
		// KDS puts the raw 64 bytes, without an ASN.1 tag.
		exts = append(exts, pkix.Extension{Id: kds.OidHwid, Value: k.chipID})
	}
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(1),
		Subject:         pkix.Name{CommonName: cn},
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(time.Hour),
		ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	require.NoError(t, err)
	return der
}

func ccWrite(t *testing.T, dir string, k signerKey, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, k.fileName())
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

func TestCertCacheHitAvoidsGetter(t *testing.T) {
	k := ccKey(t)
	dir := t.TempDir()
	der := ccCert(t, k)
	ccWrite(t, dir, k, der)
	g := &ccFakeGetter{err: errors.New("must not be called")}
	c := newVCEKCache(dir, true, g, nil)

	got, err := c.get(t.Context(), k)
	require.NoError(t, err)
	require.Equal(t, der, got)
	require.Zero(t, g.calls())
}

func TestCertCacheNoNetworkNeverCallsGetter(t *testing.T) {
	k := ccKey(t)
	for name, dir := range map[string]string{"empty dir": t.TempDir(), "no dir": ""} {
		g := &ccFakeGetter{body: ccCert(t, k)}
		c := newVCEKCache(dir, false, g, nil)
		_, err := c.get(t.Context(), k)
		require.Error(t, err, name)
		require.ErrorIs(t, err, attest.ErrConfig, name)
		require.Equal(t, "snp.vcek", attest.FailedCheck(err), name)
		// The message names the fixes: network, or the file to create and
		// where its content comes from.
		require.ErrorContains(t, err, "AllowNetwork", name)
		require.ErrorContains(t, err, k.fileName(), name)
		require.ErrorContains(t, err, "https://kdsintf.amd.com/vcek/v1/Milan/", name)
		require.Zero(t, g.calls(), name)
	}
}

// A Turin VCEK is fetched by its 8-byte hwID and the Turin TCB layout
// (fmcSPL first), and checked against the report: the real Turin VCEK of
// ../testdata/oak.
func TestCertCacheFetchesTurinVCEK(t *testing.T) {
	der, err := os.ReadFile("../testdata/oak/turin_oc_vcek.der")
	require.NoError(t, err)
	chip := make([]byte, abi.ChipIDSize)
	copy(chip, []byte{0x3b, 0x42, 0x09, 0x2f, 0x69, 0xc6, 0x56, 0xd3})
	k := signerKey{signer: abi.VcekReportSigner, product: "Turin", chipID: chip, tcb: 0x4700000002000100}
	g := &ccFakeGetter{body: der}
	got, err := newVCEKCache(t.TempDir(), true, g, nil).get(t.Context(), k)
	require.NoError(t, err)
	require.Equal(t, der, got)
	require.Equal(t, []string{"https://kdsintf.amd.com/vcek/v1/Turin/3b42092f69c656d3?fmcSPL=0&blSPL=1&teeSPL=0&snpSPL=2&ucodeSPL=71"}, g.urls)

	// The same certificate for another TCB or another chip is refused
	// (and not stored).
	for name, k2 := range map[string]signerKey{
		"tcb":  {signer: abi.VcekReportSigner, product: "Turin", chipID: chip, tcb: 0x4700000003000100},
		"chip": {signer: abi.VcekReportSigner, product: "Turin", chipID: append([]byte{0x3c}, chip[1:]...), tcb: 0x4700000002000100},
	} {
		dir := t.TempDir()
		_, err := newVCEKCache(dir, true, &ccFakeGetter{body: der}, nil).get(t.Context(), k2)
		require.Error(t, err, name)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Empty(t, entries, name)
	}
}

func TestCertCacheFetchesKDSURLAndStores(t *testing.T) {
	k := ccKey(t)
	dir := filepath.Join(t.TempDir(), "cache") // created on first store
	der := ccCert(t, k)
	g := &ccFakeGetter{body: der}
	c := newVCEKCache(dir, true, g, nil)

	got, err := c.get(t.Context(), k)
	require.NoError(t, err)
	require.Equal(t, der, got)
	require.Equal(t, []string{kds.VCEKCertURL("Milan", k.chipID, k.tcb)}, g.urls)
	// Spelled out, so that a change in go-sev-guest's URL shape shows.
	require.Equal(t, "https://kdsintf.amd.com/vcek/v1/Milan/"+
		"c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"+
		"e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"+
		"?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115", g.urls[0])

	// Stored atomically, 0600, in a 0700 directory, no temporary left.
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, k.fileName(), entries[0].Name())
	fi, err := entries[0].Info()
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), di.Mode().Perm())
	onDisk, err := os.ReadFile(filepath.Join(dir, k.fileName()))
	require.NoError(t, err)
	require.Equal(t, der, onDisk)

	// The same cache answers from memory, a new one from disk.
	_, err = c.get(t.Context(), k)
	require.NoError(t, err)
	_, err = newVCEKCache(dir, true, g, nil).get(t.Context(), k)
	require.NoError(t, err)
	require.Equal(t, 1, g.calls())

	// A new TCB is a new VCEK: a new file and a new download.
	k2 := k
	k2.tcb++
	g.body = ccCert(t, k2)
	_, err = c.get(t.Context(), k2)
	require.NoError(t, err)
	require.Equal(t, 2, g.calls())
	require.NotEqual(t, k.fileName(), k2.fileName())
}

func TestCertCacheRejectsCorruptFile(t *testing.T) {
	k := ccKey(t)
	other := k
	other.chipID = bytes.Repeat([]byte{0x42}, abi.ChipIDSize)
	staleTCB := k
	staleTCB.tcb--
	good := ccCert(t, k)
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"garbage":    {[]byte("not a certificate"), "not a DER X.509 certificate"},
		"truncated":  {good[:len(good)/2], "not a DER X.509 certificate"},
		"empty":      {nil, "empty certificate"},
		"oversized":  {make([]byte, snp.MaxCertSize+1), "more than the 8192"},
		"pem":        {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good}), "PEM, not DER"},
		"other chip": {ccCert(t, other), "is for chip 4242"},
		"stale tcb":  {ccCert(t, staleTCB), "firmware update"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := ccWrite(t, dir, k, tc.data)

			// Without network: a clear error naming the file.
			g := &ccFakeGetter{body: good}
			_, err := newVCEKCache(dir, false, g, nil).get(t.Context(), k)
			require.ErrorIs(t, err, attest.ErrConfig)
			require.ErrorContains(t, err, path)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, "replace the unusable cached file")
			require.Zero(t, g.calls())

			// With network: downloaded again and the file replaced.
			got, err := newVCEKCache(dir, true, g, nil).get(t.Context(), k)
			require.NoError(t, err)
			require.Equal(t, good, got)
			require.Equal(t, 1, g.calls())
			onDisk, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, good, onDisk)
		})
	}
}

func TestCertCacheRejectsBadDownload(t *testing.T) {
	k := ccKey(t)
	dir := t.TempDir()
	for name, g := range map[string]*ccFakeGetter{
		"garbage":    {body: []byte("<html>rate limited</html>")},
		"wrong chip": {body: ccCert(t, signerKey{signer: k.signer, product: k.product, chipID: make([]byte, 64), tcb: k.tcb})},
		"error":      {err: errors.New("connection refused")},
	} {
		_, err := newVCEKCache(dir, true, g, nil).get(t.Context(), k)
		require.Error(t, err, name)
		require.ErrorContains(t, err, "kdsintf.amd.com", name)
		require.Equal(t, 1, g.calls(), name)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing unusable is stored")
}

func TestCertCacheNeverFetchesWhatKDSDoesNotServe(t *testing.T) {
	base := ccKey(t)
	vlek := base
	vlek.signer = abi.VlekReportSigner
	vlek.chipID = nil
	masked := base
	masked.chipID = make([]byte, abi.ChipIDSize)
	unknown := base
	unknown.product = ""
	traversal := base
	traversal.product = "../../etc"
	turin := base
	turin.product = "Turin" // a CHIP_ID of 64 bytes, no 8-byte hwID
	turin.tcb = 0x4700000002000100
	for name, tc := range map[string]struct {
		k    signerKey
		want string
	}{
		"vlek":              {vlek, "VLEK certificates only to the cloud provider"},
		"masked chip":       {masked, "MASK_CHIP_ID"},
		"unknown product":   {unknown, "product line is unknown"},
		"bad product":       {traversal, "unsupported product line"},
		"turin":             {turin, "8-byte hardware ID"},
		"unsigned":          {signerKey{signer: abi.NoneReportSigner, product: "Milan"}, "has no certificate"},
		"short chip id":     {signerKey{signer: abi.VcekReportSigner, product: "Milan", chipID: []byte{1}}, "CHIP_ID is 1 bytes"},
		"reserved signer 3": {signerKey{signer: 3, product: "Genoa"}, "has no certificate"},
	} {
		g := &ccFakeGetter{body: ccCert(t, base)}
		dir := t.TempDir()
		_, err := newVCEKCache(dir, true, g, nil).get(t.Context(), tc.k)
		require.ErrorIs(t, err, attest.ErrConfig, name)
		require.ErrorContains(t, err, tc.want, name)
		require.Zero(t, g.calls(), name)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Empty(t, entries, name)
	}
}

func TestCertCacheVLEKFromDisk(t *testing.T) {
	k := ccKey(t)
	k.signer = abi.VlekReportSigner
	dir := t.TempDir()
	der := ccCert(t, k)
	ccWrite(t, dir, k, der)
	require.Regexp(t, `^vlek-Milan-[0-9a-f]{16}\.der$`, k.fileName())
	got, err := newVCEKCache(dir, false, nil, nil).get(t.Context(), k)
	require.NoError(t, err)
	require.Equal(t, der, got)
}

func TestCertCacheConcurrentGetsFetchOnce(t *testing.T) {
	k := ccKey(t)
	g := &ccFakeGetter{body: ccCert(t, k)}
	c := newVCEKCache(t.TempDir(), true, g, nil)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			_, err := c.get(context.Background(), k)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	require.Equal(t, 1, g.calls())
}

func TestCertCacheHonoursContextWhileWaiting(t *testing.T) {
	k := ccKey(t)
	c := newVCEKCache(t.TempDir(), false, nil, nil)
	c.lock <- struct{}{} // another lookup in progress
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.get(ctx, k)
	require.ErrorIs(t, err, context.Canceled)
}
