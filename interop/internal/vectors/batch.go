package vectors

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/certgen"
)

// MerkleTreeHash is MTH(D[n]) of RFC 9162 section 2.1.1 over the leaf
// values of a batch (SPEC.md section 4.1), computed from the recursive
// definition: independently of package attest, so that the vectors check
// its verifier rather than mirror it. It panics on an empty batch.
func MerkleTreeHash(leaves [][attest.ReportDataSize]byte) [sha256.Size]byte {
	switch len(leaves) {
	case 0:
		panic("vectors: Merkle tree hash of no leaves")
	case 1:
		return sha256.Sum256(append([]byte{0x00}, leaves[0][:]...))
	}
	k := splitPoint(len(leaves))
	l, r := MerkleTreeHash(leaves[:k]), MerkleTreeHash(leaves[k:])
	return sha256.Sum256(append(append([]byte{0x01}, l[:]...), r[:]...))
}

// InclusionPath is PATH(m, D[n]) of RFC 9162 section 2.1.3.1, leaf level
// first.
func InclusionPath(m int, leaves [][attest.ReportDataSize]byte) [][sha256.Size]byte {
	if len(leaves) <= 1 {
		return nil
	}
	k := splitPoint(len(leaves))
	if m < k {
		return append(InclusionPath(m, leaves[:k]), MerkleTreeHash(leaves[k:]))
	}
	return append(InclusionPath(m-k, leaves[k:]), MerkleTreeHash(leaves[:k]))
}

