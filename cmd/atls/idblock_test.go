package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/atls/snp/idblock"
)

// The virtee/sev test case (atls/snp/idblock/testdata, Apache-2.0).
const (
	idbTestdata        = "../../atls/snp/idblock/testdata/"
	idbVirteeLD        = "a14d638341e5674628fe1e02fbedebe5e5ab4faf1dd72d8966068e615bb99efd13d214b35c231715b38e263dc6059745"
	idbVirteeBlock     = "oU1jg0HlZ0Yo/h4C++3r5eWrT68d1y2JZgaOYVu5nv0T0hSzXCMXFbOOJj3GBZdFAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAwAAAAAA"
	idbVirteeIDDigest  = "59fb2c686dfa4fef49f38339aa775c90051c28d57383ddc3baf3b5eb4b1496df3b0dbbdcbae5fe27677a644820773fe2"
	idbVirteeAuthorDig = "eed81169fb0cb5e0ec34794f128fd4e0c4a46f67c65a1adfa81fcb24bcc088c272369b7ffc3eb2b6af6a4284a1b36c5f"
)

// readB64 reads a file written by atls idblock: one line of base64.
func readB64(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	s := string(data)
	require.True(t, strings.HasSuffix(s, "\n") && strings.Count(s, "\n") == 1, "want one line: %q", s)
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	require.NoError(t, err)
	return b
}

func publicKeyOf(t *testing.T, path string) *ecdsa.PublicKey {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	k, err := idblock.ParsePrivateKey(data)
	require.NoError(t, err)
	return &k.PublicKey
}

// TestIDBlockKnownAnswer: virtee's case through the command: the block
// byte for byte, the digests, and a fresh ID auth that verifies with the
// public keys of the key files.
func TestIDBlockKnownAnswer(t *testing.T) {
	dir := t.TempDir()
	blockFile, authFile := filepath.Join(dir, "block.b64"), filepath.Join(dir, "auth.b64")
	r := mustRun(t, exitOK, "idblock", "--measurement", idbVirteeLD,
		"--id-key", idbTestdata+"virtee/test_id_key.pem", "--author-key", idbTestdata+"virtee/test_auth_key.pem",
		"--out-block", blockFile, "--out-auth", authFile)
	require.Equal(t, "id_key_digest: "+idbVirteeIDDigest+"\nauthor_key_digest: "+idbVirteeAuthorDig+"\n", r.stdout)
	require.Contains(t, r.stderr, "author-key-enabled=on")
	block, auth := readB64(t, blockFile), readB64(t, authFile)
	require.Equal(t, idbVirteeBlock, base64.StdEncoding.EncodeToString(block))
	require.Len(t, auth, idblock.AuthSize)

	a, err := idblock.ParseAuth(auth)
	require.NoError(t, err)
	require.True(t, a.IDKey.Equal(publicKeyOf(t, idbTestdata+"virtee/test_id_key.pem")))
	require.True(t, a.AuthorKey.Equal(publicKeyOf(t, idbTestdata+"virtee/test_auth_key.pem")))
	require.NoError(t, a.Verify(block))

	// Files are not overwritten without --force.
	r = mustRun(t, exitFailure, "idblock", "--measurement", idbVirteeLD, "--id-key", idbTestdata+"virtee/test_id_key.pem",
		"--out-block", blockFile, "--out-auth", authFile)
	require.Contains(t, r.stderr, "--force")
	mustRun(t, exitOK, "idblock", "--measurement", idbVirteeLD, "--id-key", idbTestdata+"virtee/test_id_key.pem",
		"--out-block", blockFile, "--out-auth", authFile, "--force")
	l, err := idblock.ParseAndVerify(readB64(t, blockFile), readB64(t, authFile))
	require.NoError(t, err)
	require.False(t, l.AuthorKeyEn)
}

