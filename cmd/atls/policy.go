package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// subcommand is one "atls <group> <name>" command.
type subcommand struct {
	spec *cmdSpec
	run  func(e *env, args []string) int
}

// runGroup dispatches a command that has subcommands.
func runGroup(e *env, group *cmdSpec, subs []subcommand, args []string) int {
	if len(args) > 0 {
		for _, s := range subs {
			if strings.TrimPrefix(s.spec.name, group.name+" ") == args[0] {
				return s.run(e, args[1:])
			}
		}
	}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		printGroupHelp(e.stdout, group, subs)
		return exitOK
	}
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "atls %s: missing subcommand\n\n", group.name)
	} else {
		fmt.Fprintf(e.stderr, "atls %s: unknown subcommand %q\n\n", group.name, args[0])
	}
	printGroupHelp(e.stderr, group, subs)
	return exitUsage
}

func printGroupHelp(w io.Writer, group *cmdSpec, subs []subcommand) {
	fmt.Fprintln(w, "Usage:")
	for _, s := range subs {
		for _, l := range s.spec.synopsis {
			fmt.Fprintf(w, "  atls %s\n", l)
		}
	}
	fmt.Fprintf(w, "\n%s\n", group.summary)
	fmt.Fprintln(w, "\nExamples:")
	for _, s := range subs {
		if len(s.spec.examples) > 0 {
			fmt.Fprintf(w, "  %s\n", s.spec.examples[len(s.spec.examples)-1])
		}
	}
	fmt.Fprintf(w, "\nRun 'atls %s <subcommand> -h' for the flags of a subcommand.\n", group.name)
}

var policySpec = &cmdSpec{
	name:    "policy",
	summary: "Writes a verification policy (JSON): a starting one to edit (init), one\nthat pins what a known-good certificate's report shows (from-cert), or one that\npins the launch measurement computed from the VM's launch inputs (from-launch).",
}

var policyInitSpec = &cmdSpec{
	name:     "policy init",
	synopsis: []string{"policy init [--measurement HEX]... [--simulate] [--out FILE]"},
	summary: `Prints a starting policy: secure defaults, with every security switch
spelled out, and the launch measurement of the VM image to accept. JSON has no
comments, so the explanations go to stderr.

Without --measurement the policy has a placeholder that must be replaced
before the policy loads. --simulate pins the simulated VM's measurement (kept
in --sim-dir).`,
	examples: []string{
		"# A policy for the simulator:",
		"atls policy init --simulate > policy.json",
		"",
		"# A policy for your image:",
		"atls policy init --measurement $MEASUREMENT --out policy.json",
	},
}

var policyFromCertSpec = &cmdSpec{
	name:     "policy from-cert",
	synopsis: []string{"policy from-cert [--out FILE] CERT.pem", "policy from-cert [--out FILE] HOST:PORT", "policy from-cert [--out FILE] --report REPORT.bin [--vcek VCEK.pem]"},
	summary: `Prints a policy that pins what the report in a known-good attested
certificate shows: its measurement, its guest policy bits, its VMPL, its
reported TCB as the minimum TCB, and its host data, ID key and author key
digests, family and image IDs and guest SVN when set. The certificate is not
verified; make sure it comes from a deployment you trust.

For HOST:PORT (or an https:// URL) it connects, sends a nonce as 'atls inspect
--nonce' does, and reads the certificate the server presents; it checks nothing,
so trust the network path as much as the server.

--report reads a raw attestation report instead ('snpguest report' writes one),
with the VCEK that signed it (--vcek; needed for version 2 reports, which do
not name their product line). Nothing is verified either.

A reported TCB below the library's baseline is kept as the minimum TCB, with
an allow_tcb_below_baseline entry naming the evidence it came from, and a
warning: raise minimum_tcb once the host's firmware is updated.`,
	examples: []string{
		"atls policy from-cert --report report.bin --vcek vcek.pem > policy.json",
		"atls policy from-cert cert.pem > policy.json",
		"atls policy from-cert service.internal:8443 > policy.json",
	},
}

func runPolicy(e *env, args []string) int {
	return runGroup(e, policySpec, []subcommand{
		{policyInitSpec, runPolicyInit},
		{policyFromCertSpec, runPolicyFromCert},
		{policyFromLaunchSpec, runPolicyFromLaunch},
	}, args)
}

