package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// mth and auditPath are RFC 9162 section 2.1.1 MTH and section 2.1.3.1
// PATH written as the RFC states them, recursively, to check the
// bottom-up builder of batch.go against.
func mth(d [][]byte) [sha256.Size]byte {
	if len(d) == 1 {
		return sha256.Sum256(append([]byte{0x00}, d[0]...))
	}
	k := splitPoint(len(d))
	l, r := mth(d[:k]), mth(d[k:])
	return sha256.Sum256(append(append([]byte{0x01}, l[:]...), r[:]...))
}

func auditPath(m int, d [][]byte) [][sha256.Size]byte {
	if len(d) == 1 {
		return nil
	}
	k := splitPoint(len(d))
	if m < k {
		return append(auditPath(m, d[:k]), mth(d[k:]))
	}
	return append(auditPath(m-k, d[k:]), mth(d[:k]))
}

// splitPoint is the largest power of two smaller than n (n > 1).
func splitPoint(n int) int {
	k := 1
	for k*2 < n {
		k *= 2
	}
	return k
}

func testLeaf(i int) [ReportDataSize]byte {
	return sha512.Sum512([]byte(fmt.Sprintf("leaf %d", i)))
}

func TestMerkleTreeRFC9162(t *testing.T) {
	for n := 1; n <= 70; n++ {
		leaves := make([][ReportDataSize]byte, n)
		raw := make([][]byte, n)
		for i := range leaves {
			leaves[i] = testLeaf(i)
			raw[i] = leaves[i][:]
		}
		tree := newMerkleTree(leaves)
		root := mth(raw)
		require.Equal(t, n, tree.size())
		require.Equal(t, root, tree.root(), "size %d", n)
		for m := range n {
			want := auditPath(m, raw)
			path := tree.path(m)
			require.Equal(t, want, path, "size %d index %d", n, m)
			require.Equal(t, len(want), pathLen(uint32(m), uint32(n)), "size %d index %d", n, m)

			p := &BatchProof{Index: uint32(m), Size: uint32(n), Path: path}
			got, err := p.Root(leaves[m])
			require.NoError(t, err, "size %d index %d", n, m)
			require.Equal(t, root, got, "size %d index %d", n, m)
			back, err := ParseBatchProof(p.Marshal())
			require.NoError(t, err)
			require.Equal(t, p.Marshal(), back.Marshal())
			require.Equal(t, p.Index, back.Index)
			require.Equal(t, p.Size, back.Size)
			if n > 1 {
				require.Equal(t, p.Path, back.Path)
			}
		}
	}
	// The longest path within the bound fits the verifier's limit.
	require.Equal(t, 16, pathLen(MaxBatchSize-1, MaxBatchSize))
	require.Equal(t, 16, pathLen(0, MaxBatchSize))
	require.Equal(t, 16, pathLen(0, MaxBatchSize/2+1))
	require.Equal(t, 1, pathLen(MaxBatchSize/2, MaxBatchSize/2+1))
}

func TestBatchKnownAnswers(t *testing.T) {
	// Computed independently (Python hashlib) from the definitions:
	// leaves 0x01*64, 0x02*64, 0x03*64; root = H(1|H(1|H(0|l0)|H(0|l1))|H(0|l2)).
	var leaves [][ReportDataSize]byte
	for i := range 3 {
		var l [ReportDataSize]byte
		for j := range l {
			l[j] = byte(i + 1)
		}
		leaves = append(leaves, l)
	}
	root := newMerkleTree(leaves).root()
	require.Equal(t, "8941a11674d19bd2df9e0b57aa11731aded1da642bb9f32bc642353a2c9d0ecc", hex.EncodeToString(root[:]))

	// SHA-512("ATLS-SNP-V1-BATCH" || 3 as 8 bytes BE || 00 01 .. 1f).
	var r [sha256.Size]byte
	for i := range r {
		r[i] = byte(i)
	}
	rd := BatchReportData(3, r)
	require.Equal(t, "b90c5ad27ccd2c0a156b4f99a5a8c94b70809129b6b523875d54b5d1f09f5a63"+
		"cea2f92c8244ad13869ce4cf1f2b90230155077f0def188e94f538dbcae886cd", hex.EncodeToString(rd[:]))
	pre := append([]byte(BatchLabel), 0, 0, 0, 0, 0, 0, 0, 3)
	pre = append(pre, r[:]...)
	require.Len(t, pre, 57)
	require.Equal(t, sha512.Sum512(pre), rd)
}

