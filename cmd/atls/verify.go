package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"slices"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
)

var verifySpec = &cmdSpec{
	name: "verify",
	synopsis: []string{
		"verify --policy FILE [--roots FILE] [--role server|client] [--nonce HEX] [--accept-static [--max-age D]] CERT.pem",
		"verify --policy FILE [--roots FILE] [--accept-static [--max-age D]] HOST:PORT",
		"verify --policy FILE [--roots FILE] --report REPORT.bin --vcek VCEK.pem [--report-data HEX] [--crl CRL]",
	},
	summary: `Verifies an attested certificate, from a file or from a server's TLS
handshake, exactly as an atls peer does: the certificate's validity, the
evidence's binding (role, freshness, REPORT_DATA over the certificate key and
validity), the AMD certificate chain up to the roots (AMD's, or --roots), the
report signature, and --policy.

On success it writes the verified claims as JSON to stdout and exits 0. On
failure it writes one line to stderr naming the failed check, and exits with
a code that says which kind of check failed (below).

A certificate file in nonce (or batch) mode verifies only with the nonce it
was made for (--nonce); a static-mode one only with --accept-static. For HOST:PORT, verify
connects with its own fresh nonce (the server's certificate role is always
server).

Verifying a certificate file shows that its key was made inside the attested
VM; it does not show that whoever presents it holds that key (a TLS handshake
does).

--report verifies a raw 1184-byte attestation report, as 'snpguest report'
writes it, with the VCEK (or VLEK) certificate that signed it (--vcek, PEM or
DER; 'snpguest fetch vcek' gets it) and optionally AMD's CRL (--crl): the chain
to the roots, the signature, the report's structure and --policy. Its
REPORT_DATA is bound to nothing atls knows, so it is not checked unless
--report-data pins it: without it, the claims show what produced the report,
not when, nor for whom (anyone holding the file can show it again).`,
	examples: []string{
		"# A certificate from 'atls certgen --simulate' (static mode):",
		"atls verify --policy policy.json --roots sim-roots.pem --accept-static cert.pem",
		"",
		"# A nonce-bound certificate made for a given nonce:",
		"atls verify --policy policy.json --roots sim-roots.pem --nonce $NONCE cert.pem",
		"",
		"# A running server; the claims' measurement with jq:",
		"atls verify --policy policy.json service.internal:8443 | jq -r .snp.measurement",
		"",
		"# A raw report saved with snpguest, REPORT_DATA pinned to the request's:",
		"atls verify --policy policy.json --report report.bin --vcek vcek.pem --report-data $(xxd -p -c 64 request-file.txt)",
	},
	exits: `Exit codes:
  0  verified; the claims are on stdout
  1  failure: the file cannot be read, the server cannot be reached or refused the handshake
  2  usage or configuration error (flags, arguments, policy or roots file)
  3  not attested: the certificate carries no evidence (id-pe-cmw extension)
  4  verification failed: malformed evidence, a broken AMD chain or report signature,
     or evidence not bound to this certificate, role, nonce or time (binding.*, snp.*)
  5  policy failed: authentic, bound evidence that the policy refuses (policy.*)`,
}

func runVerify(e *env, args []string) int {
	fs := newFlags(e, verifySpec)
	vf := addVerifierFlags(fs, "the")
	role := fs.String("role", "server", "`role` the certificate must have been made for: server or client")
	nonce := fs.String("nonce", "", "for a nonce- or batch-mode certificate file: the nonce it must be bound to, 64 `hex` digits")
	acceptStatic := fs.Bool("accept-static", false, "accept static-mode evidence no older than --max-age")
	maxAge := fs.Duration("max-age", atls.DefaultMaxAge, "with --accept-static: the oldest static evidence accepted")
	timeout := fs.Duration("timeout", 30*time.Second, "for HOST:PORT: timeout of the connection")
	raw := addRawReportFlags(fs, "(required)")
	reportData := fs.String("report-data", "", "with --report: the REPORT_DATA the report must carry, 128 `hex` digits (default: not checked)")
	crl := fs.String("crl", "", "with --report: AMD's CRL `file` for the product line (PEM or DER, as 'snpguest fetch crl' writes it)")
	pos, code := parseArgs(e, fs, verifySpec, args, 0, 1)
	if code >= 0 {
		return code
	}
	if raw.set() {
		return runVerifyReport(e, fs, vf, raw, *reportData, *crl, pos)
	}
	if used := setFlags(fs, "vcek", "report-data", "crl"); len(used) > 0 {
		return usageFail(e, verifySpec, "--%s needs --report", used[0])
	}
	if len(pos) == 0 {
		return usageFail(e, verifySpec, "want a certificate file, HOST:PORT, or --report")
	}
	claims, src, err := verify(e, pos[0], verifyOptions{
		verifier: vf, role: *role, nonce: *nonce, acceptStatic: *acceptStatic, maxAge: *maxAge, timeout: *timeout,
	})
	if err == nil {
		err = writeJSON(e.stdout, claims)
	}
	if err == nil {
		fmt.Fprintf(e.stderr, "atls verify: OK: %s: %s\n", printable(src.String()), claimsSummary(claims))
	}
	return finish(e, verifySpec, err)
}

type verifyOptions struct {
	verifier     *verifierFlags
	role, nonce  string
	acceptStatic bool
	maxAge       time.Duration
	timeout      time.Duration
}