// starterPolicy is the policy "policy init" writes: the fields of
// snp.Policy that matter most, spelled out even when they hold the
// default, in the order of the explanation.
type starterPolicy struct {
	Measurements []string `json:"measurements"`
	GuestPolicy  struct {
		MinimumABI string `json:"minimum_abi"`
		AllowSMT   bool   `json:"allow_smt"`
	} `json:"guest_policy"`
	AllowDebug                bool               `json:"allow_debug"`
	AllowMigrateMA            bool               `json:"allow_migrate_ma"`
	AllowedVMPLs              []uint32           `json:"allowed_vmpls"`
	AllowVLEK                 bool               `json:"allow_vlek"`
	AllowedReportVersions     []uint32           `json:"allowed_report_versions"`
	MinimumTCB                map[string]snp.TCB `json:"minimum_tcb"`
	PermitProvisionalFirmware bool               `json:"permit_provisional_firmware"`
}

const measurementPlaceholder = "REPLACE-ME: the launch measurement of your VM image, 96 hex digits"

const policyInitGuide = `Explanation of the policy (JSON has no comments):
  measurements         launch measurements (96 hex digits each) of the VM images to accept; list
                       several during a rolling upgrade. Compute it when building the image (e.g.
                       with sev-snp-measure), or read it from a known-good certificate:
                       'atls inspect CERT.pem' or 'atls policy from-cert CERT.pem'.
  guest_policy         the guest policy the VM was launched with: minimum_abi is the lowest ABI it
                       may require; allow_smt accepts guests that allow SMT (nearly all do).
  allow_debug          must stay false: a debuggable guest's memory is readable by the host.
  allow_migrate_ma     must stay false unless you use a migration agent, which can export memory.
  allowed_vmpls        the privilege levels reports may come from; [0] unless a paravisor
                       (e.g. on Azure) requests reports at VMPL 1-3 on your behalf.
  allow_vlek           accept reports signed by a cloud provider's VLEK instead of the chip's VCEK.
  minimum_tcb          the lowest firmware security patch levels per product line. These are the
                       library's baseline, NOT AMD's latest recommendation: raise them after each
                       AMD security bulletin (https://www.amd.com/en/resources/product-security.html).
  permit_provisional_firmware
                       accept firmware that runs but is not committed (the host can roll it back).
More checks (host_data, chip_ids, minimum_guest_svn, trusted_id_key_digests, platform_info, ...):
see the documentation of snp.Policy.`

func runPolicyInit(e *env, args []string) int {
	fs := newFlags(e, policyInitSpec)
	var measurements listFlag
	fs.Var(&measurements, "measurement", "launch measurement to accept, 96 `hex` digits (repeat, or separate with commas, for several)")
	simulate := fs.Bool("simulate", false, "accept the simulated VM's measurement (from --sim-dir; created if needed)")
	simDir := addSimDirFlag(fs)
	out := fs.String("out", "", "write the policy to `file` instead of stdout")
	force := fs.Bool("force", false, "overwrite --out if it exists")
	if _, code := parseArgs(e, fs, policyInitSpec, args, 0, 0); code >= 0 {
		return code
	}
	err := func() error {
		var p starterPolicy
		for _, m := range measurements {
			v, err := parseMeasurement(m)
			if err != nil {
				return usageErrorf("--measurement: %v", err)
			}
			p.Measurements = append(p.Measurements, attest.HexBytes(v[:]).String())
		}
		if *simulate {
			store, err := openSimStore(*simDir, e.stderr)
			if err != nil {
				return err
			}
			vm, err := store.vm()
			if err != nil {
				return err
			}
			p.Measurements = append(p.Measurements, vm.Measurement.String())
		}
		placeholder := len(p.Measurements) == 0
		if placeholder {
			p.Measurements = []string{measurementPlaceholder}
		}
		def := snp.NewPolicy()
		p.GuestPolicy.MinimumABI = "0.0"
		p.GuestPolicy.AllowSMT = def.GuestPolicy.AllowSMT
		p.AllowedVMPLs = def.AllowedVMPLs
		p.AllowedReportVersions = def.AllowedReportVersions
		p.MinimumTCB = snp.BaselineTCB()
		data, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			return err
		}
		data = append(data, '\n')
		if !placeholder {
			// What we print must load.
			if _, err := snp.ParsePolicy(data); err != nil {
				return fmt.Errorf("internal error: the policy does not load: %w", err)
			}
		}
		if err := writeOutput(e, *out, data, *force); err != nil {
			return err
		}
		dest := "stdout"
		if *out != "" {
			dest = *out
		}
		fmt.Fprintf(e.stderr, "atls policy init: wrote a starting policy to %s.\n", dest)
		if placeholder {
			fmt.Fprintln(e.stderr, "Replace the placeholder in \"measurements\" before using it.")
		}
		if *simulate {
			fmt.Fprintln(e.stderr, "It accepts the SIMULATED VM of the simulator; verifiers must also trust the simulator's roots (atls roots export --simulate).")
		}
		fmt.Fprintln(e.stderr, policyInitGuide)
		return nil
	}()
	return finish(e, policyInitSpec, err)
}