// TestBatchSpecExample checks the example of interop/SPEC.md section 8.1
// (three leaves, one report).
func TestBatchSpecExample(t *testing.T) {
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		require.NoError(t, err)
		return b
	}
	var leaves [][ReportDataSize]byte
	for _, l := range []string{
		"a362767d9cc2c25d18b6f06e9fe37f6c94bd45d896482b2bab124693d844be5d61d74bca4131b99760dbf32cfde27c73265eb82d691e0460832a07522cb3d7ee",
		"5f8608d8b1f1136a65c0bd0f988518e4d112ddf80f9774835234f09031ef5fdc08f427a76cc116d2a8d9e1c937c03537ee1032de11ee12df818c1d7246ae4274",
		"f67da39b5643dc7f3bcf848e7d04b25c5289e7dc7f4b9b3ab5a43b3ca87fa12ac84ddf338795f97018c50fa0c45e63f539c89b8af066ec9f6af7050025258c04",
	} {
		leaves = append(leaves, [ReportDataSize]byte(unhex(l)))
	}
	tree := newMerkleTree(leaves)
	root := tree.root()
	require.Equal(t, "54635a47f5835f1503bf28e951afc22f524a8448d588ab871e83235cc900a11c", hex.EncodeToString(root[:]))
	rd := BatchReportData(3, root)
	require.Equal(t, "e1ae31a6b9aee85d088adce231fe8ce3b7d5c942f0bdea1c1d8c570a1b18c251"+
		"a671b1d2c42d40322a36fa7b670528f4a07abf98c13fa287c2f71d1dfb1f1371", hex.EncodeToString(rd[:]))
	p := &BatchProof{Index: 1, Size: 3, Path: tree.path(1)}
	require.Equal(t, unhex("01"+"00000001"+"00000003"+
		"18593c37943785712abc9f8d42c9d0253bf5f1dc65a372a318346e7c5b837583"+
		"c4600d82dd4b67631532a6abc553a01a7c74cdf3fa152de8cb36d7eccf252602"), p.Marshal())
	ev := &Evidence{Type: "t", Records: map[string]Record{BatchRecordLabel: {MediaType: BatchMediaType, Value: p.Marshal()}}}
	j, err := ev.MarshalJSON()
	require.NoError(t, err)
	require.Contains(t, string(j), `"batch-proof":["application/vnd.atls.batch-proof","AQAAAAEAAAADGFk8N5Q3hXEqvJ-NQsnQJTv18dxlo3KjGDRufFuDdYPEYA2C3UtnYxUypqvFU6AafHTN8_oVLejLNtfszyUmAg"]`)
	got, err := p.Root(leaves[1])
	require.NoError(t, err)
	require.Equal(t, root, got)
}

func TestParseBatchProof(t *testing.T) {
	enc := func(version byte, index, size uint32, k int) []byte {
		b := []byte{version}
		b = binary.BigEndian.AppendUint32(b, index)
		b = binary.BigEndian.AppendUint32(b, size)
		for i := range k {
			b = append(b, bytes.Repeat([]byte{byte(i + 1)}, 32)...)
		}
		return b
	}
	for name, tc := range map[string]struct {
		in    []byte
		check string // "" for accepted
	}{
		"lone leaf":           {enc(1, 0, 1, 0), ""},
		"leaf 2 of 3":         {enc(1, 2, 3, 1), ""},
		"leaf 0 of 3":         {enc(1, 0, 3, 2), ""},
		"max size":            {enc(1, MaxBatchSize-1, MaxBatchSize, 16), ""},
		"empty":               {nil, "batch.proof"},
		"header only 8 bytes": {enc(1, 0, 1, 0)[:8], "batch.proof"},
		"version 0":           {enc(0, 0, 1, 0), "batch.proof"},
		"version 2":           {enc(2, 0, 1, 0), "batch.proof"},
		"partial sibling":     {enc(1, 0, 2, 1)[:40], "batch.proof"},
		"trailing byte":       {append(enc(1, 0, 2, 1), 0), "batch.proof"},
		"size zero":           {enc(1, 0, 0, 0), "batch.size"},
		"size over bound":     {enc(1, 0, MaxBatchSize+1, 17), "batch.size"},
		"size max uint32":     {enc(1, 0, 0xffffffff, 0), "batch.size"},
		"index equals size":   {enc(1, 3, 3, 1), "batch.index"},
		"index above size":    {enc(1, 9, 3, 2), "batch.index"},
		"path too short":      {enc(1, 0, 3, 1), "batch.path"},
		"path too long":       {enc(1, 2, 3, 2), "batch.path"},
		"lone leaf with path": {enc(1, 0, 1, 1), "batch.path"},
		"17 siblings":         {enc(1, 0, MaxBatchSize, 17), "batch.path"},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := ParseBatchProof(tc.in)
			if tc.check == "" {
				require.NoError(t, err)
				require.Equal(t, tc.in, p.Marshal())
				return
			}
			require.Nil(t, p)
			require.ErrorIs(t, err, ErrMalformedEvidence)
			require.Equal(t, tc.check, FailedCheck(err))
		})
	}

	// Root applies the same bounds to a proof built in memory.
	for name, tc := range map[string]struct {
		p     BatchProof
		check string
	}{
		"size zero":   {BatchProof{Index: 0, Size: 0}, "batch.size"},
		"index":       {BatchProof{Index: 1, Size: 1}, "batch.index"},
		"short path":  {BatchProof{Index: 0, Size: 2}, "batch.path"},
		"long path":   {BatchProof{Index: 0, Size: 1, Path: make([][32]byte, 1)}, "batch.path"},
		"over bound":  {BatchProof{Index: 0, Size: MaxBatchSize + 1, Path: make([][32]byte, 17)}, "batch.size"},
		"path of 17 ": {BatchProof{Index: 0, Size: MaxBatchSize, Path: make([][32]byte, 17)}, "batch.path"},
	} {
		_, err := tc.p.Root(testLeaf(0))
		require.ErrorIs(t, err, ErrMalformedEvidence, name)
		require.Equal(t, tc.check, FailedCheck(err), name)
	}
}

// batchFixture is a batch of bindings (distinct nonces and keys) and the
// evidence a batcher would hand each: one shared fake report whose only
// content is its REPORT_DATA, plus the binding's own proof.
type batchFixture struct {
	bindings []Binding
	evs      []*Evidence
	report   [ReportDataSize]byte
}

const (
	fakeReportLabel = "report"
	fakeReportType  = "application/vnd.example.report"
)

