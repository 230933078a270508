//go:build linux

package guest

import (
	"fmt"
	"io"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/client"
	labi "github.com/google/go-sev-guest/client/linuxabi"
	"github.com/google/go-sev-guest/proto/sevsnp"
	"golang.org/x/sys/unix"
)

// sevGuestPath is the SEV-SNP guest device. go-sev-guest's
// sev_guest_device_path flag does not apply here.
const sevGuestPath = "/dev/sev-guest"

// openProvider picks the interface to the secure processor: configfs-tsm
// if the kernel offers it for SEV-SNP, otherwise /dev/sev-guest, opened
// once. The closer, if not nil, releases what was opened.
func openProvider(opts AttesterOptions) (quoteProvider, string, io.Closer, error) {
	if (&client.LinuxConfigFsQuoteProvider{}).IsSupported() {
		return configfsQuotes{}, "configfs-tsm", nil, nil
	}
	dev := &sevGuestDevice{fd: -1}
	if err := dev.Open(sevGuestPath); err != nil {
		return nil, "", nil, err
	}
	interval := opts.DeviceInterval
	if interval == 0 {
		var u unix.Utsname
		release := ""
		if unix.Uname(&u) == nil {
			release = unix.ByteSliceToString(u.Release[:])
		}
		interval = defaultDeviceInterval(release)
	}
	return newDeviceQuotes(dev, interval), sevGuestPath, dev, nil
}

// sevGuestDevice is a client.Device that sends each command to the
// driver as it comes, without go-sev-guest's process-wide self-throttling:
// the driver itself serializes commands, and the attester decides the
// spacing (deviceQuotes).
type sevGuestDevice struct {
	fd int // -1 when closed
}

var _ client.Device = (*sevGuestDevice)(nil)

// Open opens the device at path.
func (d *sevGuestDevice) Open(path string) error {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		d.fd = -1
		return fmt.Errorf("opening %s: %w", path, err)
	}
	d.fd = fd
	return nil
}

// Close closes the device; closing it twice is not an error.
func (d *sevGuestDevice) Close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}

// Ioctl sends one guest request.
func (d *sevGuestDevice) Ioctl(command uintptr, req any) (uintptr, error) {
	msg, ok := req.(*labi.SnpUserGuestRequest)
	if !ok {
		return 0, fmt.Errorf("unexpected request type %T", req)
	}
	if d.fd < 0 {
		return 0, fmt.Errorf("%s is closed", sevGuestPath)
	}
	conv := msg.ABI()
	result, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(d.fd), command, uintptr(conv.Pointer()))
	if err := conv.Finish(msg); err != nil {
		return 0, fmt.Errorf("reading the response to a guest request: %w", err)
	}
	if errno != unix.EIO {
		// The firmware error is meaningful only with EIO; some kernels
		// leave garbage there otherwise.
		msg.FwErr = 0
	}
	if errno != 0 {
		return 0, errno
	}
	return result, nil
}

// Product returns the SEV-SNP product of this CPU.
func (d *sevGuestDevice) Product() *sevsnp.SevProduct {
	return abi.SevProduct()
}