func runPolicyFromCert(e *env, args []string) int {
	fs := newFlags(e, policyFromCertSpec)
	out := fs.String("out", "", "write the policy to `file` instead of stdout")
	force := fs.Bool("force", false, "overwrite --out if it exists")
	raw := addRawReportFlags(fs, "(optional)")
	timeout := fs.Duration("timeout", 30*time.Second, "for HOST:PORT: timeout of the connection")
	pos, code := parseArgs(e, fs, policyFromCertSpec, args, 0, 1)
	if code >= 0 {
		return code
	}
	switch {
	case raw.set() && len(pos) > 0:
		return usageFail(e, policyFromCertSpec, "--report and a certificate (%q) exclude each other", pos[0])
	case !raw.set() && *raw.vcek != "":
		return usageFail(e, policyFromCertSpec, "--vcek needs --report")
	case !raw.set() && len(pos) == 0:
		return usageFail(e, policyFromCertSpec, "want a certificate file, HOST:PORT, or --report")
	}
	source := *raw.report
	if !raw.set() {
		source = pos[0]
	}
	err := func() error {
		var ev *attest.Evidence
		if raw.set() {
			report, cert, err := raw.load()
			if err != nil {
				return err
			}
			ev = rawEvidence(report, cert)
		} else {
			t, err := parseTarget(source)
			if err != nil {
				return err
			}
			var cert *x509.Certificate
			if t.file != "" {
				cert, err = loadCertificate(t.file)
			} else {
				// A nonce: a nonce-mode server without a static
				// fallback serves no one without one.
				cert, _, err = fetchCertificate(e.ctx, t, true, *timeout)
			}
			if err != nil {
				return err
			}
			ev, err = attest.FromCertificate(cert)
			if errors.Is(err, atls.ErrNotAttested) {
				return &cliError{code: exitNotAttested, err: fmt.Errorf("%s carries no attestation evidence", source)}
			}
			if err != nil {
				return verifyError(err)
			}
		}
		d, err := snp.DescribeEvidence(ev)
		if err != nil {
			return verifyError(err)
		}
		p, warnings, err := policyFromDescription(d, source)
		if err != nil {
			return err
		}
		data, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			return err
		}
		data = append(data, '\n')
		if _, err := snp.ParsePolicy(data); err != nil {
			return fmt.Errorf("internal error: the policy does not load: %w", err)
		}
		if err := writeOutput(e, *out, data, *force); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "atls policy from-cert: wrote a policy pinning the report of %s (measurement %s).\n", printable(source), shortHex(d.Report.Measurement.String()))
		fmt.Fprintln(e.stderr, "The evidence was not verified: use a policy only from evidence you trust.")
		for _, w := range warnings {
			fmt.Fprintf(e.stderr, "warning: %s\n", printable(w))
		}
		return nil
	}()
	return finish(e, policyFromCertSpec, err)
}