func newBatchFixture(t testing.TB, n int, seed byte) *batchFixture {
	f := &batchFixture{}
	var leaves [][ReportDataSize]byte
	for i := range n {
		b := Binding{Role: RoleServer, Mode: ModeBatch, NotBefore: 1700000000, NotAfter: 1700000600}
		b.SPKIHash = sha256.Sum256([]byte{seed, byte(i), 'k'})
		b.Nonce = sha256.Sum256([]byte{seed, byte(i), 'n'})
		leaf, err := b.ReportData()
		require.NoError(t, err)
		f.bindings = append(f.bindings, b)
		leaves = append(leaves, leaf)
	}
	tree := newMerkleTree(leaves)
	f.report = BatchReportData(uint32(n), tree.root())
	for i := range n {
		p := BatchProof{Index: uint32(i), Size: uint32(n), Path: tree.path(i)}
		f.evs = append(f.evs, &Evidence{Type: "t", Records: map[string]Record{
			fakeReportLabel:  {MediaType: fakeReportType, Value: bytes.Clone(f.report[:])},
			BatchRecordLabel: {MediaType: BatchMediaType, Value: p.Marshal()},
		}})
	}
	return f
}

// appraise does what a platform verifier does with the REPORT_DATA: it
// compares all 64 bytes of the report's with the expected ones.
func appraise(ev *Evidence, b Binding) error {
	want, err := ExpectedReportData(ev, b)
	if err != nil {
		return err
	}
	got, err := ev.Record(fakeReportLabel, fakeReportType)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want[:]) {
		return Fail(ErrBinding, "snp.report_data", "REPORT_DATA does not match the binding")
	}
	return nil
}

func TestExpectedReportDataAttacks(t *testing.T) {
	const n = 5
	f := newBatchFixture(t, n, 1)
	other := newBatchFixture(t, 7, 2)

	// The same report in n evidences, each with its own valid proof: each
	// is accepted with its own binding only.
	for i := range n {
		for j := range n {
			err := appraise(f.evs[i], f.bindings[j])
			if i == j {
				require.NoError(t, err, "evidence %d", i)
			} else {
				require.ErrorIs(t, err, ErrBinding, "evidence %d with binding %d", i, j)
				require.Equal(t, "snp.report_data", FailedCheck(err))
			}
		}
	}

	const victim = 2
	proof := func(ev *Evidence) *BatchProof {
		p, err := ParseBatchProof(ev.Records[BatchRecordLabel].Value)
		require.NoError(t, err)
		return p
	}
	withProof := func(v []byte) *Evidence {
		ev := copyEvidence(f.evs[victim])
		ev.Records[BatchRecordLabel] = Record{MediaType: BatchMediaType, Value: v}
		return ev
	}
	edit := func(fn func(p *BatchProof)) *Evidence {
		p := proof(f.evs[victim])
		fn(p)
		return withProof(p.Marshal())
	}
	raw := func(fn func(b []byte) []byte) *Evidence {
		return withProof(fn(bytes.Clone(f.evs[victim].Records[BatchRecordLabel].Value)))
	}
	binding := func(fn func(b *Binding)) Binding {
		b := f.bindings[victim]
		fn(&b)
		return b
	}
	// Bindings of the other batch that are the victim's leaf too: a batch
	// holding the victim's binding, to splice a proof from.
	spliceBatch := newBatchFixture(t, 4, 3)
	spliceBatch.bindings[1] = f.bindings[victim]
	var spliceLeaves [][ReportDataSize]byte
	for _, b := range spliceBatch.bindings {
		l, err := b.ReportData()
		require.NoError(t, err)
		spliceLeaves = append(spliceLeaves, l)
	}
	spliceTree := newMerkleTree(spliceLeaves)
	splicedProof := (&BatchProof{Index: 1, Size: 4, Path: spliceTree.path(1)}).Marshal()

	for name, tc := range map[string]struct {
		ev    *Evidence
		b     Binding
		kind  error
		check string
	}{
		"forged sibling":         {edit(func(p *BatchProof) { p.Path[0][5] ^= 1 }), f.bindings[victim], ErrBinding, "snp.report_data"},
		"forged top sibling":     {edit(func(p *BatchProof) { p.Path[len(p.Path)-1][31] ^= 0x80 }), f.bindings[victim], ErrBinding, "snp.report_data"},
		"another nonce":          {f.evs[victim], binding(func(b *Binding) { b.Nonce[0] ^= 1 }), ErrBinding, "snp.report_data"},
		"another key":            {f.evs[victim], binding(func(b *Binding) { b.SPKIHash[31] ^= 1 }), ErrBinding, "snp.report_data"},
		"another role":           {f.evs[victim], binding(func(b *Binding) { b.Role = RoleClient }), ErrBinding, "snp.report_data"},
		"another validity":       {f.evs[victim], binding(func(b *Binding) { b.NotAfter++ }), ErrBinding, "snp.report_data"},
		"proof of another leaf":  {f.evs[3], f.bindings[victim], ErrBinding, "snp.report_data"},
		"another index":          {edit(func(p *BatchProof) { p.Index = 3 }), f.bindings[victim], ErrBinding, "snp.report_data"},
		"siblings swapped":       {edit(func(p *BatchProof) { p.Path[0], p.Path[1] = p.Path[1], p.Path[0] }), f.bindings[victim], ErrBinding, "snp.report_data"},
		"size of another tree":   {edit(func(p *BatchProof) { p.Size = 6 }), f.bindings[victim], ErrBinding, "snp.report_data"},
		"spliced from a batch":   {withProof(splicedProof), f.bindings[victim], ErrBinding, "snp.report_data"},
		"other batch's evidence": {other.evs[0], f.bindings[victim], ErrBinding, "snp.report_data"},
		"truncated path":         {edit(func(p *BatchProof) { p.Path = p.Path[:len(p.Path)-1] }), f.bindings[victim], ErrMalformedEvidence, "batch.path"},
		"overlong path":          {edit(func(p *BatchProof) { p.Path = append(p.Path, p.Path[0]) }), f.bindings[victim], ErrMalformedEvidence, "batch.path"},
		"empty path":             {edit(func(p *BatchProof) { p.Path = nil }), f.bindings[victim], ErrMalformedEvidence, "batch.path"},
		"size zero":              {edit(func(p *BatchProof) { p.Size = 0 }), f.bindings[victim], ErrMalformedEvidence, "batch.size"},
		"size over bound":        {edit(func(p *BatchProof) { p.Size = MaxBatchSize + 1 }), f.bindings[victim], ErrMalformedEvidence, "batch.size"},
		"index equals size":      {edit(func(p *BatchProof) { p.Index = n }), f.bindings[victim], ErrMalformedEvidence, "batch.index"},
		"index far beyond size":  {edit(func(p *BatchProof) { p.Index = 1 << 31 }), f.bindings[victim], ErrMalformedEvidence, "batch.index"},
		"version 2":              {raw(func(b []byte) []byte { b[0] = 2; return b }), f.bindings[victim], ErrMalformedEvidence, "batch.proof"},
		"half a sibling":         {raw(func(b []byte) []byte { return b[:len(b)-16] }), f.bindings[victim], ErrMalformedEvidence, "batch.proof"},
		"proof header cut":       {raw(func(b []byte) []byte { return b[:5] }), f.bindings[victim], ErrMalformedEvidence, "batch.proof"},
		"wrong media type": {func() *Evidence {
			ev := copyEvidence(f.evs[victim])
			r := ev.Records[BatchRecordLabel]
			r.MediaType = "application/octet-stream"
			ev.Records[BatchRecordLabel] = r
			return ev
		}(), f.bindings[victim], ErrMalformedEvidence, "batch.proof"},
		"proof missing":           {func() *Evidence { ev := copyEvidence(f.evs[victim]); delete(ev.Records, BatchRecordLabel); return ev }(), f.bindings[victim], ErrMalformedEvidence, "batch.proof"},
		"proof in nonce mode":     {f.evs[victim], binding(func(b *Binding) { b.Mode = ModeNonce }), ErrMalformedEvidence, "batch.proof"},
		"proof in static mode":    {f.evs[victim], binding(func(b *Binding) { b.Mode = ModeStatic; b.Nonce = [NonceSize]byte{} }), ErrMalformedEvidence, "batch.proof"},
		"batch mode without once": {f.evs[victim], binding(func(b *Binding) { b.Nonce = [NonceSize]byte{} }), ErrBinding, "binding"},
		"nil evidence":            {nil, f.bindings[victim], ErrMalformedEvidence, "evidence.collection"},
	} {
		t.Run(name, func(t *testing.T) {
			err := appraise(tc.ev, tc.b)
			require.ErrorIs(t, err, tc.kind)
			require.Equal(t, tc.check, FailedCheck(err))
		})
	}

	// A nonce-mode evidence without a proof verifies as before.
	nb := f.bindings[0]
	nb.Mode = ModeNonce
	leaf, err := nb.ReportData()
	require.NoError(t, err)
	ev := &Evidence{Type: "t", Records: map[string]Record{fakeReportLabel: {MediaType: fakeReportType, Value: leaf[:]}}}
	got, err := ExpectedReportData(ev, nb)
	require.NoError(t, err)
	require.Equal(t, leaf, got)
	require.NoError(t, appraise(ev, nb))
}

