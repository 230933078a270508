package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	sevtestdata "github.com/google/go-sev-guest/verify/testdata"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/certgen"
	"github.com/confidential-go/atls/interop/internal/vectors"
	"github.com/stretchr/testify/require"
)

// TestPythonVectors runs the independent Python verifier on every vector:
// it must reach the Go verifier's verdict, fail the same check, and
// return the same claims.
func TestPythonVectors(t *testing.T) {
	requirePython(t)
	m := loadManifest(t)
	reqs := make([]pyRequest, len(m.Vectors))
	for i, v := range m.Vectors {
		reqs[i] = pyRequest{
			roots:        filepath.Join(vectorsDir, m.Roots),
			cert:         filepath.Join(vectorsDir, v.Cert),
			role:         v.Role,
			nonce:        v.Nonce,
			acceptStatic: v.AcceptStatic,
			maxAge:       v.MaxAgeSeconds,
			now:          v.Now,
			measurements: m.Policy.Measurements,
		}
	}
	results := runPythonBatch(t, reqs)
	for i, v := range m.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			l := loadVector(t, v)
			ver, err := vectors.NewVerifier(vectorsDir, m, l.Time)
			require.NoError(t, err)
			e, err := l.Expectation()
			require.NoError(t, err)
			res, goErr := vectors.VerifyCertificate(context.Background(), ver, l.Cert.Leaf, e)

			py := results[i]
			if goErr != nil {
				require.Equal(t, attest.FailedCheck(goErr), py.Check, "Python: %s; Go: %v", py.Line, goErr)
				require.Equal(t, v.Check, py.Check)
				return
			}
			require.Empty(t, py.Check, "Python rejects what Go accepts: %s", py.Line)
			require.Equal(t, claimsJSON(t, res.Claims), py.Claims, "claims, Go (expected) and Python (actual)")
			require.Equal(t, decodeJSON(t, v.Claims), py.Claims, "claims in the manifest and Python's")
		})
	}

	// The command line itself, once for each outcome: exit codes and
	// output format.
	for _, name := range []string{"server-nonce-p256", "tampered-report"} {
		i := slices.IndexFunc(m.Vectors, func(v vectors.Vector) bool { return v.Name == name })
		require.GreaterOrEqual(t, i, 0)
		require.Equal(t, results[i], runPython(t, reqs[i]), "the command line and main() differ")
	}
}

