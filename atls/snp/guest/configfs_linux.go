//go:build linux

package guest

import (
	"fmt"
	"strings"

	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"
)

// configfsQuotes gets extended reports through configfs-tsm. It stands in
// for go-sev-guest's LinuxConfigFsQuoteProvider, whose GetRawQuote takes
// the VMPL from the process-wide default_vmpl flag: here a nil VMPL is
// the kernel's default, whatever the command line says.
type configfsQuotes struct{}

// GetRawQuote gets a report at the kernel's default privilege level.
func (configfsQuotes) GetRawQuote(reportData [64]byte) ([]byte, error) {
	return configfsReport(reportData, nil)
}

// GetRawQuoteAtLevel gets a report at the given VMPL.
func (configfsQuotes) GetRawQuoteAtLevel(reportData [64]byte, vmpl uint) ([]byte, error) {
	return configfsReport(reportData, &report.Privilege{Level: vmpl})
}

// configfsReport returns the report followed by the host's certificate
// table (the auxiliary blob), if any.
func configfsReport(reportData [64]byte, priv *report.Privilege) ([]byte, error) {
	resp, err := linuxtsm.GetReport(&report.Request{InBlob: reportData[:], Privilege: priv, GetAuxBlob: true})
	if err != nil {
		return nil, err
	}
	if p := strings.TrimSpace(resp.Provider); p != "sev_guest" {
		return nil, fmt.Errorf("configfs-tsm answered with a %q report, not an SEV-SNP one", p)
	}
	return append(resp.OutBlob, resp.AuxBlob...), nil
}