// policyFromDescription builds a policy that accepts the described report
// and pins what it shows.
// source names the evidence (a file) in the policy's exceptions.
func policyFromDescription(d *snp.Description, source string) (*snp.Policy, []string, error) {
	r := &d.Report
	if r.ProductLine == "" {
		return nil, nil, &cliError{code: exitVerify, err: errors.New("the report does not say which product line it comes from")}
	}
	if _, ok := snp.BaselineTCB()[r.ProductLine]; !ok {
		return nil, nil, &cliError{code: exitVerify, err: fmt.Errorf("product line %s is not supported", r.ProductLine)}
	}
	var warnings []string
	nonZero := func(b []byte) bool { return !bytes.Equal(b, make([]byte, len(b))) }

	p := snp.NewPolicy()
	p.Measurements = []attest.HexBytes{r.Measurement}
	if nonZero(r.HostData) {
		p.HostData = r.HostData
	}
	p.MinimumGuestSVN = r.GuestSVN
	if nonZero(r.IDKeyDigest) {
		p.TrustedIDKeyDigests = []attest.HexBytes{r.IDKeyDigest}
		if nonZero(r.FamilyID) {
			p.FamilyID = r.FamilyID
		}
		if nonZero(r.ImageID) {
			p.ImageID = r.ImageID
		}
	}
	if nonZero(r.AuthorKeyDigest) && r.SignerInfo.AuthorKeyEn {
		p.TrustedAuthorKeyDigests = []attest.HexBytes{r.AuthorKeyDigest}
	}

	gp := r.GuestPolicy
	p.GuestPolicy = snp.GuestPolicy{
		MinimumABI:              gp.MinimumABI,
		AllowSMT:                gp.SMT,
		AllowCXL:                gp.CXLAllowed,
		RequireSingleSocket:     gp.SingleSocket,
		RequireAES256XTS:        gp.MemAES256XTS,
		RequireRAPLDisabled:     gp.RAPLDisabled,
		RequireCiphertextHiding: gp.CiphertextHidingDRAM,
		RequirePageSwapDisabled: gp.PageSwapDisabled,
	}
	if gp.Debug {
		p.AllowDebug = true
		warnings = append(warnings, "the guest allows debugging (allow_debug is true): its memory is readable by the host; never accept this in production")
	}
	if gp.MigrateMA {
		p.AllowMigrateMA = true
		warnings = append(warnings, "the guest allows a migration agent (allow_migrate_ma is true)")
	}
	p.AllowedVMPLs = []uint32{r.VMPL}
	if r.VMPL != 0 {
		warnings = append(warnings, fmt.Sprintf("the report comes from VMPL %d (allowed_vmpls is [%d])", r.VMPL, r.VMPL))
	}
	if !slices.Contains(p.AllowedReportVersions, r.Version) {
		p.AllowedReportVersions = append(p.AllowedReportVersions, r.Version)
	}
	if r.SignerInfo.SigningKey == "VLEK" {
		p.AllowVLEK = true
		warnings = append(warnings, "the report is signed by a VLEK (allow_vlek is true): it identifies a cloud provider's fleet, not a chip")
	}
	line, err := snp.ParseProductLine(r.ProductLine)
	if err != nil {
		return nil, nil, &cliError{code: exitVerify, err: err}
	}
	reported := line.DecodeTCB(uint64(r.ReportedTCB.Raw))
	p.MinimumTCB = map[string]snp.TCB{r.ProductLine: reported}
	if base, ok := snp.BaselineTCB()[r.ProductLine]; ok && !reported.AtLeast(base) {
		// Policies refuse a floor below the baseline unless they say
		// why; the reason names the evidence the floor was copied from.
		p.AllowTCBBelowBaseline = map[string]string{r.ProductLine: fmt.Sprintf(
			"minimum_tcb copied by atls policy from-cert from the report of %s, whose reported TCB %v is below the baseline; raise it when the host's firmware is updated",
			strconv.QuoteToASCII(source), reported)}
		warnings = append(warnings, fmt.Sprintf("the reported TCB %v is below the library's %s baseline %v in at least one part "+
			"(allow_tcb_below_baseline[%q] says so; raise minimum_tcb and remove it once the firmware is updated)", reported, r.ProductLine, base, r.ProductLine))
	}
	if r.CommittedTCB.Raw != r.CurrentTCB.Raw || r.CommittedVersion != r.CurrentVersion {
		p.PermitProvisionalFirmware = true
		warnings = append(warnings, "the firmware is provisional (committed differs from current): permit_provisional_firmware is true")
	}
	return p, warnings, nil
}

// writeOutput writes data to path, or to stdout when path is "".
func writeOutput(e *env, path string, data []byte, force bool) error {
	if path == "" {
		_, err := e.stdout.Write(data)
		return err
	}
	return writeFile(path, data, 0o644, force)
}
