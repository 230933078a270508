package guest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"
)

// signerKey identifies the certificate of the key that signed a report:
// the VCEK of one chip at one TCB, or the VLEK of a product line at one TCB
// (a VLEK is provisioned per cloud provider, not per chip).
type signerKey struct {
	signer  abi.ReportSigner // abi.VcekReportSigner or abi.VlekReportSigner
	product string           // KDS product line: "Milan", "Genoa", "Turin"
	chipID  []byte           // CHIP_ID of the report (VCEK only)
	tcb     kds.TCBVersion   // REPORTED_TCB of the report
}

func (k signerKey) String() string {
	if k.signer == abi.VlekReportSigner {
		return fmt.Sprintf("VLEK (product %s, TCB %#016x)", k.product, uint64(k.tcb))
	}
	return fmt.Sprintf("VCEK (product %s, chip %.16x…, TCB %#016x)", k.product, k.chipID, uint64(k.tcb))
}

// chipMasked reports whether the CHIP_ID is all zeros, which is what the
// report carries when the host set MASK_CHIP_ID. Such a report does not say
// which chip's VCEK signed it.
func (k signerKey) chipMasked() bool {
	return len(bytes.Trim(k.chipID, "\x00")) == 0
}

// check says why k cannot name a cache file or a KDS URL, or returns nil.
// Validating here keeps file names free of anything a report could inject.
func (k signerKey) check() error {
	switch k.product {
	case "Milan", "Genoa", "Turin":
	case "":
		return fmt.Errorf("the product line is unknown (report version < 3 and no platform info from the driver)")
	default:
		return fmt.Errorf("unsupported product line %q", k.product)
	}
	switch k.signer {
	case abi.VcekReportSigner:
		if len(k.chipID) != abi.ChipIDSize {
			return fmt.Errorf("CHIP_ID is %d bytes, want %d", len(k.chipID), abi.ChipIDSize)
		}
		if k.chipMasked() {
			return fmt.Errorf("the report's CHIP_ID is masked (the host set MASK_CHIP_ID), so the VCEK cannot be looked up; the host must supply it in the extended report's certificate table")
		}
	case abi.VlekReportSigner:
	default:
		return fmt.Errorf("report signer %v has no certificate", k.signer)
	}
	return nil
}

// fileName is the cache file of k: vcek-<product>-<chip id>-<tcb>.der or
// vlek-<product>-<tcb>.der, all hex, so that a TCB update (new VCEK) or a
// different chip never reuses a stale file.
func (k signerKey) fileName() string {
	if k.signer == abi.VlekReportSigner {
		return fmt.Sprintf("vlek-%s-%016x.der", k.product, uint64(k.tcb))
	}
	return fmt.Sprintf("vcek-%s-%s-%016x.der", k.product, hex.EncodeToString(k.chipID), uint64(k.tcb))
}

// kdsURL is where AMD's Key Distribution Service publishes the VCEK of k.
func (k signerKey) kdsURL() (string, error) {
	if k.signer != abi.VcekReportSigner {
		return "", fmt.Errorf("AMD KDS serves VLEK certificates only to the cloud provider that owns them")
	}
	line, err := snp.ParseProductLine(k.product)
	if err != nil {
		return "", err
	}
	// Turin VCEKs are indexed by the first 8 bytes of CHIP_ID and by
	// the FMC level of the Turin TCB layout.
	return snp.VCEKURL(line, k.chipID, uint64(k.tcb))
}

