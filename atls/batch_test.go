package atls_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
	"github.com/confidential-go/atls/internal/atlstest"
)

// batchOf issues one batched server certificate per nonce, all from a
// single report of att.
func batchOf(t *testing.T, att attest.Attester, nonces ...[32]byte) []*tls.Certificate {
	t.Helper()
	b, err := attest.NewBatcher(att, attest.BatcherOptions{MaxSize: len(nonces), MaxWait: time.Minute})
	require.NoError(t, err)
	certs := make([]*tls.Certificate, len(nonces))
	errs := make([]error, len(nonces))
	var wg sync.WaitGroup
	for i, n := range nonces {
		wg.Go(func() {
			certs[i], errs[i] = certgen.Issue(context.Background(), certgen.Request{
				Attester: b, Role: attest.RoleServer, Mode: attest.ModeBatch, Nonce: n,
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, uint64(1), b.Reports(), "one report for the batch")
	return certs
}

// reissue makes a certificate for the key and validity of cert whose
// evidence is cert's changed by edit.
func reissue(t *testing.T, cert *tls.Certificate, edit func(ev *attest.Evidence)) *x509.Certificate {
	t.Helper()
	ev, err := attest.FromCertificate(cert.Leaf)
	require.NoError(t, err)
	edit(ev)
	ext, err := ev.Extension()
	require.NoError(t, err)
	leaf := cert.Leaf
	var exts []pkix.Extension
	for _, e := range leaf.Extensions {
		if !e.Id.Equal(attest.OIDCMW) {
			exts = append(exts, e)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: leaf.SerialNumber, Subject: leaf.Subject,
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		ExtraExtensions: append(exts, ext),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, leaf.PublicKey, cert.PrivateKey)
	require.NoError(t, err)
	out, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return out
}

func proofOf(t *testing.T, leaf *x509.Certificate) *attest.BatchProof {
	t.Helper()
	ev, err := attest.FromCertificate(leaf)
	require.NoError(t, err)
	raw, err := ev.Record(attest.BatchRecordLabel, attest.BatchMediaType)
	require.NoError(t, err)
	p, err := attest.ParseBatchProof(raw)
	require.NoError(t, err)
	return p
}

func setProof(raw []byte) func(*attest.Evidence) {
	return func(ev *attest.Evidence) {
		ev.Records[attest.BatchRecordLabel] = attest.Record{MediaType: attest.BatchMediaType, Value: raw}
	}
}

// Batched certificates verify wherever nonce certificates do, each only
// with its own nonce, and every change to the inclusion proof is refused.
func TestBatchedCertificates(t *testing.T) {
	f := atlstest.Get(t)
	ctx := context.Background()
	ver := f.Verifier(t, f.ServerMeasurement)
	n0, n1, n2, n3 := [32]byte{1}, [32]byte{2}, [32]byte{3}, [32]byte{4}
	batch := batchOf(t, f.ServerAttester, n0, n1, n2, n3)
	other := batchOf(t, f.ServerAttester, [32]byte{5}, [32]byte{6}, [32]byte{7}, [32]byte{8})
	verify := func(leaf *x509.Certificate, nonce *[32]byte) (*attest.Claims, error) {
		return atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{Verifier: ver, Nonce: nonce})
	}

	t.Run("each with its own nonce", func(t *testing.T) {
		reports, indexes := map[string]bool{}, map[uint32]bool{}
		for i, n := range [][32]byte{n0, n1, n2, n3} {
			leaf := batch[i].Leaf
			atlstest.RequireBindingMode(t, leaf, attest.ModeBatch)
			c, err := verify(leaf, &n)
			require.NoError(t, err)
			require.Equal(t, attest.ModeBatch, c.Mode)
			require.Equal(t, f.ServerMeasurement[:], []byte(c.SNP.Measurement))
			p := proofOf(t, leaf)
			require.Equal(t, uint32(4), p.Size)
			indexes[p.Index] = true
			ev, err := attest.FromCertificate(leaf)
			require.NoError(t, err)
			reports[string(ev.Records["report"].Value)] = true
		}
		require.Len(t, reports, 1, "the certificates share one report")
		require.Len(t, indexes, 4)
	})
	t.Run("not with another nonce", func(t *testing.T) {
		_, err := verify(batch[0].Leaf, &n1)
		atlstest.RequireCheck(t, err, attest.ErrBinding, "snp.report_data")
		_, err = verify(batch[1].Leaf, &[32]byte{9})
		atlstest.RequireCheck(t, err, attest.ErrBinding, "snp.report_data")
		_, err = verify(batch[0].Leaf, nil)
		atlstest.RequireCheck(t, err, attest.ErrBinding, "binding.nonce")
	})

	good := proofOf(t, batch[0].Leaf)
	edited := func(edit func(p *attest.BatchProof)) []byte {
		p := &attest.BatchProof{Index: good.Index, Size: good.Size, Path: append([][32]byte(nil), good.Path...)}
		edit(p)
		return p.Marshal()
	}
	withVersion := func(v byte) []byte { b := good.Marshal(); b[0] = v; return b }
	header := func(index, size uint32) []byte {
		b := []byte{1, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], index)
		binary.BigEndian.PutUint32(b[5:], size)
		return b
	}
	for _, tc := range []struct {
		name  string
		edit  func(*attest.Evidence)
		kind  error
		check string
	}{
		{"forged sibling", setProof(edited(func(p *attest.BatchProof) { p.Path[0][0] ^= 1 })), attest.ErrBinding, "snp.report_data"},
		{"another index", setProof(edited(func(p *attest.BatchProof) { p.Index ^= 1 })), attest.ErrBinding, "snp.report_data"},
		{"spliced from another batch", setProof(proofOf(t, other[0].Leaf).Marshal()), attest.ErrBinding, "snp.report_data"},
		{"another leaf's proof", setProof(proofOf(t, batch[1].Leaf).Marshal()), attest.ErrBinding, "snp.report_data"},
		{"truncated path", setProof(edited(func(p *attest.BatchProof) { p.Path = p.Path[:len(p.Path)-1] })), attest.ErrMalformedEvidence, "batch.path"},
		{"overlong path", setProof(edited(func(p *attest.BatchProof) { p.Path = append(p.Path, p.Path[0]) })), attest.ErrMalformedEvidence, "batch.path"},
		{"partial sibling", setProof(good.Marshal()[:9+32+5]), attest.ErrMalformedEvidence, "batch.proof"},
		{"version 2", setProof(withVersion(2)), attest.ErrMalformedEvidence, "batch.proof"},
		{"size 0", setProof(header(0, 0)), attest.ErrMalformedEvidence, "batch.size"},
		{"size over the bound", setProof(edited(func(p *attest.BatchProof) { p.Size = attest.MaxBatchSize + 1 })), attest.ErrMalformedEvidence, "batch.size"},
		{"index not below size", setProof(edited(func(p *attest.BatchProof) { p.Index = 4 })), attest.ErrMalformedEvidence, "batch.index"},
		{"no proof", func(ev *attest.Evidence) { delete(ev.Records, attest.BatchRecordLabel) }, attest.ErrMalformedEvidence, "batch.proof"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verify(reissue(t, batch[0], tc.edit), &n0)
			atlstest.RequireCheck(t, err, tc.kind, tc.check)
		})
	}
	t.Run("reissued unchanged", func(t *testing.T) {
		// The harness itself keeps a valid certificate valid.
		_, err := verify(reissue(t, batch[0], func(*attest.Evidence) {}), &n0)
		require.NoError(t, err)
	})
	t.Run("proof in a nonce certificate", func(t *testing.T) {
		c, err := certgen.Issue(ctx, certgen.Request{Attester: f.ServerAttester, Role: attest.RoleServer, Mode: attest.ModeNonce, Nonce: n0})
		require.NoError(t, err)
		_, err = verify(reissue(t, c, setProof(good.Marshal())), &n0)
		atlstest.RequireCheck(t, err, attest.ErrMalformedEvidence, "batch.proof")
	})
}

// Over TLS, the certificates of one batch share the appraisal of their
// report (one call of the platform verifier), each handshake still checks
// its own nonce and proof, and a batched certificate replayed later fails.
func TestBatchedHandshakesShareAppraisal(t *testing.T) {
	f := atlstest.Get(t)
	ver := f.Verifier(t, f.ServerMeasurement)
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: ver})
	// Two connections' configurations, whose nonces enter one batch.
	cfgs := []*tls.Config{clientConfig(t, cli, nil), clientConfig(t, cli, nil)}
	var nonces [][32]byte
	for _, c := range cfgs {
		n, err := atlstest.NonceOf(c.NextProtos)
		require.NoError(t, err)
		nonces = append(nonces, n)
	}
	served := batchOf(t, f.ServerAttester, nonces...)

	digests := map[string]bool{}
	for i, cfg := range cfgs {
		res := atlstest.Handshake(t, maliciousServer(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return served[i], nil }), cfg)
		require.NoError(t, res.Client)
		c, ok := cli.PeerClaims(res.ClientCS)
		require.True(t, ok)
		require.Equal(t, attest.ModeBatch, c.Mode)
		ev, err := attest.FromCertificate(res.ClientCS.PeerCertificates[0])
		require.NoError(t, err)
		d, err := ev.Digest()
		require.NoError(t, err)
		require.Equal(t, d[:], []byte(c.EvidenceDigest), "claims name the certificate's own evidence")
		digests[c.EvidenceDigest.String()] = true
	}
	require.Len(t, digests, 2)
	require.Equal(t, int64(1), ver.Calls.Load(), "one appraisal for the batch's report")

	// Replayed to the same client, whose cache holds the report's
	// appraisal: refused, the new nonce is not in the tree.
	replay := maliciousServer(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return served[0], nil })
	res := atlstest.Handshake(t, replay, clientConfig(t, cli, nil))
	atlstest.RequireCheck(t, res.Client, attest.ErrBinding, "snp.report_data")
}

// The certificates of one batch reach a client's connections at the same
// moment: their appraisals, asked concurrently, still run once.
func TestBatchedConcurrentHandshakesAppraiseOnce(t *testing.T) {
	f := atlstest.Get(t)
	ver := f.Verifier(t, f.ServerMeasurement)
	// A slow verifier, so that the second handshake asks while the first
	// appraisal is under way (either way it must not ask the verifier).
	ver.Before = func() { time.Sleep(300 * time.Millisecond) }
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: ver})
	const n = 3
	b, err := attest.NewBatcher(f.ServerAttester, attest.BatcherOptions{MaxSize: n, MaxWait: time.Minute})
	require.NoError(t, err)
	scfg := maliciousServer(func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		nonce, err := atlstest.NonceOf(h.SupportedProtos)
		if err != nil {
			return nil, err
		}
		return certgen.Issue(h.Context(), certgen.Request{Attester: b, Role: attest.RoleServer, Mode: attest.ModeBatch, Nonce: nonce})
	})
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range errs {
		cfg := clientConfig(t, cli, nil)
		wg.Go(func() { errs[i] = atlstest.Handshake(t, scfg, cfg).Client })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, uint64(1), b.Reports())
	require.Equal(t, int64(1), ver.Calls.Load())
}