func verify(e *env, arg string, o verifyOptions) (*atls.Claims, target, error) {
	t, err := parseTarget(arg)
	if err != nil {
		return nil, t, err
	}
	role, err := attest.ParseRole(o.role)
	if err != nil {
		return nil, t, usageErrorf("--role: %v", err)
	}
	var nonce *[attest.NonceSize]byte
	if o.nonce != "" {
		if nonce, err = parseNonce(o.nonce); err != nil {
			return nil, t, usageErrorf("%v", err)
		}
	}
	if t.file == "" && nonce != nil {
		return nil, t, usageErrorf("--nonce is for certificate files: connecting to %s sends a fresh nonce", t.addr)
	}
	if t.file == "" && role != attest.RoleServer {
		return nil, t, usageErrorf("--role client is for certificate files: a server always presents a server certificate")
	}
	ver, err := o.verifier.verifier()
	if err != nil {
		return nil, t, err
	}
	rootsGiven := *o.verifier.roots != ""

	if t.file != "" {
		cert, err := loadCertificate(t.file)
		if err != nil {
			return nil, t, err
		}
		claims, err := atls.VerifyCertificate(e.ctx, cert, atls.VerifyCertificateOptions{
			Verifier: ver, Role: role, Nonce: nonce, AcceptStatic: o.acceptStatic, MaxAge: o.maxAge,
		})
		return claims, t, verifyError(withHint(err, rootsGiven))
	}

	cli, err := atls.NewClient(atls.ClientOptions{
		Verifier: ver, AcceptStatic: o.acceptStatic, MaxAge: o.maxAge,
		// Common protocols besides the nonce, so that a server that is
		// not atls does not refuse the handshake for want of one (and is
		// found "not attested"). verify sends no application data.
		Base: &tls.Config{NextProtos: []string{"h2", "http/1.1"}},
	})
	if err != nil {
		return nil, t, err
	}
	ctx, cancel := context.WithTimeout(e.ctx, o.timeout)
	defer cancel()
	conn, err := cli.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		var ce *attest.CheckError
		if errors.As(err, &ce) {
			return nil, t, verifyError(withHint(ce, rootsGiven))
		}
		return nil, t, handshakeError(err, false)
	}
	defer conn.Close()
	claims, ok := cli.PeerClaims(conn.ConnectionState())
	if !ok {
		return nil, t, errors.New("internal error: no verified claims for the connection")
	}
	return claims, t, nil
}

// setFlags returns which of names were set on the command line.
func setFlags(fs *flag.FlagSet, names ...string) []string {
	var out []string
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains(names, f.Name) {
			out = append(out, f.Name)
		}
	})
	return out
}

// runVerifyReport is 'atls verify --report'.
func runVerifyReport(e *env, fs *flag.FlagSet, vf *verifierFlags, raw *rawReportFlags, reportData, crlPath string, pos []string) int {
	if len(pos) > 0 {
		return usageFail(e, verifySpec, "--report and a certificate or HOST:PORT (%q) exclude each other", pos[0])
	}
	if used := setFlags(fs, "role", "nonce", "accept-static", "max-age", "timeout"); len(used) > 0 {
		return usageFail(e, verifySpec, "--%s is for certificates and endpoints, not --report", used[0])
	}
	if *raw.vcek == "" {
		return usageFail(e, verifySpec, "--report needs --vcek: the VCEK (or VLEK) certificate that signed the report")
	}
	var rd *[attest.ReportDataSize]byte
	if reportData != "" {
		var err error
		if rd, err = parseReportData(reportData); err != nil {
			return usageFail(e, verifySpec, "%v", err)
		}
	}
	claims, err := func() (*atls.Claims, error) {
		ver, err := vf.verifier()
		if err != nil {
			return nil, err
		}
		report, cert, err := raw.load()
		if err != nil {
			return nil, err
		}
		var crl []byte
		if crlPath != "" {
			if crl, err = loadCRL(crlPath); err != nil {
				return nil, err
			}
		}
		claims, err := ver.VerifyUnboundReport(e.ctx, report, cert, crl, rd)
		return claims, verifyError(withHint(err, *vf.roots != ""))
	}()
	if err == nil {
		err = writeJSON(e.stdout, unboundClaims{Claims: claims})
	}
	if err != nil {
		return finish(e, verifySpec, err)
	}
	summary := fmt.Sprintf("%s raw report v%d, %s, measurement %s", claims.Platform, claims.SNP.ReportVersion, claims.SNP.Product, shortHex(claims.SNP.Measurement.String()))
	if claims.Simulated {
		summary += " (SIMULATED)"
	}
	fmt.Fprintf(e.stderr, "atls verify: OK: %s: %s\n", printable(*raw.report), printable(summary))
	if rd == nil {
		fmt.Fprintln(e.stderr, "atls verify: note: REPORT_DATA was not checked (no --report-data): the report shows what produced it, not when or for whom.")
	}
	return exitOK
}

// unboundClaims are the claims of a raw report, without the binding
// parameters (role, mode) that it does not have.
type unboundClaims struct {
	*atls.Claims
	// Role and Mode hide the embedded fields of the same JSON names.
	Role *struct{} `json:"role,omitempty"`
	Mode *struct{} `json:"mode,omitempty"`
}