// TestIDBlockFields: SEC 1 keys (sev-snp-measure's) and every block field
// from the flags.
func TestIDBlockFields(t *testing.T) {
	dir := t.TempDir()
	blockFile, authFile := filepath.Join(dir, "b"), filepath.Join(dir, "a")
	r := mustRun(t, exitOK, "idblock", "--measurement", idbVirteeLD,
		"--id-key", idbTestdata+"sev-snp-measure/id_key_test.pem",
		"--family-id", "00112233445566778899aabbccddeeff", "--image-id", "0x01", "--guest-svn", "42", "--policy", "0x20000",
		"--out-block", blockFile, "--out-auth", authFile)
	require.Equal(t, "id_key_digest: 870b7e35c53f8a72d0d322f75ab2af8262792aaf6579622ce4131c3f21f289e77cb0560a5e3b90b3932e674ec709cb14\n", r.stdout)
	require.NotContains(t, r.stderr, "author-key-enabled")
	l, err := idblock.ParseAndVerify(readB64(t, blockFile), readB64(t, authFile))
	require.NoError(t, err)
	require.Equal(t, [16]byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}, l.Block.FamilyID)
	require.Equal(t, [16]byte{0: 1}, l.Block.ImageID)
	require.Equal(t, uint32(42), l.Block.GuestSVN)
	require.Equal(t, uint64(0x20000), l.Block.Policy)
}