// TestPythonDecoderAgreement feeds Go and Python the same variations of a
// valid certificate's extension (SPEC sections 2 and 3: DER, JSON syntax,
// duplicates after unescaping, character sets, base64url, the binding
// record) and requires the same verdict and check from both.
func TestPythonDecoderAgreement(t *testing.T) {
	requirePython(t)
	base := issue(t, attest.RoleServer, attest.ModeStatic, [attest.NonceSize]byte{})
	ev, err := attest.FromCertificate(base.Leaf)
	require.NoError(t, err)
	canonical, err := ev.MarshalJSON()
	require.NoError(t, err)
	j := string(canonical)
	b64 := base64.RawURLEncoding.EncodeToString
	bindingValue := b64(ev.Records[attest.BindingRecordLabel].Value)
	bindingMember := fmt.Sprintf(`"binding":[%q,%q]`, attest.BindingMediaType, bindingValue)
	require.Contains(t, j, bindingMember)
	withBinding := func(v string) string {
		return strings.Replace(j, bindingMember, fmt.Sprintf(`"binding":[%q,%q]`, attest.BindingMediaType, b64([]byte(v))), 1)
	}
	addRecords := func(members ...string) string {
		return j[:len(j)-1] + "," + strings.Join(members, ",") + "}"
	}
	// The report's base64url with a trailing bit set (1184 bytes leave two
	// zero bits in the last character).
	reportValue := b64(ev.Records[snp.ReportLabel].Value)
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, reportValue[len(reportValue)-1])
	require.Equal(t, 0, last&3)
	trailingBits := reportValue[:len(reportValue)-1] + string(alphabet[last|1])
	var indented bytes.Buffer
	require.NoError(t, json.Indent(&indented, canonical, " ", "\t"))
	nine := make([]string, 0, 6)
	for i := range 6 {
		nine = append(nine, fmt.Sprintf(`"x%d":["application/octet-stream","AA"]`, i))
	}
	shortReport := strings.Replace(j, reportValue, b64(ev.Records[snp.ReportLabel].Value[:snp.ReportSize-1]), 1)

	utf8String := func(s string) []byte { return derWrap(t, cbasn1.UTF8String, []byte(s)) }
	cases := []struct {
		name string
		ext  []byte // the extension value
	}{
		{"canonical", utf8String(j)},
		{"whitespace between tokens", utf8String(indented.String())},
		{"trailing whitespace", utf8String(j + " \r\n\t")},
		{"type last", utf8String(strings.Replace(j[:len(j)-1], fmt.Sprintf(`"__cmwc_t":%q,`, snp.CollectionType), "", 1) + fmt.Sprintf(`,"__cmwc_t":%q}`, snp.CollectionType))},
		{"escaped slashes in type", utf8String(strings.Replace(j, "atls/snp/v1", `atls\/snp\/v1`, 1))},
		{"binding members reordered", utf8String(withBinding(`{"mode":"static","role":"server","version":1}`))},
		{"binding with whitespace", utf8String(withBinding(`{ "version" : 1 , "role" : "server" , "mode" : "static" }`))},

		{"DER non-minimal length", append([]byte{0x0c, 0x83, 0x00, byte(len(j) >> 8), byte(len(j))}, j...)},
		{"DER trailing byte", append(utf8String(j), 0)},
		{"DER indefinite length", append(append([]byte{0x0c, 0x80}, j...), 0, 0)},
		{"DER IA5String", derWrap(t, cbasn1.IA5String, []byte(j))},
		{"not JSON", utf8String("atls")},
		{"JSON array", utf8String("[" + j + "]")},
		{"trailing data", utf8String(j + "x")},
		{"second object", utf8String(j + "{}")},
		{"byte-order mark", utf8String("\ufeff" + j)},
		{"invalid UTF-8", utf8String(strings.Replace(j, "atls/snp", "atls\xff/snp", 1))},
		{"duplicate after unescaping", utf8String(addRecords(fmt.Sprintf(`"\u0062inding":[%q,%q]`, attest.BindingMediaType, bindingValue)))},
		{"missing type", utf8String(strings.Replace(j, fmt.Sprintf(`"__cmwc_t":%q,`, snp.CollectionType), "", 1))},
		{"type not a string", utf8String(strings.Replace(j, fmt.Sprintf(`"__cmwc_t":%q`, snp.CollectionType), `"__cmwc_t":1`, 1))},
		{"type with a space", utf8String(strings.Replace(j, "atls/snp/v1", "atls/snp v1", 1))},
		{"unknown type", utf8String(strings.Replace(j, "atls/snp/v1", "atls/snp/v2", 1))},
		{"uppercase label", utf8String(addRecords(`"Extra":["application/octet-stream","AA"]`))},
		{"reserved label", utf8String(addRecords(`"__extra":["application/octet-stream","AA"]`))},
		{"unknown label", utf8String(addRecords(`"extra":["application/octet-stream","AA"]`))},
		{"nine records", utf8String(addRecords(nine...))},
		{"record of three", utf8String(addRecords(`"extra":["application/octet-stream","AA","x"]`))},
		{"record of one", utf8String(addRecords(`"extra":["application/octet-stream"]`))},
		{"nested collection", utf8String(addRecords(fmt.Sprintf(`"extra":{"__cmwc_t":%q}`, snp.CollectionType)))},
		{"media type with parameter", utf8String(strings.Replace(j, attest.BindingMediaType, attest.BindingMediaType+";charset=utf-8", 1))},
		{"wrong media type", utf8String(strings.Replace(j, snp.CertMediaType, "application/x-pem-file", 1))},
		{"padded base64", utf8String(strings.Replace(j, bindingValue, bindingValue+"=", 1))},
		{"standard base64", utf8String(strings.Replace(j, bindingValue, strings.NewReplacer("-", "+", "_", "/").Replace(bindingValue)+"+", 1))},
		{"non-zero trailing bits", utf8String(strings.Replace(j, reportValue, trailingBits, 1))},
		{"empty value", utf8String(addRecords(`"ask-crl":["application/pkix-crl",""]`))},
		{"short report", utf8String(shortReport)},
		{"binding version 1.0", utf8String(withBinding(`{"version":1.0,"role":"server","mode":"static"}`))},
		{"binding version true", utf8String(withBinding(`{"version":true,"role":"server","mode":"static"}`))},
		{"binding version 2", utf8String(withBinding(`{"version":2,"role":"server","mode":"static"}`))},
		{"binding role Server", utf8String(withBinding(`{"version":1,"role":"Server","mode":"static"}`))},
		{"binding mode batch", utf8String(withBinding(`{"version":1,"role":"server","mode":"batch"}`))},
		{"binding duplicate", utf8String(withBinding(`{"version":1,"version":1,"role":"server","mode":"static"}`))},
		{"binding without mode", utf8String(withBinding(`{"version":1,"role":"server"}`))},
		{"binding trailing data", utf8String(withBinding(`{"version":1,"role":"server","mode":"static"} x`))},
		{"binding array", utf8String(withBinding(`[1,"server","static"]`))},
		{"binding role object", utf8String(withBinding(`{"version":1,"role":{},"mode":"static"}`))},
	}
	dir := t.TempDir()
	now := time.Now().Truncate(time.Second)
	certs := make([]*tls.Certificate, len(cases))
	reqs := make([]pyRequest, len(cases))
	for i, c := range cases {
		cert, err := vectors.Reissue(base, &pkix.Extension{Id: attest.OIDCMW, Value: c.ext})
		require.NoError(t, err)
		path, _ := writePEM(t, dir, fmt.Sprintf("case-%02d", i), cert)
		certs[i] = cert
		reqs[i] = pyRequest{cert: path, role: "server", acceptStatic: true, now: now.UTC().Format(time.RFC3339)}
	}
	results := runPythonBatch(t, reqs)
	ver := goVerifier(t, func() time.Time { return now })
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, goErr := vectors.VerifyCertificate(context.Background(), ver, certs[i].Leaf,
				vectors.Expectation{Role: attest.RoleServer, AcceptStatic: true, Now: now})
			py := results[i]
			t.Logf("Go: %v; Python: %s", goErr, py.Line)
			if goErr != nil {
				require.NotEmpty(t, py.Check, "Python accepts what Go rejects (%v)", goErr)
				require.Equal(t, attest.FailedCheck(goErr), py.Check, "Python: %s; Go: %v", py.Line, goErr)
				return
			}
			require.Empty(t, py.Check, "Python rejects what Go accepts: %s", py.Line)
			require.Equal(t, claimsJSON(t, res.Claims), py.Claims)
		})
	}
}

func derWrap(t *testing.T, tag cbasn1.Tag, content []byte) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(content) })
	der, err := b.Bytes()
	require.NoError(t, err)
	return der
}