func TestBatchDuplicateLeaves(t *testing.T) {
	// A tree may hold one leaf twice (a verifier cannot tell): each
	// position's proof leads to the root.
	l := testLeaf(1)
	leaves := [][ReportDataSize]byte{testLeaf(0), l, testLeaf(2), l}
	tree := newMerkleTree(leaves)
	for _, i := range []int{1, 3} {
		got, err := (&BatchProof{Index: uint32(i), Size: 4, Path: tree.path(i)}).Root(l)
		require.NoError(t, err)
		require.Equal(t, tree.root(), got)
	}
	// The Batcher gives identical leaves of one batch one index.
	fa := newFakeAttester()
	fa.gated = true
	b, err := NewBatcher(fa, BatcherOptions{})
	require.NoError(t, err)
	first := goAttest(b, t.Context(), testLeaf(100))
	<-fa.entered
	res := []chan attestResult{goAttest(b, t.Context(), l), goAttest(b, t.Context(), testLeaf(7)), goAttest(b, t.Context(), l)}
	waitQueued(t, b, 3)
	fa.release(2)
	require.NoError(t, (<-first).err)
	var got []*BatchProof
	for _, c := range res {
		r := <-c
		require.NoError(t, r.err)
		p, err := ParseBatchProof(r.ev.Records[BatchRecordLabel].Value)
		require.NoError(t, err)
		got = append(got, p)
	}
	require.Equal(t, uint32(2), got[0].Size)
	require.Equal(t, got[0].Marshal(), got[2].Marshal())
	require.NotEqual(t, got[0].Index, got[1].Index)
	require.Equal(t, uint64(2), b.Reports())
}

