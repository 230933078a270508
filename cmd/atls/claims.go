package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/snp"
)

// simulatedNote is how simulated claims are labelled.
const simulatedNote = "SIMULATED: signed by a simulated AMD chain that was trusted explicitly, not by hardware"

// writeClaimsTable prints verified claims as a table, every value
// through printable.
func writeClaimsTable(w io.Writer, title string, c *atls.Claims) {
	fmt.Fprintln(w, printable(title))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "  %s\t%s\n", k, printable(fmt.Sprintf(format, args...)))
	}
	if c.Simulated {
		row("SIMULATED", "signed by a simulated AMD chain that was trusted explicitly, not by hardware")
	}
	row("platform", "%s", c.Platform)
	row("role", "%s", c.Role)
	row("freshness", "%s", c.Mode)
	if !c.NotBefore.IsZero() {
		row("certificate", "valid %s to %s", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	if s := c.SNP; s != nil {
		row("product", "%s (report version %d, signed by the %s)", s.Product, s.ReportVersion, s.Signer)
		row("measurement", "%s", s.Measurement)
		row("host data", "%s", s.HostData)
		row("guest policy", "0x%x", s.GuestPolicy)
		row("guest svn", "%d", s.GuestSVN)
		row("vmpl", "%d", s.VMPL)
		row("family id", "%s", s.FamilyID)
		row("image id", "%s", s.ImageID)
		row("id key digest", "%s", s.IDKeyDigest)
		row("author key digest", "%s", s.AuthorKeyDigest)
		row("reported tcb", "%s", tcbString(s.Product, s.ReportedTCB))
		row("current tcb", "%s", tcbString(s.Product, s.CurrentTCB))
		row("committed tcb", "%s", tcbString(s.Product, s.CommittedTCB))
		row("launch tcb", "%s", tcbString(s.Product, s.LaunchTCB))
		row("firmware", "%s (committed %s)", s.CurrentVersion, s.CommittedVersion)
		row("platform info", "0x%x", s.PlatformInfo)
		row("chip id", "%s", s.ChipID)
		row("report id", "%s", s.ReportID)
	}
	row("report data", "%s", c.ReportData)
	row("evidence digest", "%s", c.EvidenceDigest)
	_ = tw.Flush()
}

// tcbString shows a TCB_VERSION in the layout of its product line.
func tcbString(product string, v uint64) string {
	line, _ := snp.ParseProductLine(product)
	t := line.DecodeTCB(v)
	fmc := ""
	if line.HasFMC() {
		fmc = fmt.Sprintf("fmc %d, ", t.FMC)
	}
	return fmt.Sprintf("0x%016x (%sbootloader %d, tee %d, snp %d, microcode %d)", v, fmc, t.Bootloader, t.TEE, t.SNP, t.Microcode)
}

// writeJSON writes v as indented JSON, with no character a terminal
// would act on (escapeJSON).
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(escapeJSON(b), '\n'))
	return err
}

// shortHex abbreviates a long hex string for one-line summaries.
func shortHex(s string) string {
	if len(s) <= 16 {
		return s
	}
	return s[:16] + "…"
}

// claimsSummary is a one-line description of verified claims, safe to
// print (printable).
func claimsSummary(c *atls.Claims) string {
	s := fmt.Sprintf("%s %s, %s mode", c.Platform, c.Role, c.Mode)
	if c.SNP != nil {
		s += fmt.Sprintf(", %s, measurement %s", c.SNP.Product, shortHex(c.SNP.Measurement.String()))
	}
	if c.Simulated {
		s += " (SIMULATED)"
	}
	return printable(s)
}
