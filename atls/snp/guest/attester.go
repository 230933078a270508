package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"
)

// AttesterOptions configure the hardware attester.
type AttesterOptions struct {
	// VMPL is the privilege level to request the report at (0-3). Nil
	// leaves it to the driver (VMPL 0 with /dev/sev-guest; the kernel's
	// default with configfs-tsm); go-sev-guest's default_vmpl flag is
	// never consulted.
	VMPL *int
	// CertCacheDir is a directory of VCEK (or VLEK) certificates, DER,
	// named vcek-<product>-<chip id>-<tcb>.der (vlek-<product>-<tcb>.der),
	// used when the host does not put the certificate in the extended
	// report. "" means no on-disk cache. Downloaded certificates are
	// stored there.
	CertCacheDir string
	// AllowNetwork lets the attester download a missing VCEK from AMD's
	// Key Distribution Service. Off by default: attesting should not
	// depend on, or leak timing to, a third party unless asked to.
	AllowNetwork bool
	// Getter fetches KDS URLs when AllowNetwork is set. Nil means
	// go-sev-guest's default getter (retries for up to 2 minutes, since
	// KDS rate-limits).
	Getter trust.HTTPSGetter
	// Logger receives diagnostics (a rejected host certificate, a
	// download). Nil discards them.
	Logger *slog.Logger
	// DeviceInterval is the least time between two commands sent to
	// /dev/sev-guest (configfs-tsm is not affected: the kernel paces
	// it). Zero means automatic: none on Linux 6.2 and later, whose
	// driver serializes commands and retries those the host throttles;
	// 2 s (go-sev-guest's default) on older kernels, whose driver
	// disables the device for good when the host throttles a command.
	// Negative means none, whatever the kernel.
	DeviceInterval time.Duration
}

// quoteProvider gets raw extended reports: configfsQuotes or
// deviceQuotes (shaped like go-sev-guest's quote providers); tests
// substitute a fake.
type quoteProvider interface {
	// GetRawQuote returns the report followed by the certificate table,
	// at the driver's default VMPL.
	GetRawQuote(reportData [64]byte) ([]byte, error)
	// GetRawQuoteAtLevel is GetRawQuote at the given VMPL.
	GetRawQuoteAtLevel(reportData [64]byte, vmpl uint) ([]byte, error)
}

// Attester produces SEV-SNP evidence on a real SEV-SNP guest. It
// implements attest.Attester and is safe for concurrent use: requests to
// the secure processor are serialized, since the guest driver handles
// one message at a time.
//
// It keeps the guest interface open until [Attester.Close]. On the
// /dev/sev-guest path a report takes one command once the size of the
// host's certificate table is known, and commands are spaced as
// [AttesterOptions.DeviceInterval] says, not by go-sev-guest's
// process-wide self_throttle_duration flag.
type Attester struct {
	qp     quoteProvider
	source string // which interface qp uses, for messages
	vmpl   *uint
	certs  *vcekCache
	log    *slog.Logger
	device chan struct{} // a mutex that a context can abandon
	closer io.Closer     // releases the guest interface; nil if none
	closed bool          // guarded by device

	// cpuProduct returns the product line of this machine from CPUID,
	// for reports that do not say it themselves. Swapped out in tests.
	cpuProduct func() string
}

var _ attest.Attester = (*Attester)(nil)

// NewAttester opens the SEV-SNP guest interface: configfs-tsm
// (/sys/kernel/config/tsm/report) if the kernel offers it for SEV-SNP,
// otherwise /dev/sev-guest, which stays open until [Attester.Close]. On a
// machine without SEV-SNP it returns an error wrapping
// attest.ErrUnsupported.
func NewAttester(opts AttesterOptions) (*Attester, error) {
	if opts.VMPL != nil && (*opts.VMPL < 0 || *opts.VMPL > 3) {
		return nil, attest.Fail(attest.ErrConfig, "snp.attester", "VMPL %d is out of range (0-3)", *opts.VMPL)
	}
	qp, source, closer, err := openProvider(opts)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, attest.Fail(attest.ErrUnsupported, "snp.attester",
			"SEV-SNP is not available on this machine (no configfs-tsm report provider and no /dev/sev-guest); use the simulator for development")
	case errors.Is(err, errors.ErrUnsupported):
		return nil, attest.Fail(attest.ErrUnsupported, "snp.attester", "%w", err)
	case err != nil:
		// Most likely permissions: the device exists.
		return nil, attest.Fail(attest.ErrConfig, "snp.attester", "cannot use the SEV-SNP guest interface: %w", err)
	}
	a := newAttester(qp, source, opts)
	a.closer = closer
	return a, nil
}