// checkSignerCert checks that der looks like the certificate of k: at most
// [snp.MaxCertSize] bytes, X.509, a P-384 ECDSA key, and AMD's extensions
// (snp.ParseCertExtensions, for every product line) naming the same chip
// and TCB. It does not check the
// signature chain: the verifier does that against its own roots. The point
// is to fail here, with a message naming the file or source, instead of
// sending evidence every verifier will reject.
func checkSignerCert(der []byte, k signerKey) error {
	if len(der) == 0 {
		return errors.New("empty certificate")
	}
	if len(der) > snp.MaxCertSize {
		return fmt.Errorf("%d bytes, more than the %d a certificate may have", len(der), snp.MaxCertSize)
	}
	if bytes.HasPrefix(bytes.TrimSpace(der), []byte("-----BEGIN")) {
		return errors.New("PEM, not DER (convert with: openssl x509 -outform der)")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("not a DER X.509 certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return fmt.Errorf("certificate %q does not have a P-384 ECDSA key, so it is not a VCEK or VLEK", cert.Subject.CommonName)
	}
	exts, err := snp.ParseCertExtensions(cert, k.signer)
	if err != nil {
		return fmt.Errorf("certificate %q lacks AMD's %v extensions: %w", cert.Subject.CommonName, k.signer, err)
	}
	if k.signer == abi.VcekReportSigner && !k.chipMasked() && !snp.HWIDMatchesChipID(exts.Product, exts.HWID, k.chipID) {
		return fmt.Errorf("certificate is for chip %x, the report is from chip %.16x…", exts.HWID, k.chipID)
	}
	if exts.TCB != uint64(k.tcb) {
		return fmt.Errorf("certificate is for TCB %#016x, the report has TCB %#016x (a firmware update changes the VCEK; fetch the new one)", exts.TCB, uint64(k.tcb))
	}
	return nil
}

// maxMemoEntries bounds the in-memory copy. One machine has one chip and
// changes TCB rarely, so a handful of entries is plenty.
const maxMemoEntries = 8

// vcekCache finds the certificate of the key that signed a report when the
// host did not put it in the extended report: in memory, then in a
// directory of DER files, then (only when allowed) from AMD KDS, storing
// what it fetched. It is safe for concurrent use; lookups are serialized
// so that concurrent attestations ask KDS, which rate-limits, only once.
type vcekCache struct {
	dir          string            // "" = no on-disk cache
	allowNetwork bool              // only then is getter used
	getter       trust.HTTPSGetter // non-nil when allowNetwork
	log          *slog.Logger

	lock chan struct{} // a mutex that a context can abandon
	memo map[string][]byte
}

func newVCEKCache(dir string, allowNetwork bool, getter trust.HTTPSGetter, log *slog.Logger) *vcekCache {
	if allowNetwork && getter == nil {
		getter = trust.DefaultHTTPSGetter()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &vcekCache{
		dir:          dir,
		allowNetwork: allowNetwork,
		getter:       getter,
		log:          log,
		lock:         make(chan struct{}, 1),
		memo:         map[string][]byte{},
	}
}

// get returns the DER certificate of k. The error, of kind
// attest.ErrConfig when the fix is local, says what is missing and how to
// provide it.
func (c *vcekCache) get(ctx context.Context, k signerKey) ([]byte, error) {
	const check = "snp.vcek"
	if err := k.check(); err != nil {
		return nil, attest.Fail(attest.ErrConfig, check, "cannot look up the %v certificate: %w", k.signer, err)
	}
	select {
	case c.lock <- struct{}{}:
		defer func() { <-c.lock }()
	case <-ctx.Done():
		return nil, fmt.Errorf("snp: waiting to look up the %v: %w", k, ctx.Err())
	}

	name := k.fileName()
	if der, ok := c.memo[name]; ok {
		return der, nil
	}

	var cacheErr error // why a cached file was not usable
	if c.dir != "" {
		der, err := c.load(name, k)
		switch {
		case err == nil:
			c.remember(name, der)
			return der, nil
		case errors.Is(err, fs.ErrNotExist):
		default:
			cacheErr = err
			c.log.Warn("snp: ignoring unusable cached certificate", "error", err)
		}
	}

	if !c.allowNetwork {
		return nil, c.missing(k, cacheErr)
	}
	url, err := k.kdsURL()
	if err != nil {
		return nil, attest.Fail(attest.ErrConfig, check, "the extended report has no %v, and it cannot be downloaded (%w); have the host supply it in the extended report's certificate table, or %s", k, err, c.cacheHint(k, cacheErr))
	}
	c.log.Info("snp: fetching certificate from AMD KDS", "key", k.String(), "url", url)
	der, err := trust.GetWith(ctx, c.getter, url)
	if err != nil {
		return nil, fmt.Errorf("snp: downloading the %v from %s: %w (or pre-populate the certificate cache: %s)", k, url, err, c.cacheHint(k, nil))
	}
	if err := checkSignerCert(der, k); err != nil {
		return nil, fmt.Errorf("snp: AMD KDS answered %s with an unusable certificate: %w", url, err)
	}
	if c.dir != "" {
		if err := c.store(name, der); err != nil {
			// The cache only saves a download next time; the
			// certificate itself is good.
			c.log.Warn("snp: could not cache the downloaded certificate", "error", err)
		}
	}
	c.remember(name, der)
	return der, nil
}

// missing is the error when the certificate is nowhere and the network is
// off: it says which file would be read and where its content comes from.
func (c *vcekCache) missing(k signerKey, cacheErr error) error {
	fix := "enable network access to AMD KDS (AllowNetwork)"
	if k.signer == abi.VlekReportSigner || k.product == "Turin" {
		fix = "have the host supply it in the extended report's certificate table"
	}
	return attest.Fail(attest.ErrConfig, "snp.vcek", "the extended report has no %v and network access is off; %s, or %s", k, fix, c.cacheHint(k, cacheErr))
}

// cacheHint tells how to pre-populate the cache for k.
func (c *vcekCache) cacheHint(k signerKey, cacheErr error) string {
	src := "the DER certificate"
	if url, err := k.kdsURL(); err == nil {
		src = "the DER certificate from " + url
	}
	if c.dir == "" {
		return fmt.Sprintf("set a certificate cache directory (CertCacheDir) holding %s as %s", src, k.fileName())
	}
	path := filepath.Join(c.dir, k.fileName())
	if cacheErr != nil {
		return fmt.Sprintf("replace the unusable cached file (%v) with %s", cacheErr, src)
	}
	return fmt.Sprintf("save %s as %s", src, path)
}

// load reads and checks the cached file name. A missing file yields an
// error matching fs.ErrNotExist.
func (c *vcekCache) load(name string, k signerKey) ([]byte, error) {
	path := filepath.Join(c.dir, name)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	// Read one byte more than allowed to tell "at the cap" from "over".
	der, err := io.ReadAll(io.LimitReader(f, snp.MaxCertSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if err := checkSignerCert(der, k); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return der, nil
}

// store writes der to the cache atomically (a temporary file renamed into
// place), so that a concurrent reader or a crash never sees half a
// certificate. Files are 0600 and the directory, if made here, 0700: the
// certificate is public, but nobody else should be able to plant one.
func (c *vcekCache) store(name string, der []byte) (err error) {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("creating certificate cache directory: %w", err)
	}
	tmp, err := os.CreateTemp(c.dir, "."+name+".*.tmp")
	if err != nil {
		return fmt.Errorf("creating certificate cache file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("setting permissions of %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.Write(der); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	path := filepath.Join(c.dir, name)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp.Name(), path, err)
	}
	c.log.Debug("snp: cached certificate", "path", path)
	return nil
}

// remember keeps der in memory. Called with c.lock held.
func (c *vcekCache) remember(name string, der []byte) {
	if len(c.memo) >= maxMemoEntries {
		clear(c.memo)
	}
	c.memo[name] = der
}
