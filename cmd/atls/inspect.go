package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

var inspectSpec = &cmdSpec{
	name:     "inspect",
	synopsis: []string{"inspect [--json] CERT.pem", "inspect [--json] [--nonce] HOST:PORT", "inspect [--json] --report REPORT.bin [--vcek VCEK.pem]"},
	summary: `Decodes the attestation evidence of a certificate and prints it: the binding
parameters, every field of the SEV-SNP report (TCB values split into their
parts, guest policy and platform info bit by bit, chip ID), and the VCEK
certificate with its AMD extensions. --json prints the same as JSON.

inspect does NOT verify anything: a forged report decodes just as well. Use
'atls verify' to check evidence against AMD's roots and a policy.

For HOST:PORT it connects with an ordinary TLS 1.3 client that checks nothing,
only to receive the server's certificate. Without --nonce it sends no nonce,
so the server must serve static certificates (atls serve does by default);
with --nonce it sends a random one and gets a nonce-bound certificate.

--report decodes a raw 1184-byte attestation report instead, as 'snpguest
report' writes it, with the VCEK (or VLEK) certificate given by --vcek, if any.

If the simulator's chain exists (in --sim-dir) and issued the VCEK, the output
says SIMULATED.`,
	examples: []string{
		"atls inspect cert.pem",
		"atls inspect --json 127.0.0.1:8443 | jq .evidence.report.measurement",
		"atls inspect --nonce service.internal:8443",
		"atls inspect --report report.bin --vcek vcek.pem",
	},
	exits: `Exit codes:
  0  decoded
  1  failure (the file cannot be read, the server cannot be reached or refused)
  2  usage error
  3  the certificate carries no attestation evidence
  4  the evidence is malformed and cannot be decoded`,
}

func runInspect(e *env, args []string) int {
	fs := newFlags(e, inspectSpec)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	sendNonce := fs.Bool("nonce", false, "for HOST:PORT: send a random nonce, for a nonce-bound certificate")
	simDir := addSimDirFlag(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "for HOST:PORT: timeout of the connection")
	raw := addRawReportFlags(fs, "(optional)")
	pos, code := parseArgs(e, fs, inspectSpec, args, 0, 1)
	if code >= 0 {
		return code
	}
	switch {
	case raw.set() && len(pos) > 0:
		return usageFail(e, inspectSpec, "--report and a certificate or HOST:PORT (%q) exclude each other", pos[0])
	case raw.set() && *sendNonce:
		return usageFail(e, inspectSpec, "--nonce is for HOST:PORT, not --report")
	case raw.set():
		return finish(e, inspectSpec, inspectReport(e, raw, *asJSON, *simDir))
	case *raw.vcek != "":
		return usageFail(e, inspectSpec, "--vcek needs --report")
	case len(pos) == 0:
		return usageFail(e, inspectSpec, "want a certificate file, HOST:PORT, or --report")
	}
	return finish(e, inspectSpec, inspect(e, pos[0], *asJSON, *sendNonce, *simDir, *timeout))
}

// inspectReport decodes a raw report file (inspect --report).
func inspectReport(e *env, raw *rawReportFlags, asJSON bool, simDir string) error {
	report, cert, err := raw.load()
	if err != nil {
		return err
	}
	ev := rawEvidence(report, cert)
	out := inspectOutput{Source: *raw.report, Note: notVerifiedReportNote}
	if out.Evidence, err = snp.DescribeEvidence(ev); err != nil {
		return verifyError(err)
	}
	// A raw report has no binding record, and no certificate unless
	// --vcek gave one: neither is a problem to report.
	d := out.Evidence
	d.CollectionType, d.Digest = "", nil
	certProblem := d.Report.SignerInfo.SigningKey + " certificate:"
	d.Problems = slices.DeleteFunc(d.Problems, func(p string) bool {
		return strings.HasPrefix(p, "no binding record") || (cert == nil && strings.HasPrefix(p, certProblem))
	})
	if cert == nil {
		d.SignerCert = snp.CertDescription{}
	} else {
		out.Simulated = simulatorHint(e, simDir, ev)
	}
	if asJSON {
		return writeJSON(e.stdout, out)
	}
	writeInspectTable(e.stdout, &out)
	return nil
}