// TestPythonTampered checks that both verifiers reject a certificate with
// one report byte changed after signing, nonce-bound and static.
func TestPythonTampered(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	nonce := vectors.NonceFor(t.Name())
	for _, mode := range []attest.Mode{attest.ModeNonce, attest.ModeStatic} {
		t.Run(mode.String(), func(t *testing.T) {
			good := issue(t, attest.RoleServer, mode, nonce)
			bad, err := vectors.TamperReport(good)
			require.NoError(t, err)
			now := time.Now()
			e := vectors.Expectation{Role: attest.RoleServer, Nonce: &nonce, AcceptStatic: true, Now: now}
			for _, c := range []struct {
				cert  *tls.Certificate
				check string
			}{{good, ""}, {bad, "snp.report.signature"}} {
				_, goErr := vectors.VerifyCertificate(context.Background(), goVerifier(t, func() time.Time { return now }), c.cert.Leaf, e)
				require.Equal(t, c.check, attest.FailedCheck(goErr), "Go: %v", goErr)
				path, _ := writePEM(t, dir, mode.String()+c.check, c.cert)
				py := runPython(t, pyRequest{cert: path, role: "server", nonce: hexOf(nonce[:]), acceptStatic: true})
				require.Equal(t, c.check, py.Check, "Python: %s", py.Line)
			}
		})
	}
}

// reportEditor is an attester whose reports are edited, and signed
// again, before they go into the certificate.
type reportEditor struct {
	sim  *snp.SimAttester
	edit func(report []byte)
	// afterSigning edits the report after it is signed.
	afterSigning func(report []byte)
}

func (r reportEditor) Attest(ctx context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	ev, err := r.sim.Attest(ctx, rd)
	if err != nil {
		return nil, err
	}
	rec := ev.Records[snp.ReportLabel]
	report := bytes.Clone(rec.Value)
	if r.edit != nil {
		r.edit(report)
		if err := r.sim.SignReport(report); err != nil {
			return nil, err
		}
	}
	if r.afterSigning != nil {
		r.afterSigning(report)
	}
	ev.Records[snp.ReportLabel] = attest.Record{MediaType: rec.MediaType, Value: report}
	return ev, nil
}

