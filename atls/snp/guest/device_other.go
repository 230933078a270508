//go:build !linux

package guest

import (
	"errors"
	"fmt"
	"io"
)

// openProvider reports that only Linux guests are supported.
func openProvider(AttesterOptions) (quoteProvider, string, io.Closer, error) {
	return nil, "", nil, fmt.Errorf("SEV-SNP guests are supported on Linux only: %w", errors.ErrUnsupported)
}