// Close releases the guest interface. Attest fails after Close.
func (a *Attester) Close() error {
	a.device <- struct{}{}
	defer func() { <-a.device }()
	if a.closed {
		return nil
	}
	a.closed = true
	if a.closer == nil {
		return nil
	}
	return a.closer.Close()
}

// newAttester builds an attester around qp, without touching the machine.
func newAttester(qp quoteProvider, source string, opts AttesterOptions) *Attester {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Attester{
		qp:         qp,
		source:     source,
		certs:      newVCEKCache(opts.CertCacheDir, opts.AllowNetwork, opts.Getter, log),
		log:        log,
		device:     make(chan struct{}, 1),
		cpuProduct: func() string { return productLine(kds.ProductLine(abi.SevProduct())) },
	}
	if opts.VMPL != nil {
		v := uint(*opts.VMPL)
		a.vmpl = &v
	}
	return a
}

// Attest gets an extended attestation report carrying reportData and
// returns it as evidence with the certificate of the key that signed it:
// from the host's certificate table, else from the certificate cache,
// else (with AllowNetwork) from AMD KDS.
func (a *Attester) Attest(ctx context.Context, reportData [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	raw, err := a.rawQuote(ctx, reportData)
	if err != nil {
		return nil, err
	}
	return a.evidence(ctx, raw, reportData)
}

// rawQuote asks the security processor for a report, one request at a
// time.
func (a *Attester) rawQuote(ctx context.Context, reportData [64]byte) (raw []byte, err error) {
	select {
	case a.device <- struct{}{}:
		defer func() { <-a.device }()
	case <-ctx.Done():
		return nil, fmt.Errorf("snp: waiting for the SEV-SNP guest device: %w", ctx.Err())
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if a.closed {
		return nil, fmt.Errorf("snp: the attester is closed")
	}
	defer func() {
		// The providers handle data from the host (the certificate
		// table) through go-sev-guest and go-configfs-tsm; a malicious
		// host must not be able to crash the guest application.
		if r := recover(); r != nil {
			raw, err = nil, fmt.Errorf("snp: panic getting a report from %s: %v", a.source, r)
		}
	}()
	if a.vmpl != nil {
		raw, err = a.qp.GetRawQuoteAtLevel(reportData, *a.vmpl)
	} else {
		raw, err = a.qp.GetRawQuote(reportData)
	}
	if err != nil {
		return nil, fmt.Errorf("snp: getting an extended attestation report from %s: %w", a.source, err)
	}
	return raw, nil
}

// evidence turns a raw extended report into evidence. It touches no
// device, only the certificate cache, so it is tested with synthetic
// reports.
func (a *Attester) evidence(ctx context.Context, raw []byte, reportData [64]byte) (*attest.Evidence, error) {
	x, err := parseExtendedReport(raw)
	if err != nil {
		return nil, err
	}
	if x.reportData != reportData {
		return nil, fmt.Errorf("snp: the report from %s does not carry the requested REPORT_DATA", a.source)
	}
	if x.key.product == "" {
		x.key.product = a.cpuProduct()
	}
	cert, err := x.signerCert()
	if err != nil {
		a.log.Warn("snp: not using the certificate from the host", "source", a.source, "error", err)
	}
	if cert == nil {
		a.log.Debug("snp: looking up the signing certificate", "key", x.key.String())
		if cert, err = a.certs.get(ctx, x.key); err != nil {
			return nil, err
		}
	}
	return snp.NewEvidence(x.report, cert, nil), nil
}

// extendedReport is a report with the host's certificate table.
type extendedReport struct {
	report     []byte // exactly snp.ReportSize bytes
	reportData [64]byte
	key        signerKey // product is "" when neither the report nor the table says
	// tableCert is the host's certificate for key.signer, nil if absent.
	tableCert []byte
}

// parseExtendedReport splits a raw extended report as go-sev-guest's
// providers return it: the 1184-byte report, then the GHCB certificate
// table (possibly empty). Both come from the host, which SEV-SNP does not
// trust, so every offset is checked.
func parseExtendedReport(raw []byte) (*extendedReport, error) {
	if len(raw) < snp.ReportSize {
		return nil, fmt.Errorf("snp: the attestation report is %d bytes, want %d", len(raw), snp.ReportSize)
	}
	report, tail := raw[:snp.ReportSize:snp.ReportSize], raw[snp.ReportSize:]
	table, err := parseCertTable(tail)
	if err != nil {
		// Either the table is corrupt or the firmware returned a report
		// longer than the 1184 bytes this evidence format carries.
		return nil, fmt.Errorf("snp: the %d bytes after the %d-byte report are not a certificate table (reports of other sizes are not supported): %w", len(tail), snp.ReportSize, err)
	}
	r, err := abi.ReportToProto(report)
	if err != nil {
		return nil, fmt.Errorf("snp: malformed attestation report: %w", err)
	}
	info, err := abi.ParseSignerInfo(r.GetSignerInfo())
	if err != nil {
		return nil, fmt.Errorf("snp: malformed attestation report: %w", err)
	}
	x := &extendedReport{
		report: bytes.Clone(report),
		key: signerKey{
			signer: info.SigningKey,
			chipID: r.GetChipId(),
			tcb:    kds.TCBVersion(r.GetReportedTcb()),
		},
	}
	var guid string
	switch info.SigningKey {
	case abi.VcekReportSigner:
		guid = abi.VcekGUID
	case abi.VlekReportSigner:
		guid = abi.VlekGUID
	default:
		return nil, fmt.Errorf("snp: the report is not signed (SIGNING_KEY is %v)", info.SigningKey)
	}
	x.tableCert = table[guid]
	copy(x.reportData[:], r.GetReportData())

	// Report version 3 and later carry the CPUID family/model; for older
	// ones, go-sev-guest's providers add the CPUID of the guest to the
	// table when the host left out the VCEK.
	fms := r.GetCpuid1EaxFms()
	if fms == 0 {
		if b, ok := table[abi.ExtraPlatformInfoGUID]; ok {
			if info, err := abi.ParseExtraPlatformInfo(b); err == nil {
				fms = info.Cpuid1Eax
			}
		}
	}
	if fms != 0 {
		x.key.product = productLine(kds.ProductLineFromFms(fms))
	}
	return x, nil
}

// signerCert returns the host's certificate if it is plausibly the one
// that signed the report; nil if the host gave none; an error saying why
// if the host gave one that is not.
func (x *extendedReport) signerCert() ([]byte, error) {
	if x.tableCert == nil {
		return nil, nil
	}
	if err := checkSignerCert(x.tableCert, x.key); err != nil {
		// A host that has not refreshed its table after a firmware
		// update serves the previous TCB's VCEK; the cache or KDS may
		// still have the right one.
		return nil, fmt.Errorf("the %v in the certificate table is unusable: %w", x.key.signer, err)
	}
	return x.tableCert, nil
}

// parseCertTable reads a GHCB certificate table into a map from GUID (in
// the lowercase form of abi.VcekGUID) to blob; the first entry of a GUID
// wins. Unlike abi.CertTable.Unmarshal it
// rejects entries whose offset plus length overflows.
func parseCertTable(b []byte) (map[string][]byte, error) {
	entries, err := abi.ParseSnpCertTableHeader(b)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(entries))
	for i, e := range entries {
		if end := uint64(e.Offset) + uint64(e.Length); end > uint64(len(b)) {
			return nil, fmt.Errorf("entry %d (%v) spans bytes %d to %d of a %d-byte table", i, e.GUID, e.Offset, end, len(b))
		}
		if _, dup := out[e.GUID.String()]; !dup {
			out[e.GUID.String()] = bytes.Clone(b[e.Offset : e.Offset+e.Length])
		}
	}
	return out, nil
}

// productLine maps go-sev-guest's "Unknown" to "".
func productLine(p string) string {
	if p == "Unknown" {
		return ""
	}
	return p
}