// TestPythonReportAgreement feeds Go and Python correctly signed reports
// with unusual or invalid contents (SPEC section 6, steps 7 to 11) and
// requires the same verdict and check from both. The reports come from a
// simulated Milan chip (the committed chain) and a simulated Turin chip
// (a chain made here), whose TCB layout, 8-byte hardware ID and VCEK
// profile differ.
func TestPythonReportAgreement(t *testing.T) {
	requirePython(t)
	turinChain, err := snp.NewSimChain("Turin")
	require.NoError(t, err)
	turinSim := func(o snp.SimOptions) *snp.SimAttester {
		o.Measurement = vectors.Measurement
		a, err := snp.NewSimAttester(turinChain, o)
		require.NoError(t, err)
		return a
	}
	turin := turinSim(snp.SimOptions{})
	sim := simAttester(t)
	lowTCB, err := snp.NewSimAttester(simChain(t), snp.SimOptions{Measurement: vectors.Measurement, TCB: 0x0100000000000001})
	require.NoError(t, err)
	v5, err := snp.NewSimAttester(simChain(t), snp.SimOptions{Measurement: vectors.Measurement, ReportVersion: 5,
		LaunchMitVector: 3, CurrentMitVector: 1})
	require.NoError(t, err)
	set := func(off int, b ...byte) func([]byte) { return func(r []byte) { copy(r[off:], b) } }
	or := func(off int, b byte) func([]byte) { return func(r []byte) { r[off] |= b } }
	u32 := func(off int, v uint32) func([]byte) {
		return func(r []byte) { binary.LittleEndian.PutUint32(r[off:], v) }
	}
	type reportCase struct {
		name string
		att  attest.Attester
	}
	cases := []reportCase{
		{"unchanged", reportEditor{sim: sim, edit: func([]byte) {}}},
		{"version 5 with mitigation vectors", v5},
		{"masked chip id", reportEditor{sim: sim, edit: func(r []byte) { clear(r[0x1A0:0x1E0]); r[0x48] |= 2 }}},
		{"version 1", reportEditor{sim: sim, edit: u32(0x00, 1)}},
		{"version 6", reportEditor{sim: sim, edit: u32(0x00, 6)}},
		{"signature algorithm 2", reportEditor{sim: sim, edit: u32(0x34, 2)}},
		{"reserved 0x4c", reportEditor{sim: sim, edit: set(0x4C, 1)}},
		{"signer info bit 5", reportEditor{sim: sim, edit: or(0x48, 0x20)}},
		{"signing key 2", reportEditor{sim: sim, edit: or(0x48, 2<<2)}},
		{"signing key 7 (unsigned)", reportEditor{sim: sim, edit: or(0x48, 7<<2)}},
		{"VLEK signing key with a VCEK", reportEditor{sim: sim, edit: or(0x48, 1<<2)}},
		{"policy bit 17 clear", reportEditor{sim: sim, edit: func(r []byte) { r[0x0A] &^= 0x02 }}},
		{"policy bit 26", reportEditor{sim: sim, edit: or(0x0B, 0x04)}},
		{"policy migrate MA", reportEditor{sim: sim, edit: or(0x0A, 0x04)}},
		{"policy CXL", reportEditor{sim: sim, edit: or(0x0A, 0x20)}},
		{"stepping above 15", reportEditor{sim: sim, edit: or(0x18A, 0x10)}},
		{"reserved 0x18b", reportEditor{sim: sim, edit: set(0x18B, 1)}},
		{"mitigation vector in version 3", reportEditor{sim: sim, edit: set(0x1F8, 1)}},
		{"reserved 0x1eb", reportEditor{sim: sim, edit: set(0x1EB, 1)}},
		{"reserved 0x208", reportEditor{sim: sim, edit: set(0x208, 1)}},
		{"bytes after the signature", reportEditor{sim: sim, afterSigning: set(0x2A0+144, 1)}},
		{"signature S altered", reportEditor{sim: sim, afterSigning: func(r []byte) { r[0x2A0+72] ^= 1 }}},
		{"unknown product", reportEditor{sim: sim, edit: set(0x188, 0x17)}},
		{"Turin CPUID with a Milan VCEK", reportEditor{sim: sim, edit: set(0x188, 0x1A, 0x02)}},
		{"Genoa CPUID with a Milan VCEK", reportEditor{sim: sim, edit: set(0x189, 0x11)}},
		{"VMPL 2", reportEditor{sim: sim, edit: u32(0x30, 2)}},
		{"chip id of another chip", reportEditor{sim: sim, edit: or(0x1A0, 0xFF)}},
		{"reported TCB not the VCEK's", reportEditor{sim: sim, edit: set(0x180, 5)}},
		{"uncommitted TCB", reportEditor{sim: sim, edit: set(0x1E0, 3)}},
		{"uncommitted firmware build", reportEditor{sim: sim, edit: set(0x1EC, 1)}},
		{"TCB below the baseline", lowTCB},
	}
	milanCases := len(cases)
	// Turin: FMC, bootloader, TEE and SNP in TCB bytes 0-3, microcode in
	// byte 7 (the default TCB is 0x4700000002000100, the baseline).
	cases = append(cases, []reportCase{
		{"Turin unchanged", reportEditor{sim: turin, edit: func([]byte) {}}},
		{"Turin version 5 with mitigation vectors", turinSim(snp.SimOptions{ReportVersion: 5, LaunchMitVector: 3, CurrentMitVector: 1})},
		{"Turin version 2", turinSim(snp.SimOptions{ReportVersion: 2})},
		{"Turin FMC and every part above the baseline", turinSim(snp.SimOptions{TCB: 0x4800000003010203})},
		{"Turin masked chip id", reportEditor{sim: turin, edit: func(r []byte) { clear(r[0x1A0:0x1E0]); r[0x48] |= 2 }}},
		{"Turin chip id of another chip", reportEditor{sim: turin, edit: or(0x1A0, 0xFF)}},
		{"Turin chip id beyond the 8-byte hwID", reportEditor{sim: turin, edit: set(0x1A8, 1)}},
		{"Turin reported FMC not the VCEK's", reportEditor{sim: turin, edit: set(0x180, 5)}},
		{"Turin reported TCB with a reserved byte", reportEditor{sim: turin, edit: set(0x184, 1)}},
		{"Turin VCEK TCB above CURRENT_TCB", turinSim(snp.SimOptions{TCB: 0x4700000002000101, CurrentTCB: 0x4700000002000100})},
		{"Turin VCEK TCB above CURRENT_TCB in the SNP byte", turinSim(snp.SimOptions{TCB: 0x4700000003000100, CurrentTCB: 0x4700000002000100})},
		{"Turin SNP below the baseline", turinSim(snp.SimOptions{TCB: 0x4700000001000100})},
		{"Turin bootloader below the baseline", turinSim(snp.SimOptions{TCB: 0x4700000002000000})},
		{"Turin microcode below the baseline", turinSim(snp.SimOptions{TCB: 0x4600000002000100})},
		{"Turin other model of family 1Ah", reportEditor{sim: turin, edit: set(0x189, 0x11)}},
		{"Turin VCEK on a Milan CPUID", reportEditor{sim: turin, edit: set(0x188, 0x19, 0x01)}},
		{"Turin VCEK on a family 19h variant", reportEditor{sim: turin, edit: set(0x188, 0x19, 0xA0)}},
		{"Turin VCEK on an unknown family", reportEditor{sim: turin, edit: set(0x188, 0x17)}},
		{"Turin uncommitted TCB", reportEditor{sim: turin, edit: set(0x1E3, 1)}},
	}...)
	dir := t.TempDir()
	turinRoots := filepath.Join(dir, "turin-roots.pem")
	turinPEM, err := turinChain.MarshalPEM()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(turinRoots, turinPEM, 0o600))
	now := time.Now().Truncate(time.Second)
	certs := make([]*tls.Certificate, len(cases))
	reqs := make([]pyRequest, len(cases))
	for i, c := range cases {
		cert, err := certgen.Issue(context.Background(), certgen.Request{Attester: c.att, Role: attest.RoleServer, Mode: attest.ModeStatic})
		require.NoError(t, err, c.name)
		path, _ := writePEM(t, dir, fmt.Sprintf("report-%02d", i), cert)
		certs[i] = cert
		reqs[i] = pyRequest{cert: path, role: "server", acceptStatic: true, now: now.UTC().Format(time.RFC3339)}
		if i >= milanCases {
			reqs[i].roots = turinRoots
		}
	}
	results := runPythonBatch(t, reqs)
	ver := goVerifier(t, func() time.Time { return now })
	turinPolicy := snp.NewPolicy()
	turinPolicy.Measurements = []attest.HexBytes{vectors.Measurement[:]}
	turinVer, err := snp.NewVerifier(snp.VerifierOptions{Roots: turinChain.Roots(), Policy: turinPolicy, Now: func() time.Time { return now }})
	require.NoError(t, err)
	accepted := map[string]int{}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := ver
			if i >= milanCases {
				v = turinVer
			}
			res, goErr := vectors.VerifyCertificate(context.Background(), v, certs[i].Leaf,
				vectors.Expectation{Role: attest.RoleServer, AcceptStatic: true, Now: now})
			py := results[i]
			if goErr == nil {
				accepted[res.Claims.SNP.Product]++
			}
			t.Logf("Go: %v; Python: %s", goErr, py.Line)
			if goErr != nil {
				require.NotEmpty(t, py.Check, "Python accepts what Go rejects (%v)", goErr)
				require.Equal(t, attest.FailedCheck(goErr), py.Check, "Python: %s; Go: %v", py.Line, goErr)
				return
			}
			require.Empty(t, py.Check, "Python rejects what Go accepts: %s", py.Line)
			require.Equal(t, claimsJSON(t, res.Claims), py.Claims)
		})
	}
	// Unchanged, version 5, version 2, FMC above the baseline, masked chip
	// ID, other model of family 1Ah.
	require.Equal(t, 6, accepted["Turin"], "accepted Turin reports")
}