// fakeAttester returns evidence whose only record is the REPORT_DATA it
// was asked for. When gated, each call waits for a release.
type fakeAttester struct {
	gated   bool
	gate    chan struct{}
	entered chan struct{}
	delay   time.Duration
	errFor  func(call int) error

	calls       atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	mu          sync.Mutex
	ctxErrs     []error
	values      []any
	got         [][ReportDataSize]byte
}

func newFakeAttester() *fakeAttester {
	return &fakeAttester{gate: make(chan struct{}, 1024), entered: make(chan struct{}, 1<<16)}
}

func (f *fakeAttester) release(n int) {
	for range n {
		f.gate <- struct{}{}
	}
}

type ctxKey struct{}

func (f *fakeAttester) Attest(ctx context.Context, rd [ReportDataSize]byte) (*Evidence, error) {
	call := int(f.calls.Add(1))
	cur := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		m := f.maxInFlight.Load()
		if cur <= m || f.maxInFlight.CompareAndSwap(m, cur) {
			break
		}
	}
	select {
	case f.entered <- struct{}{}:
	default:
	}
	if f.gated {
		<-f.gate
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	f.mu.Lock()
	f.ctxErrs = append(f.ctxErrs, ctx.Err())
	f.values = append(f.values, ctx.Value(ctxKey{}))
	f.got = append(f.got, rd)
	f.mu.Unlock()
	if f.errFor != nil {
		if err := f.errFor(call); err != nil {
			return nil, err
		}
	}
	return &Evidence{Type: "t", Records: map[string]Record{
		fakeReportLabel: {MediaType: fakeReportType, Value: bytes.Clone(rd[:])},
	}}, nil
}

type attestResult struct {
	ev  *Evidence
	err error
}

func goAttest(b *Batcher, ctx context.Context, leaf [ReportDataSize]byte) chan attestResult {
	c := make(chan attestResult, 1)
	go func() {
		ev, err := b.Attest(ctx, leaf)
		c <- attestResult{ev, err}
	}()
	return c
}

// waitQueued waits until n requests are queued behind the report in flight.
func waitQueued(t testing.TB, b *Batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b.mu.Lock()
		q := len(b.queue)
		b.mu.Unlock()
		if q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkNoLeak fails t when goroutines started during the test outlive it.
func checkNoLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(20 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// requireValid checks that ev is the batcher's evidence for leaf: its
// proof leads from leaf to the REPORT_DATA the fake report carries.
func requireValid(t testing.TB, ev *Evidence, leaf [ReportDataSize]byte) *BatchProof {
	t.Helper()
	p, err := ParseBatchProof(ev.Records[BatchRecordLabel].Value)
	require.NoError(t, err)
	require.Equal(t, BatchMediaType, ev.Records[BatchRecordLabel].MediaType)
	root, err := p.Root(leaf)
	require.NoError(t, err)
	rd := BatchReportData(p.Size, root)
	require.Equal(t, rd[:], ev.Records[fakeReportLabel].Value)
	return p
}

func TestBatcherSharesReports(t *testing.T) {
	checkNoLeak(t)
	fa := newFakeAttester()
	fa.gated = true
	b, err := NewBatcher(fa, BatcherOptions{})
	require.NoError(t, err)

	const n = 40
	leaves := make([][ReportDataSize]byte, n)
	res := make([]chan attestResult, n)
	for i := range n {
		leaves[i] = testLeaf(i)
	}
	res[0] = goAttest(b, t.Context(), leaves[0])
	<-fa.entered // the first report is in flight
	for i := 1; i < n; i++ {
		res[i] = goAttest(b, t.Context(), leaves[i])
	}
	waitQueued(t, b, n-1)
	fa.release(2)

	var evs []*Evidence
	for i := range n {
		r := <-res[i]
		require.NoError(t, r.err)
		p := requireValid(t, r.ev, leaves[i])
		if i == 0 {
			require.Equal(t, uint32(1), p.Size)
		} else {
			require.Equal(t, uint32(n-1), p.Size)
		}
		evs = append(evs, r.ev)
	}
	require.Equal(t, uint64(2), b.Reports())
	require.Equal(t, int64(2), fa.calls.Load())
	require.Equal(t, int64(1), fa.maxInFlight.Load(), "one report in flight at a time")

	// Each requester holds its own copy: changing one changes no other.
	shared := bytes.Clone(evs[2].Records[fakeReportLabel].Value)
	evs[1].Records[fakeReportLabel].Value[0] ^= 0xff
	evs[1].Records["x"] = Record{MediaType: "a/b", Value: []byte{1}}
	require.Equal(t, shared, evs[2].Records[fakeReportLabel].Value)
	require.NotContains(t, evs[2].Records, "x")
}

func TestBatcherLoneRequest(t *testing.T) {
	checkNoLeak(t)
	fa := newFakeAttester()
	b, err := NewBatcher(fa, BatcherOptions{})
	require.NoError(t, err)
	leaf := testLeaf(1)
	start := time.Now()
	ev, err := b.Attest(t.Context(), leaf)
	require.NoError(t, err)
	p := requireValid(t, ev, leaf)
	require.Equal(t, uint32(1), p.Size)
	require.Empty(t, p.Path)
	require.Equal(t, uint64(1), b.Reports())
	// A batch of one is the leaf hash alone.
	require.Equal(t, BatchReportData(1, leafHash(leaf[:])), [ReportDataSize]byte(ev.Records[fakeReportLabel].Value))
	require.Less(t, time.Since(start), 10*time.Second)

	// A full batch does not wait for MaxWait.
	b, err = NewBatcher(fa, BatcherOptions{MaxSize: 3, MaxWait: time.Hour})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			ev, err := b.Attest(t.Context(), testLeaf(i))
			if err == nil {
				requireValid(t, ev, testLeaf(i))
			}
			require.NoError(t, err)
		})
	}
	wg.Wait()
	require.Equal(t, uint64(1), b.Reports())
}

