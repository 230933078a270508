//go:build linux

package guest

import (
	"io"

	"golang.org/x/sys/unix"
)

// openKeyDevice opens /dev/sev-guest for derived keys, spaced as
// opts.DeviceInterval says.
func openKeyDevice(opts KeyDeriverOptions) (*deviceQuotes, io.Closer, error) {
	dev := &sevGuestDevice{fd: -1}
	if err := dev.Open(sevGuestPath); err != nil {
		return nil, nil, err
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
	return newDeviceQuotes(dev, interval), dev, nil
}