// TestPythonSpecExample recomputes the worked example of SPEC.md section 8
// with the Python implementation of REPORT_DATA.
func TestPythonSpecExample(t *testing.T) {
	requirePython(t)
	spec, err := os.ReadFile("SPEC.md")
	require.NoError(t, err)
	const script = `
import sys
sys.path.insert(0, sys.argv[1])
import atls_verify
rd = atls_verify.report_data(b"example SubjectPublicKeyInfo", "server", "nonce", bytes(range(32)), 1798761600, 1798761600 + 11 * 60)
print(rd.hex())
`
	stdout, stderr, code := run(t, "", pythonPath, "-B", "-c", script, filepath.Dir(pyVerifier))
	require.Equal(t, 0, code, stderr)
	h := strings.TrimSpace(stdout)
	require.Len(t, h, 128)
	require.Contains(t, string(spec), h[:64]+"\n"+h[64:], "REPORT_DATA of SPEC.md section 8")
}

// TestPythonSpecBatchExample recomputes the batched example of SPEC.md
// section 8.1 with the Python implementation: the leaves, the tree (built
// here from RFC 9162's definition), and the root and REPORT_DATA that the
// verifier's proof check derives from each certificate's proof record.
func TestPythonSpecBatchExample(t *testing.T) {
	requirePython(t)
	spec, err := os.ReadFile("SPEC.md")
	require.NoError(t, err)
	text := string(spec)
	const script = `
import base64, json, struct, sys
sys.path.insert(0, sys.argv[1])
import atls_verify as a
nb = 1798761600
leaves = [a.report_data(b"example SubjectPublicKeyInfo" + (b" %d" % j if j else b""), "server", "batch",
                        bytes(range(32 * j, 32 * j + 32)), nb, nb + 11 * 60) for j in range(3)]
h = [a.leaf_hash(l) for l in leaves]
h01 = a.node_hash(h[0], h[1])
root = a.node_hash(h01, h[2])
paths = [[h[1], h[2]], [h[0], h[2]], [h01]]
out = {"leaves": [l.hex() for l in leaves], "hashes": [x.hex() for x in h], "h01": h01.hex(), "root": root.hex(),
       "report_data": a.batch_report_data(3, root).hex(), "records": [], "derived": []}
for j in range(3):
    rec = b"\x01" + struct.pack(">II", j, 3) + b"".join(paths[j])
    out["records"].append(base64.urlsafe_b64encode(rec).decode().rstrip("="))
    index, size, path = a.parse_batch_proof(rec)
    out["derived"].append(a.batch_report_data(size, a.batch_root(index, size, path, leaves[j])).hex())
json.dump(out, sys.stdout)
`
	stdout, stderr, code := run(t, "", pythonPath, "-B", "-c", script, filepath.Dir(pyVerifier))
	require.Equal(t, 0, code, stderr)
	var out struct {
		Leaves, Hashes, Records, Derived []string
		H01, Root                        string
		ReportData                       string `json:"report_data"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &out))
	for j, l := range out.Leaves {
		require.Contains(t, text, fmt.Sprintf("L%d = %s\n     %s", j, l[:64], l[64:]), "leaf %d", j)
		require.Contains(t, text, fmt.Sprintf("h%d   = %s", j, out.Hashes[j]), "leaf hash %d", j)
		require.Equal(t, out.ReportData, out.Derived[j], "REPORT_DATA derived from the proof of leaf %d", j)
	}
	require.Contains(t, text, "     = "+out.H01+"\nroot")
	require.Contains(t, text, "     = "+out.Root+"\n")
	require.Contains(t, text, "REPORT_DATA = "+out.ReportData[:64]+"\n              "+out.ReportData[64:])
	require.Contains(t, text, fmt.Sprintf(`"batch-proof":["application/vnd.atls.batch-proof",%q]`, out.Records[1]))
}

// TestPythonBatchProofAgreement gives Go (attest.ExpectedReportData) and
// Python the same batch-proof records, well-formed for many indices and
// tree sizes (up to the bound) or breaking one rule of SPEC.md section 4.1
// each, and requires the same expected REPORT_DATA or the same check.
func TestPythonBatchProofAgreement(t *testing.T) {
	requirePython(t)
	record := func(version byte, index, size uint32, siblings int, extra int) []byte {
		b := []byte{version}
		b = binary.BigEndian.AppendUint32(b, index)
		b = binary.BigEndian.AppendUint32(b, size)
		path := make([]byte, 32*siblings+extra)
		_, err := rand.Read(path)
		require.NoError(t, err)
		return append(b, path...)
	}
	type proofCase struct {
		name  string
		value []byte
		media string
		mode  attest.Mode
	}
	var cases []proofCase
	add := func(name string, v []byte) {
		cases = append(cases, proofCase{name: name, value: v, media: attest.BatchMediaType, mode: attest.ModeBatch})
	}
	for _, n := range []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 17, 100, 1023, 1024, 1025, 65535, 65536} {
		for _, m := range []uint32{0, 1, n / 2, n - 2, n - 1} {
			if m >= n {
				continue
			}
			k := siblings(m, n)
			add(fmt.Sprintf("leaf %d of %d", m, n), record(1, m, n, k, 0))
			add(fmt.Sprintf("leaf %d of %d, a sibling too many", m, n), record(1, m, n, k+1, 0))
			if k > 0 {
				add(fmt.Sprintf("leaf %d of %d, a sibling too few", m, n), record(1, m, n, k-1, 0))
			}
		}
	}
	for _, c := range []struct {
		name string
		v    []byte
	}{
		{"size 0", record(1, 0, 0, 0, 0)},
		{"size 65537", record(1, 0, 65537, 17, 0)},
		{"size 2^32-1", record(1, 5, 1<<32-1, 32, 0)},
		{"index = size", record(1, 3, 3, 1, 0)},
		{"index 2^32-1", record(1, 1<<32-1, 3, 1, 0)},
		{"version 0", record(0, 0, 1, 0, 0)},
		{"version 2", record(2, 0, 1, 0, 0)},
		{"8 bytes", record(1, 0, 1, 0, 0)[:8]},
		{"one byte more", record(1, 0, 2, 1, 1)},
		{"31 bytes of path", record(1, 0, 2, 0, 31)},
		{"17 siblings", record(1, 0, 65536, 17, 0)},
	} {
		add(c.name, c.v)
	}
	cases = append(cases,
		proofCase{name: "other media type", value: record(1, 0, 1, 0, 0), media: "application/octet-stream", mode: attest.ModeBatch},
		proofCase{name: "missing in batch mode", mode: attest.ModeBatch},
		proofCase{name: "present in nonce mode", value: record(1, 0, 1, 0, 0), media: attest.BatchMediaType, mode: attest.ModeNonce},
		proofCase{name: "present in static mode", value: record(1, 0, 1, 0, 0), media: attest.BatchMediaType, mode: attest.ModeStatic},
		proofCase{name: "absent in nonce mode", mode: attest.ModeNonce},
	)

	// Each case's binding: a random key and nonce, in the case's mode.
	bindings := make([]attest.Binding, len(cases))
	type pyCase struct {
		Mode, Media, Value, Leaf string
	}
	in := make([]pyCase, len(cases))
	for i, c := range cases {
		b := attest.Binding{Role: attest.RoleServer, Mode: c.mode, NotBefore: 1798761600, NotAfter: 1798762260}
		_, err := rand.Read(b.SPKIHash[:])
		require.NoError(t, err)
		if c.mode != attest.ModeStatic {
			_, err = rand.Read(b.Nonce[:])
			require.NoError(t, err)
		}
		leaf, err := b.ReportData()
		require.NoError(t, err)
		bindings[i] = b
		in[i] = pyCase{Mode: c.mode.String(), Media: c.media, Value: hexOf(c.value), Leaf: hexOf(leaf[:])}
	}
	const script = `
import json, sys
sys.path.insert(0, sys.argv[1])
import atls_verify as a
req = json.load(sys.stdin)
out = []
for c in req["cases"]:
    leaf = bytes.fromhex(c["Leaf"])
    records = {}
    if c["Media"]:
        records[a.BATCH_LABEL] = (c["Media"], bytes.fromhex(c["Value"]))
    try:
        out.append({"rd": a.expected_report_data(records, c["Mode"], leaf).hex()})
    except a.Fail as e:
        out.append({"check": e.check, "reason": e.reason})
json.dump(out, sys.stdout)
`
	req, err := json.Marshal(map[string]any{"cases": in})
	require.NoError(t, err)
	stdout, stderr, code := run(t, string(req), pythonPath, "-B", "-c", script, filepath.Dir(pyVerifier))
	require.Equal(t, 0, code, "python:\n%s\n%s", stdout, stderr)
	var outs []struct{ RD, Check, Reason string }
	require.NoError(t, json.Unmarshal([]byte(stdout), &outs))
	require.Len(t, outs, len(cases))

	var accepted, rejected int
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := &attest.Evidence{Type: snp.CollectionType, Records: map[string]attest.Record{}}
			if c.media != "" {
				ev.Records[attest.BatchRecordLabel] = attest.Record{MediaType: c.media, Value: c.value}
			}
			want, goErr := attest.ExpectedReportData(ev, bindings[i])
			py := outs[i]
			if goErr != nil {
				require.Equal(t, attest.FailedCheck(goErr), py.Check, "Python: %s; Go: %v", py.Reason, goErr)
				require.ErrorIs(t, goErr, attest.ErrMalformedEvidence)
				return
			}
			require.Empty(t, py.Check, "Python rejects what Go accepts: %s", py.Reason)
			require.Equal(t, hexOf(want[:]), py.RD)
			if c.mode != attest.ModeBatch {
				require.Equal(t, in[i].Leaf, py.RD, "without a proof the expected value is the binding's own")
			}
		})
		if outs[i].Check == "" {
			accepted++
		} else {
			rejected++
		}
	}
	require.Greater(t, accepted, 40)
	require.Greater(t, rejected, 40)
}

// siblings is the number of siblings RFC 9162's verification consumes for
// leaf m of a tree of n, from the tree's shape: the depth of leaf m in
// the tree that splits at the largest power of two below n.
func siblings(m, n uint32) int {
	d := 0
	for n > 1 {
		k := uint32(1)
		for k<<1 < n {
			k <<= 1
		}
		if m < k {
			n = k
		} else {
			m, n = m-k, n-k
		}
		d++
	}
	return d
}

// realVectorsDir holds attestation reports from real AMD hardware,
// committed with the snp package's tests (its README names their sources
// and licenses).
const realVectorsDir = "../atls/snp/testdata"

// TestPythonRealReports runs steps 7 to 11 of the Python verifier on
// reports from real AMD hardware under AMD's published roots, and
// requires the Go verifier's verdict (with the same default policy and
// the report's measurement pinned), check and claims: this exercises the
// parameters, KDS extensions, VLEKs, Turin's structVersion 1 profile) and
// real report layouts. The Turin report is verified under the embedded
// roots and under AMD's published Turin chain (virtee/cert_chain_turin),
// and with mismatched certificates and a changed byte, which both must
// reject with the same check.
func TestPythonRealReports(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	amdRoots := filepath.Join(dir, "amd-roots.pem")
	require.NoError(t, os.WriteFile(amdRoots, snp.AMDRoots().PEM(), 0o600))
	turinChain := filepath.Join(realVectorsDir, "virtee/cert_chain_turin")
	turinChainPEM, err := os.ReadFile(turinChain)
	require.NoError(t, err)
	turinRoots, err := snp.ParseRootsPEM(turinChainPEM, false)
	require.NoError(t, err)
	require.Equal(t, []string{"Turin"}, turinRoots.ProductLines())

	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(realVectorsDir, name))
		require.NoError(t, err)
		return b
	}
	type realReport struct {
		name         string
		report, cert []byte
		// roots are the Python verifier's roots file and Go's roots;
		// default AMD's embedded roots.
		rootsFile string
		roots     *snp.Roots
		// check is the check both must fail, "" for both accepting,
		// when pinned; otherwise only agreement is required.
		check  string
		pinned bool
	}
	cases := []realReport{{name: "go-sev-guest/attestation.bin", report: sevtestdata.AttestationBytes[:snp.ReportSize], cert: sevtestdata.VcekBytes}}
	for _, f := range [][2]string{
		{"virtee/report_milan.bin", "virtee/vcek_milan.der"},
		{"trustee/test-report.bin", "trustee/test-vcek.der"},
		{"trustee/test-vlek-report.bin", "trustee/test-vlek.der"},
		{"trustee/report-genoa.bin", "trustee/vcek-genoa.pem"},
		{"trustee/report-azure-milan.bin", "trustee/vcek.pem"},
		{"oak/genoa_oc_report.bin", "oak/genoa_oc_vcek.der"},
		{"oak/turin_oc_report.bin", "oak/turin_oc_vcek.der"},
	} {
		cases = append(cases, realReport{name: f[0], report: read(f[0]), cert: read(f[1]), pinned: strings.HasPrefix(f[0], "oak/")})
	}
	turinReport, turinVCEK := read("oak/turin_oc_report.bin"), read("oak/turin_oc_vcek.der")
	tampered := bytes.Clone(turinReport)
	tampered[0x90] ^= 1 // the measurement
	cases = append(cases,
		realReport{name: "Turin under the published Turin chain", report: turinReport, cert: turinVCEK,
			rootsFile: turinChain, roots: turinRoots, pinned: true},
		realReport{name: "Turin with a Milan VCEK", report: turinReport, cert: read("virtee/vcek_milan.der"), check: "snp.vcek.product", pinned: true},
		realReport{name: "Turin with another Turin chip's VCEK", report: turinReport, cert: read("virtee/vcek_turin.der"), check: "snp.report.signature", pinned: true},
		realReport{name: "Milan v2 report with a Turin VCEK", report: read("virtee/report_milan.bin"), cert: turinVCEK, check: "snp.report.signature", pinned: true},
		realReport{name: "Turin with a changed measurement byte", report: tampered, cert: turinVCEK, check: "snp.report.signature", pinned: true},
		realReport{name: "Turin under Milan and Genoa roots only", report: turinReport, cert: turinVCEK,
			rootsFile: filepath.Join(dir, "milan-genoa-roots.pem"), roots: nonTurinRoots(t, filepath.Join(dir, "milan-genoa-roots.pem")),
			check: "snp.vcek.chain", pinned: true},
	)
	var turinAccepted int

	type pyCase struct {
		Report, VCEK, Roots, Now, Measurement string
	}
	var in []pyCase
	nows := make([]time.Time, len(cases))
	for i, c := range cases {
		der := signerCertDER(t, c.cert)
		leaf, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		nows[i] = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2).Truncate(time.Second)
		cases[i].cert = der
		rp, cp := filepath.Join(dir, fmt.Sprintf("report-%d.bin", i)), filepath.Join(dir, fmt.Sprintf("cert-%d.der", i))
		require.NoError(t, os.WriteFile(rp, c.report, 0o600))
		require.NoError(t, os.WriteFile(cp, der, 0o600))
		if c.rootsFile == "" {
			cases[i].rootsFile, cases[i].roots = amdRoots, snp.AMDRoots()
		}
		in = append(in, pyCase{Report: rp, VCEK: cp, Roots: cases[i].rootsFile, Now: nows[i].UTC().Format(time.RFC3339), Measurement: hexOf(c.report[0x90:0xC0])})
	}
	const script = `
import json, sys
sys.path.insert(0, sys.argv[1])
import atls_verify as a
req = json.load(sys.stdin)
out = []
for c in req["cases"]:
    report, vcek = open(c["Report"], "rb").read(), open(c["VCEK"], "rb").read()
    with open(c["Roots"], "rb") as f:
        roots = a.load_roots(f.read())
    opts = {"roots": roots, "now": a.parse_rfc3339(c["Now"]), "measurements": [bytes.fromhex(c["Measurement"])]}
    try:
        out.append({"snp": a.verify_report(report, vcek, None, report[0x50:0x90], opts)})
    except a.Fail as e:
        out.append({"check": e.check, "reason": e.reason})
json.dump(out, sys.stdout)
`
	req, err := json.Marshal(map[string]any{"cases": in})
	require.NoError(t, err)
	stdout, stderr, code := run(t, string(req), pythonPath, "-B", "-c", script, filepath.Dir(pyVerifier))
	require.Equal(t, 0, code, "python:\n%s\n%s", stdout, stderr)
	var outs []struct {
		SNP    json.RawMessage
		Check  string
		Reason string
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &outs))
	require.Len(t, outs, len(cases))

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pol := snp.NewPolicy()
			pol.Measurements = []attest.HexBytes{c.report[0x90:0xC0]}
			ver, err := snp.NewVerifier(snp.VerifierOptions{Roots: c.roots, Policy: pol, Now: func() time.Time { return nows[i] }})
			require.NoError(t, err)
			var rd [attest.ReportDataSize]byte
			copy(rd[:], c.report[0x50:0x90])
			claims, goErr := ver.VerifyReport(context.Background(), c.report, c.cert, nil, rd)
			py := outs[i]
			t.Logf("Go: %v; Python: %s %s", goErr, py.Check, py.Reason)
			if c.pinned {
				require.Equal(t, c.check, attest.FailedCheck(goErr), "Go: %v", goErr)
			}
			if goErr != nil {
				require.Equal(t, attest.FailedCheck(goErr), py.Check, "Python: %s; Go: %v", py.Reason, goErr)
				return
			}
			require.Empty(t, py.Check, "Python rejects what Go accepts: %s", py.Reason)
			goSNP, err := json.Marshal(claims.SNP)
			require.NoError(t, err)
			require.Equal(t, decodeJSON(t, goSNP), decodeJSON(t, py.SNP))
			if claims.SNP.Product == "Turin" {
				turinAccepted++
			}
		})
	}
	require.Equal(t, 2, turinAccepted, "the real Turin report, under both root sets")
}

// nonTurinRoots writes AMD's embedded Milan and Genoa roots, without
// Turin's, to path and returns them.
func nonTurinRoots(t *testing.T, path string) *snp.Roots {
	t.Helper()
	var keep []byte
	rest := snp.AMDRoots().PEM()
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		if !strings.HasSuffix(c.Subject.CommonName, "-Turin") {
			keep = append(keep, pem.EncodeToMemory(b)...)
		}
	}
	require.NoError(t, os.WriteFile(path, keep, 0o600))
	r, err := snp.ParseRootsPEM(keep, false)
	require.NoError(t, err)
	require.NotContains(t, r.ProductLines(), "Turin")
	return r
}

// signerCertDER returns the VCEK or VLEK in data, DER or PEM (possibly
// followed by the ASK and ARK).
func signerCertDER(t *testing.T, data []byte) []byte {
	t.Helper()
	if _, err := x509.ParseCertificate(data); err == nil {
		return data
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		require.NotNil(t, b, "no VCEK or VLEK in PEM data")
		c, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		if c.Subject.CommonName == "SEV-VCEK" || c.Subject.CommonName == "SEV-VLEK" {
			return b.Bytes
		}
	}
}

// TestPythonBatcher has the Python verifier check certificates that
// certgen issued concurrently through an attest.Batcher: batched
// evidence made by the Go attester, shared reports and proofs of several
// positions and tree sizes. Each certificate passes with its own nonce and
// fails snp.report_data with another certificate's.
func TestPythonBatcher(t *testing.T) {
	requirePython(t)
	sim := simAttester(t)
	// Hold the first report until every request is queued behind it, so
	// that the others form batches (of at most 5) regardless of timing.
	const n = 12
	hold := &holdingAttester{inner: sim, release: make(chan struct{})}
	b, err := attest.NewBatcher(hold, attest.BatcherOptions{MaxSize: 5})
	require.NoError(t, err)

	entered := &countingAttester{inner: b}

	certs := make([]*tls.Certificate, n)
	nonces := make([][attest.NonceSize]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		nonces[i] = vectors.NonceFor(fmt.Sprintf("%s %d", t.Name(), i))
		wg.Go(func() {
			certs[i], errs[i] = certgen.Issue(context.Background(), certgen.Request{
				Attester: entered, Role: attest.RoleServer, Mode: attest.ModeBatch, Nonce: nonces[i]})
		})
	}
	// Every request has reached the Batcher, and the first report is held.
	require.Eventually(t, func() bool { return hold.calls.Load() == 1 && entered.calls.Load() == n },
		processTimeout, time.Millisecond)
	close(hold.release)
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Less(t, b.Reports(), uint64(n), "the certificates share reports")

	dir := t.TempDir()
	now := time.Now().UTC().Format(time.RFC3339)
	var reqs []pyRequest
	sizes := map[uint32]bool{}
	for i, c := range certs {
		ev, err := attest.FromCertificate(c.Leaf)
		require.NoError(t, err)
		p, err := attest.ParseBatchProof(ev.Records[attest.BatchRecordLabel].Value)
		require.NoError(t, err)
		sizes[p.Size] = true
		path, _ := writePEM(t, dir, fmt.Sprintf("batched-%02d", i), c)
		other := nonces[(i+1)%n]
		reqs = append(reqs,
			pyRequest{cert: path, role: "server", nonce: hexOf(nonces[i][:]), now: now},
			pyRequest{cert: path, role: "server", nonce: hexOf(other[:]), now: now})
	}
	require.Greater(t, len(sizes), 1, "batches of several sizes")
	results := runPythonBatch(t, reqs)
	for i := range certs {
		own, other := results[2*i], results[2*i+1]
		require.Empty(t, own.Check, "certificate %d with its own nonce: %s", i, own.Line)
		require.Equal(t, "batch", own.Claims["mode"])
		require.Equal(t, "snp.report_data", other.Check, "certificate %d with another's nonce: %s", i, other.Line)
	}
}

// countingAttester counts the calls made to inner.
type countingAttester struct {
	inner attest.Attester
	calls atomic.Int64
}

func (c *countingAttester) Attest(ctx context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	c.calls.Add(1)
	return c.inner.Attest(ctx, rd)
}

// holdingAttester blocks its first call until release is closed.
type holdingAttester struct {
	inner   attest.Attester
	calls   atomic.Int64
	release chan struct{}
}

func (h *holdingAttester) Attest(ctx context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	if h.calls.Add(1) == 1 {
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h.inner.Attest(ctx, rd)
}