func TestBatcherMaxWaitGathers(t *testing.T) {
	checkNoLeak(t)
	fa := newFakeAttester()
	// MaxWait is long: the batch goes out when the 5th request fills it.
	b, err := NewBatcher(fa, BatcherOptions{MaxSize: 5, MaxWait: time.Hour})
	require.NoError(t, err)
	res := make([]chan attestResult, 5)
	for i := range 4 {
		res[i] = goAttest(b, t.Context(), testLeaf(i))
	}
	waitQueued(t, b, 4)
	require.Equal(t, int64(0), fa.calls.Load(), "the dispatcher gathers while under MaxSize")
	res[4] = goAttest(b, t.Context(), testLeaf(4))
	for i := range 5 {
		r := <-res[i]
		require.NoError(t, r.err)
		require.Equal(t, uint32(5), requireValid(t, r.ev, testLeaf(i)).Size)
	}
	require.Equal(t, uint64(1), b.Reports())

	// A short MaxWait sends what it has.
	b, err = NewBatcher(fa, BatcherOptions{MaxWait: 20 * time.Millisecond})
	require.NoError(t, err)
	ev, err := b.Attest(t.Context(), testLeaf(9))
	require.NoError(t, err)
	requireValid(t, ev, testLeaf(9))
}

func TestBatcherMaxSizeSplits(t *testing.T) {
	checkNoLeak(t)
	fa := newFakeAttester()
	fa.gated = true
	b, err := NewBatcher(fa, BatcherOptions{MaxSize: 4})
	require.NoError(t, err)
	first := goAttest(b, t.Context(), testLeaf(0))
	<-fa.entered
	const n = 10
	res := make([]chan attestResult, n)
	for i := range n {
		res[i] = goAttest(b, t.Context(), testLeaf(i+1))
	}
	waitQueued(t, b, n)
	fa.release(4)
	require.NoError(t, (<-first).err)
	sizes := map[uint32]int{}
	for i := range n {
		r := <-res[i]
		require.NoError(t, r.err)
		sizes[requireValid(t, r.ev, testLeaf(i+1)).Size]++
	}
	require.Equal(t, map[uint32]int{4: 8, 2: 2}, sizes)
	require.Equal(t, uint64(4), b.Reports())
	require.Equal(t, int64(1), fa.maxInFlight.Load())
}

func TestBatcherMaxPending(t *testing.T) {
	checkNoLeak(t)
	fa := newFakeAttester()
	fa.gated = true
	b, err := NewBatcher(fa, BatcherOptions{MaxSize: 2, MaxPending: 3})
	require.NoError(t, err)
	res := []chan attestResult{goAttest(b, t.Context(), testLeaf(0))}
	<-fa.entered
	res = append(res, goAttest(b, t.Context(), testLeaf(1)), goAttest(b, t.Context(), testLeaf(2)))
	waitQueued(t, b, 2)
	start := time.Now()
	_, err = b.Attest(t.Context(), testLeaf(3))
	require.ErrorIs(t, err, ErrBusy)
	require.Equal(t, "batch.busy", FailedCheck(err))
	require.Less(t, time.Since(start), 10*time.Second)
	fa.release(2)
	for i, c := range res {
		r := <-c
		require.NoError(t, r.err)
		requireValid(t, r.ev, testLeaf(i))
	}
	// Slots are free again.
	fa.release(1)
	ev, err := b.Attest(t.Context(), testLeaf(3))
	require.NoError(t, err)
	requireValid(t, ev, testLeaf(3))
	require.Equal(t, uint64(3), b.Reports())
}

