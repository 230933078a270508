package interop

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/certgen"
	"github.com/confidential-go/atls/interop/internal/vectors"
	"github.com/stretchr/testify/require"
)

// vectorsDir holds the committed test vectors.
const vectorsDir = "../testdata/vectors"

// processTimeout bounds every external process.
const processTimeout = 30 * time.Second

// pythonPath is Debian's interpreter, which has python3-cryptography (a
// pyenv python3 earlier on PATH may not).
const pythonPath = "/usr/bin/python3"

// pyVerifier is the independent verifier.
var pyVerifier = filepath.Join("pyverify", "atls_verify.py")

var (
	chainOnce sync.Once
	chain     *snp.SimChain
	chainErr  error
)

// simChain is the committed simulated chain, so that every test shares
// the roots of the vectors and no test pays for RSA-4096 key generation.
func simChain(t testing.TB) *snp.SimChain {
	t.Helper()
	chainOnce.Do(func() {
		var data []byte
		if data, chainErr = os.ReadFile(filepath.Join(vectorsDir, vectors.ChainFile)); chainErr == nil {
			chain, chainErr = snp.ParseSimChainPEM(data)
		}
	})
	require.NoError(t, chainErr)
	return chain
}

// simAttester simulates a guest with the vectors' measurement.
func simAttester(t testing.TB) *snp.SimAttester {
	t.Helper()
	a, err := snp.NewSimAttester(simChain(t), snp.SimOptions{Measurement: vectors.Measurement})
	require.NoError(t, err)
	return a
}

// goVerifier verifies under the committed roots with the vectors' policy.
func goVerifier(t testing.TB, now func() time.Time) *snp.Verifier {
	t.Helper()
	pol := snp.NewPolicy()
	pol.Measurements = []attest.HexBytes{vectors.Measurement[:]}
	v, err := snp.NewVerifier(snp.VerifierOptions{Roots: simChain(t).Roots(), Policy: pol, Now: now})
	require.NoError(t, err)
	return v
}

// issue makes an attested certificate valid now.
func issue(t testing.TB, role attest.Role, mode attest.Mode, nonce [attest.NonceSize]byte) *tls.Certificate {
	t.Helper()
	c, err := certgen.Issue(context.Background(), certgen.Request{Attester: simAttester(t), Role: role, Mode: mode, Nonce: nonce})
	require.NoError(t, err)
	return c
}

// writePEM writes c's certificate and key into dir; it returns their paths.
func writePEM(t testing.TB, dir, name string, c *tls.Certificate) (certPath, keyPath string) {
	t.Helper()
	certPEM, keyPEM, err := certgen.EncodePEM(c)
	require.NoError(t, err)
	certPath, keyPath = filepath.Join(dir, name+".cert.pem"), filepath.Join(dir, name+".key.pem")
	require.NoError(t, os.WriteFile(certPath, certPEM, 0o600))
	require.NoError(t, os.WriteFile(keyPath, keyPEM, 0o600))
	return certPath, keyPath
}

// firstPEM returns the DER of the first CERTIFICATE block after marker in
// text (from the start when marker is "").
func firstPEM(t testing.TB, text, marker string) []byte {
	t.Helper()
	if marker != "" {
		i := strings.Index(text, marker)
		require.GreaterOrEqual(t, i, 0, "no %q in output:\n%s", marker, text)
		text = text[i:]
	}
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		require.NotNil(t, b, "no certificate in output:\n%s", text)
		if b.Type == "CERTIFICATE" {
			return b.Bytes
		}
	}
}

// debianPackage names the package that provides each external program.
var debianPackage = map[string]string{"openssl": "openssl", "curl": "curl", "node": "nodejs"}

// tool returns the path of an external program, or skips the test.
func tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found, skipping this interoperability test (Debian package: %s): %v", name, debianPackage[name], err)
	}
	return p
}

// run runs a program with a timeout; it returns stdout and the exit code
// (-1 if it did not run to an exit).
func run(t testing.TB, stdin string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), processTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &exit) && ctx.Err() == nil:
		code = exit.ExitCode()
	default:
		t.Fatalf("%s %s: %v (context: %v)\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, ctx.Err(), out.String(), errb.String())
	}
	return out.String(), errb.String(), code
}

var (
	pythonOnce sync.Once
	pythonWhy  string
)

// requirePython skips the test unless /usr/bin/python3 with the
// cryptography module is available.
func requirePython(t testing.TB) {
	t.Helper()
	pythonOnce.Do(func() {
		if _, err := os.Stat(pythonPath); err != nil {
			pythonWhy = pythonPath + " is absent, skipping the Python verifier (apt-get install python3 python3-cryptography)"
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), processTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, pythonPath, "-B", "-c", "import cryptography; print(cryptography.__version__)").CombinedOutput()
		if err != nil {
			pythonWhy = "the Python module cryptography is absent, skipping the Python verifier (apt-get install python3-cryptography): " + strings.TrimSpace(string(out))
		}
	})
	if pythonWhy != "" {
		t.Skip(pythonWhy)
	}
}

