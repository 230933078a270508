//go:build !linux

package guest

import (
	"errors"
	"fmt"
	"io"
)

// sevGuestPath is the SEV-SNP guest device of Linux.
const sevGuestPath = "/dev/sev-guest"

// openKeyDevice reports that only Linux guests are supported.
func openKeyDevice(KeyDeriverOptions) (*deviceQuotes, io.Closer, error) {
	return nil, nil, fmt.Errorf("SEV-SNP guests are supported on Linux only: %w", errors.ErrUnsupported)
}