func TestBatcherCancellation(t *testing.T) {
	checkNoLeak(t)
	t.Run("queued request dropped", func(t *testing.T) {
		fa := newFakeAttester()
		fa.gated = true
		b, err := NewBatcher(fa, BatcherOptions{})
		require.NoError(t, err)
		first := goAttest(b, t.Context(), testLeaf(0))
		<-fa.entered
		ctx, cancel := context.WithCancel(t.Context())
		gone := goAttest(b, ctx, testLeaf(1))
		stay := goAttest(b, t.Context(), testLeaf(2))
		waitQueued(t, b, 2)
		cancel()
		r := <-gone
		require.ErrorIs(t, r.err, context.Canceled)
		require.Nil(t, r.ev)
		waitQueued(t, b, 1)
		fa.release(2)
		require.NoError(t, (<-first).err)
		r = <-stay
		require.NoError(t, r.err)
		require.Equal(t, uint32(1), requireValid(t, r.ev, testLeaf(2)).Size, "the cancelled leaf is not in the batch")
		require.Equal(t, uint64(2), b.Reports())
	})
	t.Run("lone request spends no report", func(t *testing.T) {
		fa := newFakeAttester()
		fa.gated = true
		b, err := NewBatcher(fa, BatcherOptions{})
		require.NoError(t, err)
		first := goAttest(b, t.Context(), testLeaf(0))
		<-fa.entered
		ctx, cancel := context.WithCancel(t.Context())
		gone := goAttest(b, ctx, testLeaf(1))
		waitQueued(t, b, 1)
		cancel()
		require.ErrorIs(t, (<-gone).err, context.Canceled)
		fa.release(1)
		require.NoError(t, (<-first).err)
		waitIdle(t, b)
		require.Equal(t, uint64(1), b.Reports())

		// Gathering under a long MaxWait ends when the queue empties.
		b, err = NewBatcher(fa, BatcherOptions{MaxWait: time.Hour})
		require.NoError(t, err)
		ctx, cancel = context.WithCancel(t.Context())
		gone = goAttest(b, ctx, testLeaf(3))
		waitQueued(t, b, 1)
		cancel()
		require.ErrorIs(t, (<-gone).err, context.Canceled)
		waitIdle(t, b)
		require.Equal(t, uint64(0), b.Reports())
	})
	t.Run("done context refused at once", func(t *testing.T) {
		fa := newFakeAttester()
		b, err := NewBatcher(fa, BatcherOptions{})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err = b.Attest(ctx, testLeaf(0))
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, uint64(0), b.Reports())
	})
	t.Run("dispatched report outlives its leader", func(t *testing.T) {
		fa := newFakeAttester()
		fa.gated = true
		b, err := NewBatcher(fa, BatcherOptions{})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.WithValue(t.Context(), ctxKey{}, "leader"))
		leader := goAttest(b, ctx, testLeaf(0))
		<-fa.entered
		cancel()
		require.ErrorIs(t, (<-leader).err, context.Canceled)
		// Another request waits for the next report meanwhile, and gets it.
		follower := goAttest(b, t.Context(), testLeaf(1))
		waitQueued(t, b, 1)
		fa.release(2)
		r := <-follower
		require.NoError(t, r.err)
		requireValid(t, r.ev, testLeaf(1))
		fa.mu.Lock()
		defer fa.mu.Unlock()
		require.Equal(t, []error{nil, nil}, fa.ctxErrs, "the wrapped attester's context is not cancelled by a requester")
		require.Equal(t, "leader", fa.values[0], "context values reach the wrapped attester")
	})
	t.Run("attest timeout", func(t *testing.T) {
		var seen atomic.Bool
		a := attesterFunc(func(ctx context.Context, rd [ReportDataSize]byte) (*Evidence, error) {
			<-ctx.Done()
			seen.Store(true)
			return nil, Wrap(ErrBusy, "snp.device", ctx.Err())
		})
		b, err := NewBatcher(a, BatcherOptions{AttestTimeout: 10 * time.Millisecond})
		require.NoError(t, err)
		_, err = b.Attest(t.Context(), testLeaf(0))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, err, ErrBusy)
		require.True(t, seen.Load())
	})
}

type attesterFunc func(context.Context, [ReportDataSize]byte) (*Evidence, error)

func (f attesterFunc) Attest(ctx context.Context, rd [ReportDataSize]byte) (*Evidence, error) {
	return f(ctx, rd)
}

// waitIdle waits until the batcher's dispatcher has exited.
func waitIdle(t testing.TB, b *Batcher) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b.mu.Lock()
		running := b.running
		b.mu.Unlock()
		if !running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("dispatcher still running")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatcherAttesterErrors(t *testing.T) {
	checkNoLeak(t)
	fa := newFakeAttester()
	fa.gated = true
	device := Fail(ErrUnsupported, "snp.device", "no device")
	fa.errFor = func(call int) error {
		if call == 2 {
			return device
		}
		return nil
	}
	b, err := NewBatcher(fa, BatcherOptions{})
	require.NoError(t, err)
	first := goAttest(b, t.Context(), testLeaf(0))
	<-fa.entered
	var res []chan attestResult
	for i := range 5 {
		res = append(res, goAttest(b, t.Context(), testLeaf(i+1)))
	}
	waitQueued(t, b, 5)
	fa.release(2)
	require.NoError(t, (<-first).err)
	for _, c := range res {
		r := <-c
		require.Nil(t, r.ev)
		require.ErrorIs(t, r.err, ErrUnsupported)
		require.ErrorIs(t, r.err, device)
		require.Equal(t, "snp.device", FailedCheck(r.err))
	}
	// The batcher recovers: the next batch gets a report.
	fa.release(1)
	ev, err := b.Attest(t.Context(), testLeaf(9))
	require.NoError(t, err)
	requireValid(t, ev, testLeaf(9))

	// Evidence a batcher cannot extend is refused.
	for name, a := range map[string]attesterFunc{
		"nil evidence": func(context.Context, [ReportDataSize]byte) (*Evidence, error) { return nil, nil },
		"has a proof": func(context.Context, [ReportDataSize]byte) (*Evidence, error) {
			return &Evidence{Type: "t", Records: map[string]Record{BatchRecordLabel: {MediaType: BatchMediaType, Value: []byte{1}}}}, nil
		},
	} {
		b, err := NewBatcher(a, BatcherOptions{})
		require.NoError(t, err)
		_, err = b.Attest(t.Context(), testLeaf(0))
		require.ErrorIs(t, err, ErrMalformedEvidence, name)
		require.Equal(t, "batch.attest", FailedCheck(err), name)
	}
}

func TestBatcherStress(t *testing.T) {
	checkNoLeak(t)
	fa := newFakeAttester()
	fa.delay = time.Millisecond
	b, err := NewBatcher(fa, BatcherOptions{MaxSize: 16, MaxPending: 1 << 12})
	require.NoError(t, err)
	const workers, each = 32, 20
	var wg sync.WaitGroup
	var ok, cancelled atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				ctx := t.Context()
				var cancel context.CancelFunc = func() {}
				if (w+i)%5 == 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(i%3)*time.Millisecond)
				}
				leaf := testLeaf(w*1000 + i%7) // some duplicates within a worker's batches
				ev, err := b.Attest(ctx, leaf)
				cancel()
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("worker %d: %v", w, err)
					}
					cancelled.Add(1)
					continue
				}
				requireValid(t, ev, leaf)
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	require.Equal(t, int64(workers*each), ok.Load()+cancelled.Load())
	require.Equal(t, int64(1), fa.maxInFlight.Load())
	require.Less(t, b.Reports(), uint64(ok.Load()), "reports are shared")
	waitIdle(t, b)
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Zero(t, b.admitted)
	require.Empty(t, b.queue)
	t.Logf("%d requests (%d cancelled), %d reports", ok.Load()+cancelled.Load(), cancelled.Load(), b.Reports())
}