// inspectOutput is the JSON output of inspect.
type inspectOutput struct {
	Source   string `json:"source"`
	Verified bool   `json:"verified"`
	Note     string `json:"note"`
	// NonceSent is the nonce inspect sent to the server (--nonce).
	NonceSent   attest.HexBytes  `json:"nonce_sent,omitempty"`
	Simulated   string           `json:"simulated,omitempty"`
	Certificate *inspectCert     `json:"certificate,omitempty"` // nil for --report
	Evidence    *snp.Description `json:"evidence"`
}

type inspectCert struct {
	Subject     string          `json:"subject"`
	Serial      string          `json:"serial"`
	NotBefore   time.Time       `json:"not_before"`
	NotAfter    time.Time       `json:"not_after"`
	Key         string          `json:"key"`
	SPKISHA256  attest.HexBytes `json:"spki_sha256"`
	DNSNames    []string        `json:"dns_names,omitempty"`
	ExtKeyUsage []string        `json:"ext_key_usage,omitempty"`
}

const notVerifiedReportNote = "NOT VERIFIED: this decodes what the report claims; nothing has been checked " +
	"(AMD signatures, policy), and a forgery decodes just as well. Use 'atls verify --report'."

const notVerifiedNote = "NOT VERIFIED: this decodes what the certificate claims; nothing has been checked " +
	"(AMD signatures, binding, policy), and a forgery decodes just as well. Use 'atls verify'."

func inspect(e *env, arg string, asJSON, sendNonce bool, simDir string, timeout time.Duration) error {
	t, err := parseTarget(arg)
	if err != nil {
		return err
	}
	if t.file != "" && sendNonce {
		return usageErrorf("--nonce is for HOST:PORT")
	}
	out := inspectOutput{Source: t.String(), Note: notVerifiedNote}
	var cert *x509.Certificate
	if t.file != "" {
		cert, err = loadCertificate(t.file)
	} else {
		cert, out.NonceSent, err = fetchCertificate(e.ctx, t, sendNonce, timeout)
	}
	if err != nil {
		return err
	}
	leaf := describeLeaf(cert)
	out.Certificate = &leaf

	ev, err := attest.FromCertificate(cert)
	if errors.Is(err, atls.ErrNotAttested) {
		return &cliError{code: exitNotAttested, err: fmt.Errorf("%s: not attested: the certificate (%s) carries no attestation evidence (no id-pe-cmw extension)", t, cert.Subject)}
	}
	if err != nil {
		return verifyError(err)
	}
	if out.Evidence, err = snp.DescribeEvidence(ev); err != nil {
		return verifyError(err)
	}
	out.Simulated = simulatorHint(e, simDir, ev)

	if asJSON {
		return writeJSON(e.stdout, out)
	}
	writeInspectTable(e.stdout, &out)
	return nil
}

// fetchCertificate gets the leaf certificate of a TLS 1.3 server, checking
// nothing.
func fetchCertificate(ctx context.Context, t target, sendNonce bool, timeout time.Duration) (*x509.Certificate, attest.HexBytes, error) {
	cfg := &tls.Config{
		// inspect only reads the certificate; it trusts nothing it shows.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		ServerName:         t.serverName(),
	}
	var nonce attest.HexBytes
	if sendNonce {
		nonce = make([]byte, attest.NonceSize)
		_, _ = rand.Read(nonce)
		// After common protocols, so that servers that are not atls
		// still find one in common.
		cfg.NextProtos = []string{"h2", "http/1.1", atls.NoncePrefix + hex.EncodeToString(nonce)}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := &tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		var oe *net.OpError
		if !sendNonce && errors.As(err, &oe) && oe.Op == "remote error" {
			return nil, nil, fmt.Errorf("%s refused a handshake without a nonce (%v): it serves no static certificate; try --nonce", t.addr, err)
		}
		return nil, nil, err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, nil, fmt.Errorf("%s sent no certificate", t.addr)
	}
	return certs[0], nonce, nil
}

func describeLeaf(c *x509.Certificate) inspectCert {
	spki := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	out := inspectCert{
		Subject: c.Subject.String(), Serial: c.SerialNumber.Text(16),
		NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		Key: keyDescription(c.PublicKey), SPKISHA256: spki[:], DNSNames: c.DNSNames,
	}
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			out.ExtKeyUsage = append(out.ExtKeyUsage, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			out.ExtKeyUsage = append(out.ExtKeyUsage, "clientAuth")
		default:
			out.ExtKeyUsage = append(out.ExtKeyUsage, fmt.Sprint(u))
		}
	}
	return out
}

func keyDescription(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}

