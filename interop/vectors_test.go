package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/interop/internal/vectors"
	"github.com/stretchr/testify/require"
)

// regenerate is the fix for every disagreement between the committed
// vectors and the generator.
const regenerate = "testdata/vectors does not match interop/internal/vectors: run `go generate ./interop/...` and commit the result"

func loadManifest(t *testing.T) *vectors.Manifest {
	t.Helper()
	m, err := vectors.LoadManifest(vectorsDir)
	require.NoError(t, err, regenerate)
	require.NotEmpty(t, m.Vectors)
	return m
}

func loadVector(t *testing.T, v vectors.Vector) *vectors.Loaded {
	t.Helper()
	l, err := vectors.Load(vectorsDir, v)
	require.NoError(t, err, regenerate)
	return l
}

// TestVectorsVerify verifies every committed vector with the Go verifier
// at the vector's fixed time: valid ones give exactly the recorded claims,
// invalid ones fail exactly the named check, and the recorded REPORT_DATA
// is the one computed from the committed certificate and nonce.
func TestVectorsVerify(t *testing.T) {
	m := loadManifest(t)
	var valid, invalid int
	for _, v := range m.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			l := loadVector(t, v)
			ver, err := vectors.NewVerifier(vectorsDir, m, l.Time)
			require.NoError(t, err)
			e, err := l.Expectation()
			require.NoError(t, err)
			res, verr := vectors.VerifyCertificate(context.Background(), ver, l.Cert.Leaf, e)

			if v.ReportData == "" {
				require.Nil(t, res.ReportData, "the verifier computes REPORT_DATA, the manifest has none. "+regenerate)
			} else {
				require.NotNil(t, res.ReportData, "the verifier stops before computing REPORT_DATA. "+regenerate)
				require.Equal(t, v.ReportData, hex.EncodeToString(res.ReportData[:]), "REPORT_DATA of the committed certificate and nonce. "+regenerate)
			}
			if !v.Valid {
				require.Error(t, verr, "the Go verifier accepts a vector that should fail %s", v.Check)
				require.Equal(t, v.Check, attest.FailedCheck(verr), "failed check (%v)", verr)
				require.Empty(t, v.Claims)
				return
			}
			require.NoError(t, verr)
			require.NotEmpty(t, v.Claims)
			require.Equal(t, decodeJSON(t, v.Claims), claimsJSON(t, res.Claims), "claims of %s", v.Name)
			require.Equal(t, v.ReportData, hex.EncodeToString(res.Claims.ReportData))
		})
		if v.Valid {
			valid++
		} else {
			invalid++
		}
	}
	require.GreaterOrEqual(t, valid, 4)
	require.GreaterOrEqual(t, invalid, 8)
}

// TestVectorsMatchGenerator regenerates the vectors (under the committed
// simulated chain) and checks that the committed ones have the same
// files, manifest and certificate contents, except for what keys and
// signatures make random.
func TestVectorsMatchGenerator(t *testing.T) {
	committedChain, err := os.ReadFile(filepath.Join(vectorsDir, vectors.ChainFile))
	require.NoError(t, err, regenerate)
	dir := t.TempDir()
	require.NoError(t, vectors.Generate(context.Background(), vectors.Options{Out: dir, ChainPEM: committedChain}))

	require.Equal(t, listDir(t, dir), listDir(t, vectorsDir), "files. "+regenerate)
	for _, f := range []string{vectors.ChainFile, vectors.RootsFile} {
		want, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(vectorsDir, f))
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "%s. %s", f, regenerate)
	}

	fresh, err := vectors.LoadManifest(dir)
	require.NoError(t, err)
	committed := loadManifest(t)
	names := func(m *vectors.Manifest) []string {
		var out []string
		for _, v := range m.Vectors {
			out = append(out, v.Name)
		}
		return out
	}
	require.Equal(t, names(fresh), names(committed), "vectors in manifest.json. "+regenerate)
	header := func(m *vectors.Manifest) vectors.Manifest { c := *m; c.Vectors = nil; return c }
	require.Equal(t, header(fresh), header(committed), "manifest.json. "+regenerate)
	for i, v := range committed.Vectors {
		require.Equal(t, normalize(t, fresh.Vectors[i]), normalize(t, v), "vector %s in manifest.json (random fields blanked). %s", v.Name, regenerate)
	}

	for _, v := range committed.Vectors {
		want, err := os.ReadFile(filepath.Join(dir, v.Cert))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(vectorsDir, v.Cert))
		require.NoError(t, err)
		fw, err := vectors.Fingerprint(want)
		require.NoError(t, err)
		fg, err := vectors.Fingerprint(got)
		require.NoError(t, err, "%s. %s", v.Cert, regenerate)
		require.Equal(t, fw, fg, "contents of %s. %s", v.Cert, regenerate)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// normalize blanks the fields of a vector that depend on random keys, or