func TestNewBatcherConfig(t *testing.T) {
	fa := newFakeAttester()
	for name, tc := range map[string]struct {
		a    Attester
		opts BatcherOptions
	}{
		"nil attester":     {nil, BatcherOptions{}},
		"negative size":    {fa, BatcherOptions{MaxSize: -1}},
		"size over bound":  {fa, BatcherOptions{MaxSize: MaxBatchSize + 1}},
		"negative wait":    {fa, BatcherOptions{MaxWait: -time.Second}},
		"negative pending": {fa, BatcherOptions{MaxPending: -1}},
		"negative timeout": {fa, BatcherOptions{AttestTimeout: -1}},
	} {
		b, err := NewBatcher(tc.a, tc.opts)
		require.Nil(t, b, name)
		require.ErrorIs(t, err, ErrConfig, name)
		require.Equal(t, "batch.config", FailedCheck(err), name)
	}
	b, err := NewBatcher(fa, BatcherOptions{})
	require.NoError(t, err)
	require.Equal(t, DefaultMaxBatchSize, b.maxSize)
	require.Equal(t, 4*DefaultMaxBatchSize, b.maxPending)
	b, err = NewBatcher(fa, BatcherOptions{MaxSize: MaxBatchSize})
	require.NoError(t, err)
	require.Equal(t, 4*MaxBatchSize, b.maxPending)
}

func FuzzParseBatchProof(f *testing.F) {
	fx := newBatchFixture(f, 5, 1)
	for _, ev := range fx.evs {
		f.Add(ev.Records[BatchRecordLabel].Value)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 1, 0, 0})
	f.Add(bytes.Repeat([]byte{0xff}, 9+32*17))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := ParseBatchProof(in)
		if err != nil {
			require.Nil(t, p)
			require.ErrorIs(t, err, ErrMalformedEvidence)
			switch c := FailedCheck(err); c {
			case "batch.proof", "batch.size", "batch.index", "batch.path":
			default:
				t.Fatalf("rejection names check %q", c)
			}
			return
		}
		require.Equal(t, in, p.Marshal())
		require.LessOrEqual(t, len(p.Path), 16)
		// An accepted proof yields a root for any leaf.
		_, err = p.Root(testLeaf(0))
		require.NoError(t, err)
	})
}

// serialAttester passes one call at a time to a, like the guest driver
// in front of a secure processor.
type serialAttester struct {
	mu sync.Mutex
	a  Attester
}

func (s *serialAttester) Attest(ctx context.Context, rd [ReportDataSize]byte) (*Evidence, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.a.Attest(ctx, rd)
}

// BenchmarkBatcher: 64 concurrent callers over a serial attester taking
// 8 ms per report, like a real secure processor; "unbatched" calls it
// directly, one report per request.
func BenchmarkBatcher(b *testing.B) {
	fa := newFakeAttester()
	fa.delay = 8 * time.Millisecond
	dev := &serialAttester{a: fa}
	bt, err := NewBatcher(dev, BatcherOptions{})
	require.NoError(b, err)
	b.Run("batched", func(b *testing.B) { benchCallers(b, bt, bt.Reports) })
	var direct atomic.Uint64
	unbatched := attesterFunc(func(ctx context.Context, rd [ReportDataSize]byte) (*Evidence, error) {
		direct.Add(1)
		return dev.Attest(ctx, rd)
	})
	b.Run("unbatched", func(b *testing.B) { benchCallers(b, unbatched, direct.Load) })
}

func benchCallers(b *testing.B, a Attester, reports func() uint64) {
	const callers = 64
	before := reports()
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if _, err := a.Attest(context.Background(), testLeaf(int(i)*callers+c)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(reports()-before)/float64(b.N), "reports/op")
}

// MinInterval spaces reports; requests that arrive meanwhile join the
// next batch instead of each finding the attester free.
func TestBatcherMinInterval(t *testing.T) {
	checkNoLeak(t)
	fa := newFakeAttester()
	const interval = 300 * time.Millisecond
	b, err := NewBatcher(fa, BatcherOptions{MinInterval: interval})
	require.NoError(t, err)
	start := time.Now()
	ev, err := b.Attest(t.Context(), testLeaf(0))
	require.NoError(t, err)
	require.Equal(t, uint32(1), requireValid(t, ev, testLeaf(0)).Size, "the first report is not delayed")

	const n = 5
	res := make([]chan attestResult, n)
	for i := range n {
		res[i] = goAttest(b, t.Context(), testLeaf(i+1))
	}
	for i := range n {
		r := <-res[i]
		require.NoError(t, r.err)
		require.Equal(t, uint32(n), requireValid(t, r.ev, testLeaf(i+1)).Size, "all five share the next report")
	}
	require.GreaterOrEqual(t, time.Since(start), interval)
	require.Equal(t, uint64(2), b.Reports())

	_, err = NewBatcher(fa, BatcherOptions{MinInterval: -time.Second})
	require.ErrorIs(t, err, ErrConfig)
}