// simulatorHint says whether the simulator's chain (if there is one in
// simDir; none is created) issued the evidence's VCEK.
func simulatorHint(e *env, simDir string, ev *attest.Evidence) string {
	store, err := openSimStore(simDir, io.Discard)
	if err != nil {
		return ""
	}
	chain, err := store.existingChain()
	if err != nil || chain == nil {
		return ""
	}
	p, err := snp.ParseEvidence(ev)
	if err != nil {
		return ""
	}
	vcek, err := x509.ParseCertificate(p.Cert)
	if err != nil || vcek.CheckSignatureFrom(chain.ASK) != nil {
		return ""
	}
	return "SIMULATED: the VCEK was issued by the simulated AMD chain in " + store.dir
}

// writeInspectTable prints o as a table. Most of it comes from the peer
// unverified (certificate names, the VCEK's and the CRL's names), so
// every value goes through printable.
func writeInspectTable(w io.Writer, o *inspectOutput) {
	d := o.Evidence
	r := &d.Report
	fmt.Fprintf(w, "atls inspect: %s\n", printable(o.Source))
	fmt.Fprintln(w, wrap(o.Note, 78))
	if o.Simulated != "" {
		fmt.Fprintf(w, "\n%s\n", printable(o.Simulated))
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	section := func(title string) { fmt.Fprintf(tw, "\n%s\n", printable(title)) }
	row := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "  %s\t%s\n", k, printable(fmt.Sprintf(format, args...)))
	}
	sub := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "    %s\t%s\n", k, printable(fmt.Sprintf(format, args...)))
	}
	yes := func(b bool, y, n string) string {
		if b {
			return y
		}
		return n
	}

	if c := o.Certificate; c != nil {
		section("Certificate")
		row("subject", "%s", c.Subject)
		row("serial", "%s", c.Serial)
		row("validity", "%s to %s (%v)", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), c.NotAfter.Sub(c.NotBefore))
		row("key", "%s", c.Key)
		row("spki sha-256", "%s", c.SPKISHA256)
		if len(c.DNSNames) > 0 {
			row("dns names", "%s", strings.Join(c.DNSNames, ", "))
		}
		if len(c.ExtKeyUsage) > 0 {
			row("ext key usage", "%s", strings.Join(c.ExtKeyUsage, ", "))
		}
		section("Evidence (id-pe-cmw)")
	}
	if o.Certificate != nil {
		row("collection type", "%s", d.CollectionType)
		row("evidence digest", "%s", d.Digest)
	}
	if b := d.Binding; b != nil {
		row("binding version", "%d", b.Version)
		row("role", "%s", b.Role)
		fresh := b.Mode.String()
		switch {
		case b.Mode == attest.ModeStatic:
			fresh += " (bound to the key and validity only; no nonce)"
		case len(o.NonceSent) > 0:
			fresh += fmt.Sprintf(" (inspect sent nonce %s)", o.NonceSent)
		}
		row("freshness", "%s", fresh)
	}
	if p := d.BatchProof; p != nil {
		row("batch proof", "leaf %d of %d, %d sibling hashes (the report commits to the batch's Merkle root)", p.Index, p.Size, p.PathLength)
	}

	section("Attestation report")
	row("version", "%d", r.Version)
	product := r.ProductLine
	if product == "" {
		product = "unknown"
	}
	if r.CPUID != nil {
		product += fmt.Sprintf(" (CPUID family 0x%x, model 0x%x, stepping %d)", r.CPUID.Family, r.CPUID.Model, r.CPUID.Stepping)
	}
	row("product line", "%s", product)
	row("measurement", "%s", r.Measurement)
	row("host data", "%s", r.HostData)
	row("report data", "%s", r.ReportData)
	row("guest svn", "%d", r.GuestSVN)
	row("vmpl", "%d", r.VMPL)
	gp := r.GuestPolicy
	row("guest policy", "%s", gp.Raw)
	sub("minimum abi", "%s", gp.MinimumABI)
	sub("smt", "%s", yes(gp.SMT, "allowed", "not allowed"))
	sub("migration agent", "%s", yes(gp.MigrateMA, "ALLOWED", "not allowed"))
	sub("debug", "%s", yes(gp.Debug, "ALLOWED (the host can read and write guest memory)", "not allowed"))
	sub("single socket", "%s", yes(gp.SingleSocket, "required", "not required"))
	sub("cxl", "%s", yes(gp.CXLAllowed, "allowed", "not allowed"))
	sub("aes-256-xts", "%s", yes(gp.MemAES256XTS, "required", "not required"))
	sub("rapl disabled", "%s", yes(gp.RAPLDisabled, "required", "not required"))
	sub("ciphertext hiding", "%s", yes(gp.CiphertextHidingDRAM, "required", "not required"))
	sub("page swap", "%s", yes(gp.PageSwapDisabled, "disabled", "allowed"))
	row("family id", "%s", r.FamilyID)
	row("image id", "%s", r.ImageID)
	row("id key digest", "%s", r.IDKeyDigest)
	row("author key digest", "%s", r.AuthorKeyDigest)
	row("signer info", "signed by the %s", r.SignerInfo.SigningKey)
	sub("chip id masked", "%s", yes(r.SignerInfo.MaskChipKey, "yes", "no"))
	sub("author key", "%s", yes(r.SignerInfo.AuthorKeyEn, "enabled", "not enabled"))
	row("reported tcb", "%s", r.ReportedTCB)
	row("current tcb", "%s", r.CurrentTCB)
	row("committed tcb", "%s", r.CommittedTCB)
	row("launch tcb", "%s", r.LaunchTCB)
	row("firmware", "%s (committed %s)", r.CurrentVersion, r.CommittedVersion)
	pi := r.PlatformInfo
	row("platform info", "%s", pi.Raw)
	sub("smt", "%s", yes(pi.SMTEnabled, "enabled", "disabled"))
	sub("tsme", "%s", yes(pi.TSMEEnabled, "enabled", "disabled"))
	sub("ecc memory", "%s", yes(pi.ECCEnabled, "enabled", "not reported"))
	sub("rapl", "%s", yes(pi.RAPLDisabled, "disabled", "enabled"))
	sub("ciphertext hiding", "%s", yes(pi.CiphertextHidingEnabled, "enabled", "disabled"))
	sub("alias check", "%s", yes(pi.AliasCheckComplete, "complete", "not complete"))
	sub("sev-tio", "%s", yes(pi.TIOEnabled, "enabled", "disabled"))
	if r.LaunchMitVector != nil {
		row("launch mit vector", "%s", *r.LaunchMitVector)
		row("current mit vector", "%s", *r.CurrentMitVector)
	}
	row("chip id", "%s", yes(r.ChipIDMasked, "masked (all zeros)", r.ChipID.String()))
	row("report id", "%s", r.ReportID)
	row("report id ma", "%s", r.ReportIDMA)
	row("signature", "%s (%d)", r.SignatureAlgName, r.SignatureAlg)
	sub("r", "%s", r.SignatureR)
	sub("s", "%s", r.SignatureS)

	sc := d.SignerCert
	section(fmt.Sprintf("Signing key certificate (%s)", r.SignerInfo.SigningKey))
	if sc.Subject != "" {
		row("subject", "%s", sc.Subject)
		row("issuer", "%s", sc.Issuer)
		row("serial", "%s", sc.Serial)
		row("validity", "%s to %s", sc.NotBefore.UTC().Format(time.RFC3339), sc.NotAfter.UTC().Format(time.RFC3339))
		row("signature", "%s", sc.SignatureAlgorithm)
		row("public key", "%s", sc.PublicKeyAlgorithm)
	}
	if len(sc.SHA256) == 0 {
		row("certificate", "not given (--vcek)")
	} else {
		row("sha-256", "%s", sc.SHA256)
	}
	if sc.ProductName != "" {
		row("product name", "%s", sc.ProductName)
	}
	if sc.TCB != nil {
		row("tcb", "%s", *sc.TCB)
	}
	if len(sc.HWID) > 0 {
		row("hwid", "%s", sc.HWID)
	}
	if sc.CSPID != "" {
		row("csp id", "%s", sc.CSPID)
	}
	if crl := d.CRL; crl != nil {
		section("CRL")
		row("issuer", "%s", crl.Issuer)
		row("this update", "%s", crl.ThisUpdate.UTC().Format(time.RFC3339))
		row("next update", "%s", crl.NextUpdate.UTC().Format(time.RFC3339))
		row("revoked", "%d", crl.Revoked)
	}
	if len(d.Problems) > 0 {
		section("Could not decode")
		for _, p := range d.Problems {
			fmt.Fprintf(tw, "  %s\n", printable(p))
		}
	}
	_ = tw.Flush()
}

// wrap breaks s into lines of at most width characters.
func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for _, word := range strings.Fields(s) {
		if n > 0 && n+1+len(word) > width {
			b.WriteByte('\n')
			n = 0
		} else if n > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}
