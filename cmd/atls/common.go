package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/atls/snp/guest"
)

// attesterFlags select the attester: the SEV-SNP hardware of this VM, or
// the simulator.
type attesterFlags struct {
	simulate     *bool
	simDir       *string
	measurement  *string
	certCache    *string
	allowNetwork *bool
}

func addSimDirFlag(fs *flag.FlagSet) *string {
	return fs.String("sim-dir", "", "simulator state `directory` (default <user config dir>/atls/sim)")
}

func addAttesterFlags(fs *flag.FlagSet, simulateUsage string) *attesterFlags {
	return &attesterFlags{
		simulate:     fs.Bool("simulate", false, simulateUsage),
		simDir:       addSimDirFlag(fs),
		measurement:  fs.String("measurement", "", "with --simulate: the simulated launch measurement, 96 `hex` digits\n(default: the simulated VM's, kept in --sim-dir)"),
		certCache:    fs.String("cert-cache", "", "on SEV-SNP: `directory` caching the VCEK certificate when the host does not supply it"),
		allowNetwork: fs.Bool("allow-network", false, "on SEV-SNP: download a missing VCEK certificate from AMD's Key Distribution Service"),
	}
}

// check reports flag combinations that make no sense.
func (a *attesterFlags) check() error {
	if !*a.simulate && *a.measurement != "" {
		return usageErrorf("--measurement needs --simulate (real hardware measures the VM at launch)")
	}
	if *a.simulate && (*a.certCache != "" || *a.allowNetwork) {
		return usageErrorf("--cert-cache and --allow-network are for SEV-SNP hardware, not --simulate")
	}
	if *a.measurement != "" {
		if _, err := parseMeasurement(*a.measurement); err != nil {
			return usageErrorf("--measurement: %v", err)
		}
	}
	return nil
}

// attester returns the selected attester and a description for logs.
func (a *attesterFlags) attester(e *env, log *slog.Logger) (attest.Attester, bool, error) {
	if err := a.check(); err != nil {
		return nil, false, err
	}
	if *a.simulate {
		store, err := openSimStore(*a.simDir, e.stderr)
		if err != nil {
			return nil, true, err
		}
		var override *[48]byte
		if *a.measurement != "" {
			m, _ := parseMeasurement(*a.measurement) // checked
			override = &m
		}
		att, err := store.attester(override)
		return att, true, err
	}
	att, err := guest.NewAttester(guest.AttesterOptions{CertCacheDir: *a.certCache, AllowNetwork: *a.allowNetwork, Logger: log})
	if err != nil {
		return nil, false, noSNP(err)
	}
	return att, false, nil
}

// noSNP explains a missing SEV-SNP guest interface.
func noSNP(err error) error {
	if !errors.Is(err, atls.ErrUnsupported) {
		return err
	}
	cause := err.Error()
	var ce *attest.CheckError
	if errors.As(err, &ce) && ce.Err != nil {
		cause = ce.Err.Error()
	}
	cause, _, _ = strings.Cut(cause, "; use the simulator")
	if rest, ok := strings.CutPrefix(cause, "SEV-SNP is not available on this machine"); ok {
		return fmt.Errorf("SEV-SNP not available on this machine%s; run with --simulate to use the simulator instead", rest)
	}
	return fmt.Errorf("SEV-SNP not available: %s; run with --simulate to use the simulator instead", cause)
}

// verifierFlags select the policy and the roots of trust.
type verifierFlags struct {
	policy, roots *string
}

func addVerifierFlags(fs *flag.FlagSet, whose string) *verifierFlags {
	return &verifierFlags{
		policy: fs.String("policy", "", "JSON policy `file` that "+whose+" evidence must satisfy (see 'atls policy init')"),
		roots:  fs.String("roots", "", "PEM `file` of AMD roots (ARK, ASK) to trust instead of AMD's published ones,\nfor example the simulator's from 'atls roots export --simulate'"),
	}
}

// verifier loads the policy and roots. A missing --policy is a usage
// error; an invalid file a configuration error.
func (v *verifierFlags) verifier() (*snp.Verifier, error) {
	if *v.policy == "" {
		return nil, usageErrorf("--policy is required (start from 'atls policy init' or 'atls policy from-cert')")
	}
	pol, err := snp.LoadPolicy(*v.policy)
	if err != nil {
		return nil, configError(err)
	}
	roots, err := loadRoots(*v.roots)
	if err != nil {
		return nil, configError(err)
	}
	ver, err := snp.NewVerifier(snp.VerifierOptions{Roots: roots, Policy: pol})
	return ver, configError(err)
}

// loadRoots reads a roots file, or returns AMD's roots for "". Roots
// that are not all AMD's published ones are marked simulated, so that
// claims verified under them say SIMULATED.
func loadRoots(path string) (*snp.Roots, error) {
	if path == "" {
		return snp.AMDRoots(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	amd := map[string]bool{}
	for rest := snp.AMDRoots().PEM(); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		amd[string(b.Bytes)] = true
	}
	allAMD := true
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" && !amd[string(b.Bytes)] {
			allAMD = false
		}
	}
	r, err := snp.ParseRootsPEM(data, !allAMD)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// loadCertificate reads the first certificate of a PEM file (or a DER
// file).
func loadCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rest := data
	sawPEM := false
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		sawPEM = true
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return c, nil
		}
	}
	if sawPEM || bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%s: no CERTIFICATE block", path)
	}
	c, err := x509.ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("%s: neither a PEM nor a DER certificate: %w", path, err)
	}
	return c, nil
}

// target is what verify and inspect look at: a certificate file or a
// network endpoint.
type target struct {
	file string // set for a file
	addr string // HOST:PORT otherwise
	host string // for SNI
}

func (t target) String() string {
	if t.file != "" {
		return t.file
	}
	return t.addr
}

// parseTarget reads CERT.pem, HOST:PORT or an https:// URL. An existing
// file wins.
func parseTarget(arg string) (target, error) {
	if st, err := os.Stat(arg); err == nil && !st.IsDir() {
		return target{file: arg}, nil
	}
	hostport := arg
	if strings.Contains(arg, "://") {
		u, err := url.Parse(arg)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return target{}, usageErrorf("%q: want a certificate file, HOST:PORT or an https:// URL", arg)
		}
		hostport = u.Host
		if u.Port() == "" {
			hostport = net.JoinHostPort(u.Hostname(), "443")
		}
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || port == "" {
		return target{}, usageErrorf("%q is not a file, and not HOST:PORT", arg)
	}
	return target{addr: hostport, host: host}, nil
}

// serverName is the SNI to send: the host, unless it is an IP address.
func (t target) serverName() string {
	if net.ParseIP(t.host) != nil {
		return ""
	}
	return t.host
}
