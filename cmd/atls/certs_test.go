package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/certgen"
)

// setup is a simulator directory with its roots and a policy for its VM.
type setup struct {
	dir, roots, policy string
	measurement        string
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	s := &setup{dir: simDir(t)}
	work := t.TempDir()
	s.roots = filepath.Join(work, "sim-roots.pem")
	s.policy = filepath.Join(work, "policy.json")
	mustRun(t, exitOK, "roots", "export", "--simulate", "--sim-dir", s.dir, "--out", s.roots)
	mustRun(t, exitOK, "policy", "init", "--simulate", "--sim-dir", s.dir, "--out", s.policy)
	vm, err := (&simStore{dir: s.dir}).vm()
	require.NoError(t, err)
	s.measurement = vm.Measurement.String()
	return s
}

// certgen writes a certificate with extra flags and returns its path.
func (s *setup) certgen(t *testing.T, extra ...string) string {
	t.Helper()
	work := t.TempDir()
	cert, key := filepath.Join(work, "cert.pem"), filepath.Join(work, "key.pem")
	args := append([]string{"certgen", "--simulate", "--sim-dir", s.dir, "--out-cert", cert, "--out-key", key}, extra...)
	r := mustRun(t, exitOK, args...)
	require.Contains(t, r.stderr, "SIMULATED")
	st, err := os.Stat(key)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "key file mode")
	return cert
}

// verifyFails runs verify, requires exit code want and a single line on
// stderr naming check, and nothing on stdout.
func verifyFails(t *testing.T, want int, check string, args ...string) {
	t.Helper()
	r := atlsRun(t, append([]string{"verify"}, args...)...)
	require.Equal(t, want, r.code, "%v", r)
	require.Empty(t, r.stdout)
	require.True(t, strings.HasPrefix(r.stderr, "atls verify: "), r.stderr)
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line on stderr: %q", r.stderr)
	if check != "" {
		require.Contains(t, r.stderr, `check "`+check+`"`)
	}
}

// verifyUsage runs verify and requires a usage error.
func verifyUsage(t *testing.T, args ...string) {
	t.Helper()
	r := atlsRun(t, append([]string{"verify"}, args...)...)
	require.Equal(t, exitUsage, r.code, "%v", r)
	require.Empty(t, r.stdout)
	require.True(t, strings.HasPrefix(r.stderr, "atls verify: "), r.stderr)
	require.Contains(t, r.stderr, "Usage: atls verify")
}

