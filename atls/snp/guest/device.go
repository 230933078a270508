package guest

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/client"
	labi "github.com/google/go-sev-guest/client/linuxabi"
)

// goSEVGuestInterval is the interval go-sev-guest's own /dev/sev-guest
// device keeps between two commands by default (its
// self_throttle_duration flag).
const goSEVGuestInterval = 2 * time.Second

// maxCertTableSize bounds the certificate table buffer the host can ask
// for. Linux caps it at 16 KiB (SEV_FW_BLOB_MAX_SIZE); the size comes from
// the host, which SEV-SNP does not trust.
const maxCertTableSize = 64 << 10

// deviceQuotes gets extended reports through the /dev/sev-guest ioctl
// interface of one open device, kept for the life of the attester.
//
// It stands in for go-sev-guest's LinuxIoctlQuoteProvider, which opens the
// device for each report, sends two commands per report (the first only to
// learn the size of the host's certificate table), and makes its device
// sleep between commands for the process-wide self_throttle_duration
// (2 s by default): at least 2 s per report. Here the table size learnt
// from one report sizes the next request, so a report is one command, and
// commands are spaced only as [AttesterOptions.DeviceInterval] says.
type deviceQuotes struct {
	dev client.Device

	mu       sync.Mutex
	pace     pacer
	certsLen uint32 // the table size the host needed last time
	commands int    // commands sent, for tests
}

func newDeviceQuotes(dev client.Device, interval time.Duration) *deviceQuotes {
	return &deviceQuotes{dev: dev, pace: pacer{interval: interval, now: time.Now, sleep: time.Sleep}}
}

// GetRawQuote gets a report at VMPL 0.
func (q *deviceQuotes) GetRawQuote(reportData [64]byte) ([]byte, error) {
	return q.GetRawQuoteAtLevel(reportData, 0)
}

// GetRawQuoteAtLevel gets an extended report at the given VMPL: the
// report followed by the host's certificate table (nothing if the host
// has none).
func (q *deviceQuotes) GetRawQuoteAtLevel(reportData [64]byte, vmpl uint) ([]byte, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	// The firmware fills the table only into a buffer large enough for
	// it; otherwise it says how large (GuestRequestInvalidLength) and the
	// request is sent again. With the size of last time this takes one
	// command, unless the host's table grew.
	for range 3 {
		certs := make([]byte, q.certsLen)
		report, need, err := q.extendedReport(reportData, vmpl, certs)
		if err == nil {
			if need < uint32(len(certs)) && need > 0 {
				certs = certs[:need]
			}
			return append(report, certs...), nil
		}
		var fw *abi.SevFirmwareErr
		if !errors.As(err, &fw) || fw.Status != abi.GuestRequestInvalidLength {
			if q.certsLen == 0 {
				// As go-sev-guest does: a host without extended
				// requests may still answer a plain one.
				if report, perr := q.report(reportData, vmpl); perr == nil {
					return report, nil
				}
			}
			return nil, err
		}
		if need <= q.certsLen || need > maxCertTableSize {
			return nil, fmt.Errorf("the host asks for a %d-byte certificate table buffer (had %d, at most %d)", need, q.certsLen, maxCertTableSize)
		}
		q.certsLen = need
	}
	return nil, errors.New("the host's certificate table kept changing size")
}

// extendedReport sends one extended report request with certs as the
// table buffer. need is the table size the host reported.
func (q *deviceQuotes) extendedReport(reportData [64]byte, vmpl uint, certs []byte) (report []byte, need uint32, err error) {
	var rsp labi.SnpReportRespABI
	req := labi.SnpExtendedReportReq{
		Data:        labi.SnpReportReqABI{ReportData: reportData, Vmpl: uint32(vmpl)},
		Certs:       certs,
		CertsLength: uint32(len(certs)),
	}
	if err := q.command(labi.IocSnpGetExtendedReport, &req, &rsp); err != nil {
		return nil, req.CertsLength, err
	}
	return bytes.Clone(rsp.Data[:abi.ReportSize]), req.CertsLength, nil
}

// report sends one plain report request.
func (q *deviceQuotes) report(reportData [64]byte, vmpl uint) ([]byte, error) {
	var rsp labi.SnpReportRespABI
	req := labi.SnpReportReqABI{ReportData: reportData, Vmpl: uint32(vmpl)}
	if err := q.command(labi.IocSnpGetReport, &req, &rsp); err != nil {
		return nil, err
	}
	return bytes.Clone(rsp.Data[:abi.ReportSize]), nil
}

// command sends one guest request and turns the driver's and the
// firmware's status into an error.
func (q *deviceQuotes) command(cmd uintptr, req, rsp labi.BinaryConvertible) error {
	q.pace.wait()
	msg := labi.SnpUserGuestRequest{ReqData: req, RespData: rsp}
	result, err := q.dev.Ioctl(cmd, &msg)
	q.pace.sent()
	q.commands++
	if err != nil {
		if msg.FwErr != 0 {
			return &abi.SevFirmwareErr{Status: abi.SevFirmwareStatus(msg.FwErr)}
		}
		return err
	}
	if result != uintptr(labi.EsOk) {
		return &labi.SevEsErr{Result: labi.EsResult(result)}
	}
	return nil
}

// pacer keeps commands at least interval apart. Its clock is swapped out
// in tests.
type pacer struct {
	interval time.Duration // <= 0: no spacing
	now      func() time.Time
	sleep    func(time.Duration)
	last     time.Time // when the last command finished; zero before the first
}

func (p *pacer) wait() {
	if p.interval <= 0 || p.last.IsZero() {
		return
	}
	if d := p.interval - p.now().Sub(p.last); d > 0 {
		p.sleep(d)
	}
}

func (p *pacer) sent() {
	if p.interval > 0 {
		p.last = p.now()
	}
}

// defaultDeviceInterval is the command interval for a zero
// AttesterOptions.DeviceInterval on a kernel of the given release (as
// uname -r prints it). Linux 6.2 added throttling awareness to the
// sev-guest driver: it retries a command the host throttles. Before that,
// a throttled command made the driver disable the device for good, which
// go-sev-guest's 2 s self-throttling avoids; an unknown release is treated
// as old.
func defaultDeviceInterval(release string) time.Duration {
	major, minor, ok := kernelVersion(release)
	if ok && (major > 6 || major == 6 && minor >= 2) {
		return 0
	}
	return goSEVGuestInterval
}

// kernelVersion reads "6.1.0-18-amd64" as 6, 1.
func kernelVersion(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	digits := func(s string) string {
		i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
		if i >= 0 {
			return s[:i]
		}
		return s
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(digits(parts[1]))
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return major, minor, true
}