// on the time the simulator issued the VCEK (valid_until).
func normalize(t *testing.T, v vectors.Vector) string {
	t.Helper()
	v.ReportData = ""
	if len(v.Claims) > 0 {
		claims := decodeJSON(t, v.Claims)
		delete(claims, "report_data")
		delete(claims, "evidence_digest")
		delete(claims, "valid_until")
		b, err := json.Marshal(claims)
		require.NoError(t, err)
		v.Claims = b
	}
	b, err := json.MarshalIndent(v, "", "  ")
	require.NoError(t, err)
	return string(b)
}

// TestVectorsThroughATLS cross-checks VerifyCertificate, which the
// vectors' tests use, with package atls itself: each vector's certificate
// is presented in a real TLS 1.3 handshake, by a server to an atls.Client
// or by a client to an atls.Server, and atls must reach the same verdict
// as VerifyCertificate given the nonce atls sends (a random one, which
// decides only for nonce-bound evidence).
func TestVectorsThroughATLS(t *testing.T) {
	m := loadManifest(t)
	for _, v := range m.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			l := loadVector(t, v)
			now := func() time.Time { return l.Time }
			ver, err := vectors.NewVerifier(vectorsDir, m, l.Time)
			require.NoError(t, err)
			e, err := l.Expectation()
			require.NoError(t, err)
			// Any nonce but the vector's gives the verdict atls reaches.
			var n [attest.NonceSize]byte
			_, _ = rand.Read(n[:])
			e.Nonce = &n
			_, want := vectors.VerifyCertificate(context.Background(), ver, l.Cert.Leaf, e)

			var got error
			switch e.Role {
			case attest.RoleServer:
				client, err := atls.NewClient(atls.ClientOptions{Verifier: ver, AcceptStatic: l.AcceptStatic, MaxAge: l.MaxAge(), Now: now})
				require.NoError(t, err)
				ccfg, err := client.TLSConfig()
				require.NoError(t, err)
				scfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*l.Cert}}
				_, got = handshake(t, scfg, ccfg)
			case attest.RoleClient:
				server, err := atls.NewServer(atls.ServerOptions{ClientVerifier: ver, AcceptStaticClients: l.AcceptStatic, ClientMaxAge: l.MaxAge(), Now: now})
				require.NoError(t, err)
				scfg := server.Hook(&tls.Config{Certificates: []tls.Certificate{throwawayCert(t)}})
				// Present the certificate whatever names the server asks for
				// (crypto/tls would otherwise match them against its issuer).
				ccfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
					GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return l.Cert, nil }}
				got, _ = handshake(t, scfg, ccfg)
			}
			if want == nil {
				require.NoError(t, got)
				return
			}
			require.Error(t, got, "atls accepts what VerifyCertificate rejects (%v)", want)
			require.Equal(t, attest.FailedCheck(want), attest.FailedCheck(got), "atls: %v; VerifyCertificate: %v", got, want)
		})
	}
}

// handshake runs a TLS handshake over loopback TCP and returns the errors
// of both sides.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), processTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		s := tls.Server(conn, server)
		err = s.HandshakeContext(ctx)
		_ = s.Close()
		done <- err
	}()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err)
	c := tls.Client(conn, client)
	clientErr = c.HandshakeContext(ctx)
	// In TLS 1.3 the server checks the client's certificate after the
	// client has finished: wait for its verdict before closing.
	serverErr = <-done
	_ = c.Close()
	return serverErr, clientErr
}