func TestCertificateRoundTrip(t *testing.T) {
	s := newSetup(t)
	cert := s.certgen(t)

	// verify: the claims as JSON on stdout.
	r := mustRun(t, exitOK, "verify", "--policy", s.policy, "--roots", s.roots, "--accept-static", cert)
	var claims atls.Claims
	decodeJSON(t, r.stdout, &claims)
	require.True(t, claims.Simulated)
	require.Equal(t, attest.RoleServer, claims.Role)
	require.Equal(t, attest.ModeStatic, claims.Mode)
	require.Equal(t, s.measurement, claims.SNP.Measurement.String())
	require.Contains(t, r.stderr, "OK")
	require.Contains(t, r.stderr, "SIMULATED")

	// inspect: the same report, decoded, not verified.
	r = mustRun(t, exitOK, "inspect", "--sim-dir", s.dir, cert)
	for _, want := range []string{"NOT VERIFIED", "SIMULATED", s.measurement, "reported tcb", "bootloader 4, tee 0, snp 24, microcode 219",
		"guest policy", "debug", "platform info", "Signing key certificate (VCEK)", "Milan-B1", "freshness        static"} {
		require.Contains(t, r.stdout, want)
	}
	r = mustRun(t, exitOK, "inspect", "--json", "--sim-dir", s.dir, cert)
	var out inspectOutput
	decodeJSON(t, r.stdout, &out)
	require.False(t, out.Verified)
	require.Contains(t, out.Note, "NOT VERIFIED")
	require.Contains(t, out.Simulated, "SIMULATED")
	require.Equal(t, s.measurement, out.Evidence.Report.Measurement.String())
	require.Equal(t, claims.EvidenceDigest.String(), out.Evidence.Digest.String())
	require.Equal(t, "server", out.Evidence.Binding.Role.String())
	// Without the simulator's directory, inspect cannot say.
	r = mustRun(t, exitOK, "inspect", "--sim-dir", t.TempDir(), cert)
	require.NotContains(t, r.stdout, "SIMULATED")

	// policy from-cert: pins this report, loads, and accepts it.
	fromCert := filepath.Join(t.TempDir(), "from-cert.json")
	mustRun(t, exitOK, "policy", "from-cert", "--out", fromCert, cert)
	data, err := os.ReadFile(fromCert)
	require.NoError(t, err)
	p, err := snp.ParsePolicy(data)
	require.NoError(t, err)
	require.Equal(t, s.measurement, p.Measurements[0].String())
	require.Equal(t, snp.TCB{Bootloader: 4, SNP: 24, Microcode: 219}, p.MinimumTCB["Milan"])
	mustRun(t, exitOK, "verify", "--policy", fromCert, "--roots", s.roots, "--accept-static", cert)

	// Nonce mode: only with the nonce it was made for.
	nonce := strings.Repeat("5a", 32)
	ncert := s.certgen(t, "--nonce", nonce)
	mustRun(t, exitOK, "verify", "--policy", s.policy, "--roots", s.roots, "--nonce", nonce, ncert)
	verifyFails(t, exitVerify, "binding.nonce", "--policy", s.policy, "--roots", s.roots, ncert)
	verifyFails(t, exitVerify, "snp.report_data", "--policy", s.policy, "--roots", s.roots, "--nonce", strings.Repeat("a5", 32), ncert)

	// Client role; key types.
	ccert := s.certgen(t, "--role", "client", "--key-type", "ed25519", "--validity", "5m")
	mustRun(t, exitOK, "verify", "--policy", s.policy, "--roots", s.roots, "--accept-static", "--role", "client", ccert)
	verifyFails(t, exitVerify, "binding.role", "--policy", s.policy, "--roots", s.roots, "--accept-static", ccert)

	// --measurement overrides the simulated VM for one run only.
	other := strings.Repeat("0f", 48)
	ocert := s.certgen(t, "--measurement", other)
	r = mustRun(t, exitOK, "inspect", "--json", ocert)
	decodeJSON(t, r.stdout, &out)
	require.Equal(t, other, out.Evidence.Report.Measurement.String())
	vm, err := (&simStore{dir: s.dir}).vm()
	require.NoError(t, err)
	require.Equal(t, s.measurement, vm.Measurement.String())

	// certgen does not overwrite without --force.
	key := filepath.Join(filepath.Dir(cert), "key.pem")
	r = mustRun(t, exitFailure, "certgen", "--simulate", "--sim-dir", s.dir, "--out-cert", cert, "--out-key", key)
	require.Contains(t, r.stderr, "--force")
	mustRun(t, exitOK, "certgen", "--simulate", "--sim-dir", s.dir, "--out-cert", cert, "--out-key", key, "--force")
}