// pyRequest is one run of the Python verifier.
type pyRequest struct {
	roots        string // default: the committed roots
	cert         string // a file, or
	connect      string // a HOST:PORT
	role         string
	nonce        string
	acceptStatic bool
	maxAge       int64
	now          string
	measurements []string // default: the vectors' measurement
}

// pyResult is its outcome: claims, or the failed check.
type pyResult struct {
	Claims map[string]any
	Check  string
	Line   string
}

// args returns the command line of r (without the interpreter).
func (r pyRequest) args() []string {
	roots := r.roots
	if roots == "" {
		roots = filepath.Join(vectorsDir, vectors.RootsFile)
	}
	args := []string{"--roots", roots, "--role", r.role, "--simulated"}
	if r.cert != "" {
		args = append(args, "--cert", r.cert)
	}
	if r.connect != "" {
		args = append(args, "--connect", r.connect)
	}
	if r.nonce != "" {
		args = append(args, "--nonce", r.nonce)
	}
	if r.acceptStatic {
		args = append(args, "--mode-allow-static")
	}
	if r.maxAge > 0 {
		args = append(args, "--max-age", strconv.FormatInt(r.maxAge, 10))
	}
	if r.now != "" {
		args = append(args, "--now", r.now)
	}
	ms := r.measurements
	if ms == nil {
		ms = []string{hexOf(vectors.Measurement[:])}
	}
	for _, m := range ms {
		args = append(args, "--measurement", m)
	}
	return args
}

// runPython runs the Python verifier's command line.
func runPython(t testing.TB, r pyRequest) pyResult {
	t.Helper()
	requirePython(t)
	args := append([]string{pyVerifier}, r.args()...)
	stdout, stderr, code := run(t, "", pythonPath, append([]string{"-B"}, args...)...)
	return pyOutcome(t, args, code, stdout, stderr)
}

// pyBatchDriver calls the verifier's main() once per command line, in one
// interpreter: starting Python and importing cryptography costs far more
// than a verification.
const pyBatchDriver = `
import contextlib, io, json, sys
sys.path.insert(0, sys.argv[1])
import atls_verify
results = []
for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = atls_verify.main(argv)
        except SystemExit as e:
            code = e.code
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
json.dump(results, sys.stdout)
`

// runPythonBatch runs the verifier's main() on each request in one
// Python process.
func runPythonBatch(t testing.TB, reqs []pyRequest) []pyResult {
	t.Helper()
	requirePython(t)
	argvs := make([][]string, len(reqs))
	for i, r := range reqs {
		argvs[i] = r.args()
	}
	in, err := json.Marshal(argvs)
	require.NoError(t, err)
	stdout, stderr, code := run(t, string(in), pythonPath, "-B", "-c", pyBatchDriver, filepath.Dir(pyVerifier))
	require.Equal(t, 0, code, "python batch driver failed:\n%s", stderr)
	var outs []struct {
		Code           int
		Stdout, Stderr string
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &outs), "python batch output:\n%s\nstderr:\n%s", stdout, stderr)
	require.Len(t, outs, len(reqs))
	res := make([]pyResult, len(reqs))
	for i, o := range outs {
		res[i] = pyOutcome(t, argvs[i], o.Code, o.Stdout, o.Stderr)
	}
	return res
}

// pyOutcome interprets a run: exit 0 with JSON claims or exit 1 with one
// FAIL line; anything else fails the test.
func pyOutcome(t testing.TB, args []string, code int, stdout, stderr string) pyResult {
	t.Helper()
	switch code {
	case 0:
		dec := json.NewDecoder(strings.NewReader(stdout))
		dec.UseNumber()
		var claims map[string]any
		require.NoError(t, dec.Decode(&claims), "python output:\n%s\nstderr:\n%s", stdout, stderr)
		return pyResult{Claims: claims}
	case 1:
		line := strings.TrimSpace(stdout)
		require.NotContains(t, line, "\n", "python printed more than one line:\n%s", stdout)
		rest, ok := strings.CutPrefix(line, "FAIL ")
		check, _, ok2 := strings.Cut(rest, ": ")
		require.True(t, ok && ok2, "python output is not a FAIL line: %q (stderr %s)", line, stderr)
		return pyResult{Check: check, Line: line}
	}
	t.Fatalf("python verifier exited %d\nargs: %v\nstdout:\n%s\nstderr:\n%s", code, args, stdout, stderr)
	return pyResult{}
}

// claimsJSON decodes Go claims the way runPython decodes Python's.
func claimsJSON(t testing.TB, c *attest.Claims) map[string]any {
	t.Helper()
	b, err := json.Marshal(c)
	require.NoError(t, err)
	return decodeJSON(t, b)
}

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	require.NoError(t, dec.Decode(&m))
	return m
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}