// throwawayCert is an ordinary certificate for the non-attested side.
func throwawayCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ordinary server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestVectorsMerkleTree checks the generator's RFC 9162 tree, built from
// the recursive definition, against the verifier in package attest: for
// every leaf of trees of 1 to 70 leaves (and a few larger), the inclusion
// path has the length the verifier demands and leads to the tree hash,
// and a path with one bit flipped does not.
func TestVectorsMerkleTree(t *testing.T) {
	sizes := []int{}
	for n := 1; n <= 70; n++ {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, 127, 128, 129, 1000)
	for _, n := range sizes {
		leaves := make([][attest.ReportDataSize]byte, n)
		for i := range leaves {
			_, err := rand.Read(leaves[i][:])
			require.NoError(t, err)
		}
		root := vectors.MerkleTreeHash(leaves)
		for m := range n {
			p := attest.BatchProof{Index: uint32(m), Size: uint32(n), Path: vectors.InclusionPath(m, leaves)}
			parsed, err := attest.ParseBatchProof(p.Marshal())
			require.NoError(t, err, "leaf %d of %d", m, n)
			got, err := parsed.Root(leaves[m])
			require.NoError(t, err)
			require.Equal(t, root, got, "leaf %d of %d", m, n)
			if len(p.Path) > 0 {
				j := m % len(p.Path)
				p.Path[j][m%32] ^= 0x80
				got, err = p.Root(leaves[m])
				require.NoError(t, err)
				require.NotEqual(t, root, got, "leaf %d of %d, sibling %d flipped", m, n, j)
			} else {
				require.Equal(t, 1, n)
			}
		}
	}
}

// TestVectorsBatchSharedReport checks what the two valid certificates of
// batch A show: one report, two keys, two proofs, and each certificate
// valid with its own nonce only.
func TestVectorsBatchSharedReport(t *testing.T) {
	m := loadManifest(t)
	var loaded []*vectors.Loaded
	for _, name := range []string{"server-batch-p256", "server-batch-p384-same-report"} {
		i := slices.IndexFunc(m.Vectors, func(v vectors.Vector) bool { return v.Name == name })
		require.GreaterOrEqual(t, i, 0, "vector %s. %s", name, regenerate)
		require.True(t, m.Vectors[i].Valid)
		loaded = append(loaded, loadVector(t, m.Vectors[i]))
	}
	var reports [][]byte
	var proofs []*attest.BatchProof
	for _, l := range loaded {
		ev, err := attest.FromCertificate(l.Cert.Leaf)
		require.NoError(t, err)
		reports = append(reports, ev.Records[snp.ReportLabel].Value)
		p, err := attest.ParseBatchProof(ev.Records[attest.BatchRecordLabel].Value)
		require.NoError(t, err)
		proofs = append(proofs, p)
	}
	require.Equal(t, reports[0], reports[1], "one report for both")
	require.NotEqual(t, loaded[0].Cert.Leaf.RawSubjectPublicKeyInfo, loaded[1].Cert.Leaf.RawSubjectPublicKeyInfo)
	require.Equal(t, uint32(17), proofs[0].Size)
	require.Equal(t, proofs[0].Size, proofs[1].Size)
	require.NotEqual(t, proofs[0].Index, proofs[1].Index)

	for i, l := range loaded {
		ver, err := vectors.NewVerifier(vectorsDir, m, l.Time)
		require.NoError(t, err)
		for j, other := range loaded {
			e, err := l.Expectation()
			require.NoError(t, err)
			e.Nonce = other.NonceBytes
			_, err = vectors.VerifyCertificate(context.Background(), ver, l.Cert.Leaf, e)
			if i == j {
				require.NoError(t, err, "%s with its own nonce", l.Name)
			} else {
				require.Equal(t, "snp.report_data", attest.FailedCheck(err), "%s with the nonce of %s: %v", l.Name, other.Name, err)
			}
		}
	}
}

// TestVectorsCoverBatch requires vectors for every check of SPEC.md
// section 4.1 and valid batched certificates of both roles.
func TestVectorsCoverBatch(t *testing.T) {
	m := loadManifest(t)
	checks := map[string]bool{}
	roles := map[string]bool{}
	for _, v := range m.Vectors {
		if v.Mode != attest.ModeBatch.String() {
			continue
		}
		if v.Valid {
			roles[v.Role] = true
		} else {
			checks[v.Check] = true
		}
	}
	for _, c := range []string{"batch.proof", "batch.size", "batch.index", "batch.path", "snp.report_data"} {
		require.True(t, checks[c], "no invalid batched vector fails %s. %s", c, regenerate)
	}
	require.Equal(t, map[string]bool{"server": true, "client": true}, roles, "valid batched vectors. "+regenerate)
}