func TestVerifyExitCodes(t *testing.T) {
	s := newSetup(t)
	cert := s.certgen(t)
	leaf, err := loadCertificate(cert)
	require.NoError(t, err)
	work := t.TempDir()
	write := func(name string, der []byte) string {
		path := filepath.Join(work, name)
		require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
		return path
	}
	common := []string{"--policy", s.policy, "--roots", s.roots, "--accept-static"}

	// Not attested: an ordinary certificate.
	plain := write("plain.pem", selfSigned(t, nil))
	verifyFails(t, exitNotAttested, "evidence.extension", append(common, plain)...)
	r := mustRun(t, exitNotAttested, "inspect", plain)
	require.Contains(t, r.stderr, "not attested")

	// Tampered: the evidence moved into a certificate for another key...
	var exts []pkix.Extension
	for _, e := range leaf.Extensions {
		if e.Id.Equal(attest.OIDCMW) {
			exts = append(exts, e)
		}
	}
	moved := write("moved.pem", selfSigned(t, exts, leaf.NotBefore, leaf.NotAfter))
	verifyFails(t, exitVerify, "snp.report_data", append(common, moved)...)
	// ...or a report byte changed (the measurement).
	ev, err := attest.FromCertificate(leaf)
	require.NoError(t, err)
	rec := ev.Records[snp.ReportLabel]
	rec.Value = append([]byte(nil), rec.Value...)
	rec.Value[0x90] ^= 1
	ev.Records[snp.ReportLabel] = rec
	ext, err := ev.Extension()
	require.NoError(t, err)
	flipped := write("flipped.pem", selfSigned(t, []pkix.Extension{ext}, leaf.NotBefore, leaf.NotAfter))
	verifyFails(t, exitVerify, "", append(common, flipped)...)
	// Malformed evidence.
	garbage := write("garbage.pem", selfSigned(t, []pkix.Extension{{Id: attest.OIDCMW, Value: []byte{0x0c, 0x02, '{', '}'}}}))
	verifyFails(t, exitVerify, "evidence.collection", append(common, garbage)...)
	mustRun(t, exitVerify, "inspect", garbage)

	// Wrong policy: another measurement.
	wrong := filepath.Join(work, "wrong.json")
	mustRun(t, exitOK, "policy", "init", "--measurement", strings.Repeat("01", 48), "--out", wrong)
	verifyFails(t, exitPolicy, "policy.measurement", "--policy", wrong, "--roots", s.roots, "--accept-static", cert)

	// AMD's roots do not trust the simulator.
	verifyFails(t, exitVerify, "snp.vcek.chain", "--policy", s.policy, "--accept-static", cert)
	// Static evidence needs --accept-static, and a young enough one.
	verifyFails(t, exitVerify, "binding.freshness", "--policy", s.policy, "--roots", s.roots, cert)
	verifyFails(t, exitVerify, "binding.max_age", "--policy", s.policy, "--roots", s.roots, "--accept-static", "--max-age", "1s", cert)

	// Usage and configuration errors.
	verifyUsage(t, "--roots", s.roots, cert)
	verifyUsage(t, "--policy", s.policy, "--nonce", "zz", cert)
	verifyUsage(t, "--policy", s.policy, "--nonce", strings.Repeat("00", 32), cert)
	verifyUsage(t, "--policy", s.policy, "--role", "peer", cert)
	verifyUsage(t, "--policy", s.policy)
	placeholder := filepath.Join(work, "placeholder.json")
	mustRun(t, exitOK, "policy", "init", "--out", placeholder)
	verifyFails(t, exitUsage, "policy.parse", "--policy", placeholder, cert)
	verifyFails(t, exitUsage, "", "--policy", s.policy, "--roots", plain, cert)
	// A file that is not a certificate.
	verifyFails(t, exitFailure, "", "--policy", s.policy, s.policy)
}

// selfSigned makes an ordinary self-signed certificate with exts, valid
// from notBefore to notAfter (default: now).
func selfSigned(t *testing.T, exts []pkix.Extension, validity ...time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	nb, na := time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	if len(validity) == 2 {
		nb, na = validity[0], validity[1]
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "plain"},
		NotBefore: nb, NotAfter: na, ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return der
}