func TestIDBlockUsage(t *testing.T) {
	dir := t.TempDir()
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(p256)
	require.NoError(t, err)
	p256File := filepath.Join(dir, "p256.pem")
	require.NoError(t, os.WriteFile(p256File, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	idKey := idbTestdata + "virtee/test_id_key.pem"
	out := []string{"--out-block", filepath.Join(dir, "b"), "--out-auth", filepath.Join(dir, "a")}
	for _, tc := range []struct {
		name string
		code int
		args []string
		want string
	}{
		{"no measurement", exitUsage, append([]string{"--id-key", idKey}, out...), "--measurement is required"},
		{"short measurement", exitUsage, append([]string{"--measurement", "abcd", "--id-key", idKey}, out...), "--measurement"},
		{"no key", exitUsage, append([]string{"--measurement", idbVirteeLD}, out...), "--id-key is required"},
		{"no outputs", exitUsage, []string{"--measurement", idbVirteeLD, "--id-key", idKey}, "--out-block and --out-auth are required"},
		{"same output", exitUsage, []string{"--measurement", idbVirteeLD, "--id-key", idKey, "--out-block", "x", "--out-auth", "x"}, "different files"},
		{"P-256 key", exitUsage, append([]string{"--measurement", idbVirteeLD, "--id-key", p256File}, out...), "idblock.key"},
		{"P-256 author key", exitUsage, append([]string{"--measurement", idbVirteeLD, "--id-key", idKey, "--author-key", p256File}, out...), "idblock.key"},
		{"missing key file", exitFailure, append([]string{"--measurement", idbVirteeLD, "--id-key", filepath.Join(dir, "nope")}, out...), "nope"},
		{"policy without bit 17", exitUsage, append([]string{"--measurement", idbVirteeLD, "--id-key", idKey, "--policy", "0x10000"}, out...), "idblock.policy"},
		{"long family ID", exitUsage, append([]string{"--measurement", idbVirteeLD, "--id-key", idKey, "--family-id", strings.Repeat("00", 17)}, out...), "--family-id"},
		{"negative SVN", exitUsage, append([]string{"--measurement", idbVirteeLD, "--id-key", idKey, "--guest-svn", "-1"}, out...), "--guest-svn"},
		{"argument", exitUsage, append([]string{"--measurement", idbVirteeLD, "--id-key", idKey, "extra"}, out...), "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRun(t, tc.code, append([]string{"idblock"}, tc.args...)...)
			require.Contains(t, r.stderr, tc.want)
			require.Empty(t, r.stdout)
		})
	}
	_, err = os.Stat(filepath.Join(dir, "b"))
	require.ErrorIs(t, err, os.ErrNotExist, "a failed run wrote a file")
}

// TestReferenceValuesWorkflow is the owner's workflow through the
// command: measure image A, sign an ID block for it, write a policy from
// the launch inputs and the ID key digest, and check simulated VMs
// against that policy, which never saw them: the VM launched from A with
// the block is accepted; one launched from image B (another kernel
// command line), or from A without the block, is refused.
func TestReferenceValuesWorkflow(t *testing.T) {
	dir := t.TempDir()
	launch := func(cmdline string) []string {
		return []string{"--ovmf", "../../atls/snp/measure/testdata/ovmf_AmdSev_suffix.bin",
			"--snp-ovmf-hash", "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74",
			"--kernel", os.DevNull, "--initrd", os.DevNull, "--append", cmdline,
			"--vcpus", "1", "--vcpu-type", "EPYC-v4", "--guest-features", "0x21"}
	}
	// sev-snp-measure's known answer for image A (append "").
	imageA := strings.TrimSpace(mustRun(t, exitOK, append([]string{"measure"}, launch("")...)...).stdout)
	require.Equal(t, "329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198", imageA)
	imageB := strings.TrimSpace(mustRun(t, exitOK, append([]string{"measure"}, launch("console=ttyS0")...)...).stdout)
	require.NotEqual(t, imageA, imageB)

	blockFile, authFile := filepath.Join(dir, "block.b64"), filepath.Join(dir, "auth.b64")
	r := mustRun(t, exitOK, "idblock", "--measurement", imageA, "--id-key", idbTestdata+"virtee/test_id_key.pem",
		"--out-block", blockFile, "--out-auth", authFile)
	idDigest := strings.TrimPrefix(strings.TrimSpace(r.stdout), "id_key_digest: ")
	require.Equal(t, idbVirteeIDDigest, idDigest)
	policyFile := filepath.Join(dir, "policy.json")
	mustRun(t, exitOK, append(append([]string{"policy", "from-launch"}, launch("")...), "--id-key-digest", idDigest, "--out", policyFile)...)
	policy, err := snp.LoadPolicy(policyFile)
	require.NoError(t, err)

	chainPEM, err := os.ReadFile(filepath.Join(baseSimDir, simChainFile))
	require.NoError(t, err)
	chain, err := snp.ParseSimChainPEM(chainPEM)
	require.NoError(t, err)
	v, err := snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: policy})
	require.NoError(t, err)
	appraise := func(opts snp.SimOptions) error {
		t.Helper()
		a, err := snp.NewSimAttester(chain, opts)
		require.NoError(t, err)
		var rd [64]byte
		rd[0] = 1
		ev, err := a.Attest(context.Background(), rd)
		require.NoError(t, err)
		_, err = v.Verify(context.Background(), ev, rd)
		return err
	}
	var a, b [48]byte
	copy(a[:], mustHex(t, imageA))
	copy(b[:], mustHex(t, imageB))
	block, auth := readB64(t, blockFile), readB64(t, authFile)

	require.NoError(t, appraise(snp.SimOptions{Measurement: a, IDBlock: block, IDAuth: auth}))
	err = appraise(snp.SimOptions{Measurement: b})
	require.ErrorIs(t, err, attest.ErrPolicy)
	require.Equal(t, "policy.measurement", attest.FailedCheck(err))
	err = appraise(snp.SimOptions{Measurement: a})
	require.ErrorIs(t, err, attest.ErrPolicy)
	require.Contains(t, []string{"policy.id_key", "policy.validate"}, attest.FailedCheck(err), "%v", err)

	// Image B cannot even be launched with A's block.
	_, err = snp.NewSimAttester(chain, snp.SimOptions{Measurement: b, IDBlock: block, IDAuth: auth})
	require.Equal(t, idblock.CheckMeasurement, attest.FailedCheck(err))
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := parseMeasurement(s)
	require.NoError(t, err)
	return b[:]
}

func TestIDBlockHelp(t *testing.T) {
	for _, args := range [][]string{{"idblock", "-h"}, {"help", "idblock"}} {
		r := mustRun(t, exitOK, args...)
		require.Contains(t, r.stdout, "Usage:\n  atls idblock")
		require.Contains(t, r.stdout, "Examples:\n  ")
		require.Contains(t, r.stdout, "--author-key")
		require.Empty(t, r.stderr)
	}
}