// splitPoint is the largest power of two smaller than n (n > 1).
func splitPoint(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

// batchGroup issues the certificates of one batch: one report for all of
// its members, each with its own key, nonce and inclusion proof. Members
// take the tree positions in the order they are listed, so that
// regenerated vectors have the same indices.
type batchGroup struct {
	inner   attest.Attester
	members []string
	certs   map[string]*tls.Certificate
}

// batchMember is what a member's certificate is made for; it is issued
// for the nonce NonceFor(name).
type batchMember struct {
	role attest.Role
	key  certgen.KeyType
}

// issue makes the certificates of every member at once, each at Base
// (notBefore), through attesters that wait for one another's leaves.
// member says what each is made for.
func (b *batchGroup) issue(ctx context.Context, member func(name string) batchMember) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := len(b.members)
	r := &batchRound{
		leaves:  make([][attest.ReportDataSize]byte, n),
		arrived: make(chan struct{}, n),
		done:    make(chan struct{}),
	}
	go r.coordinate(ctx, b.inner)

	certs := make([]*tls.Certificate, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, name := range b.members {
		m := member(name)
		wg.Go(func() {
			certs[i], errs[i] = certgen.Issue(ctx, certgen.Request{
				Attester: batchSlot{round: r, index: i},
				Role:     m.role,
				Mode:     attest.ModeBatch,
				Nonce:    NonceFor(name),
				KeyType:  m.key,
				// certgen backdates notBefore by a minute.
				Now: func() time.Time { return Base.Add(time.Minute) },
			})
			if errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	b.certs = map[string]*tls.Certificate{}
	for i, name := range b.members {
		b.certs[name] = certs[i]
	}
	return nil
}

// cert returns the issued certificate of a member.
func (b *batchGroup) cert(name string) (*tls.Certificate, error) {
	c, ok := b.certs[name]
	if !ok {
		return nil, fmt.Errorf("vectors: %s is not an issued member of its batch", name)
	}
	return c, nil
}

// evidence returns the evidence of a member's certificate.
func (b *batchGroup) evidence(name string) (*attest.Evidence, error) {
	c, err := b.cert(name)
	if err != nil {
		return nil, err
	}
	return attest.FromCertificate(c.Leaf)
}

// batchRound collects the leaves of one batch and hands out the report.
type batchRound struct {
	leaves  [][attest.ReportDataSize]byte // leaves[i] is written by slot i before it signals arrived
	arrived chan struct{}
	done    chan struct{} // closed once ev or err is set
	ev      *attest.Evidence
	err     error
}

// coordinate waits for every leaf, then asks inner for the one report.
func (r *batchRound) coordinate(ctx context.Context, inner attest.Attester) {
	defer close(r.done)
	for range r.leaves {
		select {
		case <-r.arrived:
		case <-ctx.Done():
			r.err = ctx.Err()
			return
		}
	}
	rd := attest.BatchReportData(uint32(len(r.leaves)), MerkleTreeHash(r.leaves))
	r.ev, r.err = inner.Attest(ctx, rd)
	if r.err == nil && r.ev == nil {
		r.err = errors.New("vectors: the attester returned no evidence")
	}
}

// batchSlot is the attester of one member.
type batchSlot struct {
	round *batchRound
	index int
}

func (s batchSlot) Attest(ctx context.Context, leaf [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	r := s.round
	r.leaves[s.index] = leaf
	r.arrived <- struct{}{} // buffered for every member
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, r.err
	}
	proof := attest.BatchProof{
		Index: uint32(s.index),
		Size:  uint32(len(r.leaves)),
		Path:  InclusionPath(s.index, r.leaves),
	}
	ev := &attest.Evidence{Type: r.ev.Type, Records: maps.Clone(r.ev.Records)}
	ev.Records[attest.BatchRecordLabel] = attest.Record{MediaType: attest.BatchMediaType, Value: proof.Marshal()}
	return ev, nil
}

// editProof reissues c with its batch-proof record value changed by edit.
func editProof(c *tls.Certificate, edit func(proof []byte) []byte) (*tls.Certificate, error) {
	return MutateEvidence(c, func(ev *attest.Evidence) error {
		r, ok := ev.Records[attest.BatchRecordLabel]
		if !ok {
			return errors.New("vectors: no batch-proof record to edit")
		}
		ev.Records[attest.BatchRecordLabel] = attest.Record{MediaType: r.MediaType, Value: edit(append([]byte(nil), r.Value...))}
		return nil
	})
}

// batchSpecs lists the vectors of batched evidence (SPEC.md section 4.1):
// certificates of one batch A of 17, valid or with their proof record
// edited, a client batch of one, and evidence spliced from a batch C.
func (g *generator) batchSpecs(a attest.Attester) []spec {
	const (
		first = "server-batch-p256"
		last  = "server-batch-p384-same-report"
	)
	A := g.batch(a,
		first,
		"batch-nonce-of-other-leaf",
		"batch-forged-sibling",
		"batch-proof-other-index",
		"batch-path-truncated",
		"batch-path-overlong",
		"batch-size-zero",
		"batch-size-over-bound",
		"batch-index-out-of-range",
		"batch-proof-missing",
		"batch-proof-version-2",
		"batch-proof-bad-length",
		"batch-proof-media-type",
		"batch-spliced",
		"batch-claimed-as-nonce",
		"batch A: a member that is no vector",
		last, // index 16 of 17: a path of one sibling
	)
	B := g.batch(a, "client-batch-of-one-ed25519")
	C := g.batch(a, "batch C: member 0", "batch C: member 1", "batch C: member 2")

	proof := func(edit func(p []byte) []byte) func(*tls.Certificate) (*tls.Certificate, error) {
		return func(c *tls.Certificate) (*tls.Certificate, error) { return editProof(c, edit) }
	}
	evidence := func(edit func(ev *attest.Evidence) error) func(*tls.Certificate) (*tls.Certificate, error) {
		return func(c *tls.Certificate) (*tls.Certificate, error) { return MutateEvidence(c, edit) }
	}
	// lone is the proof of a batch of one, which nonce-mode evidence must
	// not carry.
	lone := (&attest.BatchProof{Index: 0, Size: 1}).Marshal()

	S, C2 := attest.RoleServer, attest.RoleClient
	Bt, N := attest.ModeBatch, attest.ModeNonce
	return []spec{
		// Valid.
		{name: first, desc: "A batched server certificate: its report commits to the root of a tree of 17 leaves (SPEC section 4.1), its proof record is that of leaf 0 (four siblings). ECDSA P-256 key.",
			role: S, mode: Bt, key: certgen.ECDSAP256, batch: A},
		{name: last, desc: "Another certificate of the same batch, with the same report and its own key, nonce and proof (leaf 16 of 17: one sibling). ECDSA P-384 key.",
			role: S, mode: Bt, key: certgen.ECDSAP384, batch: A},
		{name: "client-batch-of-one-ed25519", desc: "A batched client certificate (mutual attestation) alone in its batch: tree size 1, empty path, the root is the leaf hash. Ed25519 key.",
			role: C2, mode: Bt, key: certgen.Ed25519, batch: B},

		// Invalid: the proof record (step 6).
		{name: "batch-proof-missing", desc: "A batched certificate without its batch-proof record.",
			role: S, mode: Bt, batch: A, check: "batch.proof",
			post: evidence(func(ev *attest.Evidence) error { delete(ev.Records, attest.BatchRecordLabel); return nil })},
		{name: "batch-proof-in-nonce-mode", desc: "A nonce-mode certificate that carries a batch-proof record (of a batch of one).",
			role: S, mode: N, attester: a, check: "batch.proof",
			post: evidence(func(ev *attest.Evidence) error {
				ev.Records[attest.BatchRecordLabel] = attest.Record{MediaType: attest.BatchMediaType, Value: lone}
				return nil
			})},
		{name: "batch-proof-version-2", desc: "The proof record's version byte is 2.",
			role: S, mode: Bt, batch: A, check: "batch.proof", post: proof(func(p []byte) []byte { p[0] = 2; return p })},
		{name: "batch-proof-bad-length", desc: "The proof record has one byte after its path (its length is not 9 + 32k).",
			role: S, mode: Bt, batch: A, check: "batch.proof", post: proof(func(p []byte) []byte { return append(p, 0) })},
		{name: "batch-proof-media-type", desc: "The batch-proof record has the media type application/octet-stream.",
			role: S, mode: Bt, batch: A, check: "batch.proof",
			post: evidence(func(ev *attest.Evidence) error {
				r := ev.Records[attest.BatchRecordLabel]
				ev.Records[attest.BatchRecordLabel] = attest.Record{MediaType: "application/octet-stream", Value: r.Value}
				return nil
			})},
		{name: "batch-size-zero", desc: "The proof record says the tree has 0 leaves.",
			role: S, mode: Bt, batch: A, check: "batch.size",
			post: proof(func(p []byte) []byte { binary.BigEndian.PutUint32(p[5:9], 0); return p })},
		{name: "batch-size-over-bound", desc: "The proof record says the tree has 65537 leaves, one more than a verifier accepts.",
			role: S, mode: Bt, batch: A, check: "batch.size",
			post: proof(func(p []byte) []byte { binary.BigEndian.PutUint32(p[5:9], attest.MaxBatchSize+1); return p })},
		{name: "batch-index-out-of-range", desc: "The proof record's leaf index equals the tree size (17).",
			role: S, mode: Bt, batch: A, check: "batch.index",
			post: proof(func(p []byte) []byte { copy(p[1:5], p[5:9]); return p })},
		{name: "batch-path-truncated", desc: "The proof record's path lacks its last sibling (three of the four that leaf 4 of 17 needs).",
			role: S, mode: Bt, batch: A, check: "batch.path", post: proof(func(p []byte) []byte { return p[:len(p)-32] })},
		{name: "batch-path-overlong", desc: "The proof record's path has a fifth sibling (a copy of the fourth) after the four that leaf 5 of 17 needs.",
			role: S, mode: Bt, batch: A, check: "batch.path", post: proof(func(p []byte) []byte { return append(p, p[len(p)-32:]...) })},

		// Invalid: well-formed proofs that lead to another root (step 10).
		{name: "batch-nonce-of-other-leaf", desc: "A valid certificate of batch A verified with the nonce of server-batch-p256, another certificate of the same batch: each is valid only with its own nonce.",
			role: S, mode: Bt, batch: A, nonce: nonceOf, nonceOf: first, check: "snp.report_data"},
		{name: "batch-forged-sibling", desc: "One bit of the first sibling of the proof's path flipped.",
			role: S, mode: Bt, batch: A, check: "snp.report_data", post: proof(func(p []byte) []byte { p[9] ^= 0x01; return p })},
		{name: "batch-proof-other-index", desc: "The proof record of another leaf of the same batch (server-batch-p256's, index 0) instead of the certificate's own.",
			role: S, mode: Bt, batch: A, check: "snp.report_data",
			post: evidence(func(ev *attest.Evidence) error {
				other, err := A.evidence(first)
				if err != nil {
					return err
				}
				ev.Records[attest.BatchRecordLabel] = other.Records[attest.BatchRecordLabel]
				return nil
			})},
		{name: "batch-spliced", desc: "A certificate of batch A carrying the report, VCEK and proof record of a certificate of another batch (of 3).",
			role: S, mode: Bt, batch: A, check: "snp.report_data",
			post: evidence(func(ev *attest.Evidence) error {
				other, err := C.evidence("batch C: member 1")
				if err != nil {
					return err
				}
				for _, l := range []string{snp.ReportLabel, snp.CertLabel, attest.BatchRecordLabel} {
					ev.Records[l] = other.Records[l]
				}
				return nil
			})},
		{name: "batch-claimed-as-nonce", desc: "A batched certificate whose binding record was changed to say nonce, its proof record removed: the verifier computes the REPORT_DATA of mode 0x01, the report commits to a batch root.",
			role: S, mode: Bt, batch: A, check: "snp.report_data",
			post: evidence(func(ev *attest.Evidence) error {
				delete(ev.Records, attest.BatchRecordLabel)
				return ev.SetBinding(attest.RoleServer, attest.ModeNonce)
			})},
		{name: "nonce-claimed-as-batch", desc: "A nonce-mode certificate whose binding record was changed to say batch, with the proof of a batch of one: the verifier computes the batch REPORT_DATA of the certificate's leaf, the report carries the certificate's own REPORT_DATA.",
			role: S, mode: N, attester: a, check: "snp.report_data",
			post: evidence(func(ev *attest.Evidence) error {
				ev.Records[attest.BatchRecordLabel] = attest.Record{MediaType: attest.BatchMediaType, Value: lone}
				return ev.SetBinding(attest.RoleServer, attest.ModeBatch)
			})},
	}
}