// TestPolicyFromCertPins checks that from-cert pins every field the report
// sets, and that the policy accepts the report it came from.
func TestPolicyFromCertPins(t *testing.T) {
	chain, err := (&simStore{dir: baseSimDir}).existingChain()
	require.NoError(t, err)
	opts := snp.SimOptions{
		Measurement:     [48]byte{1, 2, 3},
		HostData:        [32]byte{4},
		GuestSVN:        3,
		GuestPolicy:     0x30000 | 1<<19 | 1<<20 | 0x0102, // debug, single socket, ABI 1.2
		VMPL:            1,
		IDKeyDigest:     [48]byte{5},
		AuthorKeyDigest: [48]byte{6},
		AuthorKeyEn:     true,
		FamilyID:        [16]byte{7},
		ImageID:         [16]byte{8},
		CommittedTCB:    0xd518000000000004, // older microcode committed: provisional firmware
	}
	att, err := snp.NewSimAttester(chain, opts)
	require.NoError(t, err)
	c, err := certgen.Issue(context.Background(), certgen.Request{Attester: att, Role: attest.RoleServer, Mode: attest.ModeStatic})
	require.NoError(t, err)
	ev, err := attest.FromCertificate(c.Leaf)
	require.NoError(t, err)
	d, err := snp.DescribeEvidence(ev)
	require.NoError(t, err)

	p, warnings, err := policyFromDescription(d, "cert.pem")
	require.NoError(t, err)
	require.Len(t, warnings, 3, "debug, VMPL, provisional: %v", warnings)
	data, err := json.Marshal(p)
	require.NoError(t, err)
	parsed, err := snp.ParsePolicy(data)
	require.NoError(t, err)
	require.Equal(t, opts.HostData[:], []byte(parsed.HostData))
	require.Equal(t, uint32(3), parsed.MinimumGuestSVN)
	require.Equal(t, []uint32{1}, parsed.AllowedVMPLs)
	require.True(t, parsed.AllowDebug)
	require.True(t, parsed.GuestPolicy.RequireSingleSocket)
	require.Equal(t, "1.2", parsed.GuestPolicy.MinimumABI)
	require.Equal(t, opts.IDKeyDigest[:], []byte(parsed.TrustedIDKeyDigests[0]))
	require.Equal(t, opts.AuthorKeyDigest[:], []byte(parsed.TrustedAuthorKeyDigests[0]))
	require.Equal(t, opts.FamilyID[:], []byte(parsed.FamilyID))
	require.True(t, parsed.PermitProvisionalFirmware)

	ver, err := snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: parsed})
	require.NoError(t, err)
	_, err = atls.VerifyCertificate(context.Background(), c.Leaf, atls.VerifyCertificateOptions{Verifier: ver, AcceptStatic: true})
	require.NoError(t, err)

	// It is not a blank cheque: a VM with another measurement fails.
	opts.Measurement = [48]byte{9}
	other, err := snp.NewSimAttester(chain, opts)
	require.NoError(t, err)
	oc, err := certgen.Issue(context.Background(), certgen.Request{Attester: other, Role: attest.RoleServer, Mode: attest.ModeStatic})
	require.NoError(t, err)
	_, err = atls.VerifyCertificate(context.Background(), oc.Leaf, atls.VerifyCertificateOptions{Verifier: ver, AcceptStatic: true})
	require.ErrorIs(t, err, atls.ErrPolicy)
}

func TestPolicyInit(t *testing.T) {
	// With a measurement, the policy loads as printed.
	m := strings.Repeat("c3", 48)
	r := mustRun(t, exitOK, "policy", "init", "--measurement", m)
	p, err := snp.ParsePolicy([]byte(r.stdout))
	require.NoError(t, err)
	require.Equal(t, m, p.Measurements[0].String())
	require.False(t, p.AllowDebug)
	require.Equal(t, snp.BaselineTCB(), p.MinimumTCB)
	require.Contains(t, r.stderr, "minimum_tcb")

	// Several measurements.
	r = mustRun(t, exitOK, "policy", "init", "--measurement", m+","+strings.Repeat("c4", 48), "--measurement", strings.Repeat("c5", 48))
	p, err = snp.ParsePolicy([]byte(r.stdout))
	require.NoError(t, err)
	require.Len(t, p.Measurements, 3)

	// Without one, a placeholder that does not load until replaced.
	r = mustRun(t, exitOK, "policy", "init")
	require.Contains(t, r.stdout, measurementPlaceholder)
	require.Contains(t, r.stderr, "placeholder")
	_, err = snp.ParsePolicy([]byte(r.stdout))
	require.Error(t, err)
	filled := strings.Replace(r.stdout, measurementPlaceholder, m, 1)
	p, err = snp.ParsePolicy([]byte(filled))
	require.NoError(t, err)
	require.Equal(t, m, p.Measurements[0].String())
}
