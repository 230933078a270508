package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Batched evidence (mode [ModeBatch]): one report commits to the root of an
// RFC 9162 (Certificate Transparency v2, section 2.1.1) Merkle tree over the
// REPORT_DATA bindings of several certificates; each certificate's evidence
// carries the shared report plus a batch-proof record, the inclusion proof of
// its own binding.
const (
	// BatchRecordLabel and BatchMediaType name the record that carries the
	// inclusion proof in batched evidence.
	BatchRecordLabel = "batch-proof"
	BatchMediaType   = "application/vnd.atls.batch-proof"
	// BatchLabel is the domain-separation prefix of the batch REPORT_DATA.
	BatchLabel = "ATLS-SNP-V1-BATCH"
	// MaxBatchSize is the verifier's bound on the tree size of a proof.
	MaxBatchSize = 1 << 16
	// DefaultMaxBatchSize is the number of leaves per report a Batcher
	// uses when BatcherOptions.MaxSize is zero.
	DefaultMaxBatchSize = 1024
)

const (
	// batchProofVersion is the only proof record version understood.
	batchProofVersion = 1
	// batchProofHeader is the size of version, index and size.
	batchProofHeader = 9
	// maxBatchPath is the longest path a proof within MaxBatchSize needs.
	maxBatchPath = 16
	// Hash prefixes of RFC 9162 section 2.1.1.
	leafPrefix = 0x00
	nodePrefix = 0x01
)

// BatchProof is the inclusion proof of one leaf in a batch: RFC 9162
// section 2.1.3.1 PATH(Index, D[Size]), siblings from the leaf level up.
type BatchProof struct {
	Index, Size uint32
	Path        [][sha256.Size]byte
}

// ParseBatchProof decodes a batch-proof record value strictly:
//
//	version (1 byte, 0x01) || leaf index (4 bytes BE) || tree size (4 bytes BE)
//	|| k siblings of 32 bytes each, leaf level first
//
// It fails with ErrMalformedEvidence and check "batch.proof" (bad version or
// length), "batch.size" (size 0 or above MaxBatchSize), "batch.index"
// (index >= size) or "batch.path" (k differs from the path length of index
// in a tree of that size).
func ParseBatchProof(b []byte) (*BatchProof, error) {
	if len(b) < batchProofHeader || (len(b)-batchProofHeader)%sha256.Size != 0 {
		return nil, Fail(ErrMalformedEvidence, "batch.proof", "proof of %d bytes, want 9 + 32k", len(b))
	}
	if b[0] != batchProofVersion {
		return nil, Fail(ErrMalformedEvidence, "batch.proof", "unknown proof version %d", b[0])
	}
	p := &BatchProof{
		Index: binary.BigEndian.Uint32(b[1:5]),
		Size:  binary.BigEndian.Uint32(b[5:9]),
	}
	k := (len(b) - batchProofHeader) / sha256.Size
	if err := p.check(k); err != nil {
		return nil, err
	}
	p.Path = make([][sha256.Size]byte, k)
	for i := range p.Path {
		copy(p.Path[i][:], b[batchProofHeader+i*sha256.Size:])
	}
	return p, nil
}

// check applies the verifier's bounds to a proof with k siblings.
func (p *BatchProof) check(k int) error {
	if p.Size == 0 || p.Size > MaxBatchSize {
		return Fail(ErrMalformedEvidence, "batch.size", "tree size %d, want 1..%d", p.Size, MaxBatchSize)
	}
	if p.Index >= p.Size {
		return Fail(ErrMalformedEvidence, "batch.index", "leaf index %d in a tree of size %d", p.Index, p.Size)
	}
	if want := pathLen(p.Index, p.Size); k > maxBatchPath || k != want {
		return Fail(ErrMalformedEvidence, "batch.path", "path of %d siblings, leaf %d of %d needs %d", k, p.Index, p.Size, want)
	}
	return nil
}

// pathLen is the number of siblings the RFC 9162 section 2.1.3.2
// algorithm consumes for leaf index of a tree of size (index < size).
func pathLen(index, size uint32) int {
	fn, sn := index, size-1
	n := 0
	for sn != 0 {
		if fn&1 == 1 || fn == sn {
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		}
		fn >>= 1
		sn >>= 1
		n++
	}
	return n
}

// Marshal encodes p as a batch-proof record value.
func (p *BatchProof) Marshal() []byte {
	b := make([]byte, batchProofHeader, batchProofHeader+len(p.Path)*sha256.Size)
	b[0] = batchProofVersion
	binary.BigEndian.PutUint32(b[1:5], p.Index)
	binary.BigEndian.PutUint32(b[5:9], p.Size)
	for i := range p.Path {
		b = append(b, p.Path[i][:]...)
	}
	return b
}

// Root returns the tree root that p proves for leaf, by the algorithm of
// RFC 9162 section 2.1.3.2 over the leaf hash SHA-256(0x00 || leaf). A
// proof outside the bounds of ParseBatchProof fails with its check.
func (p *BatchProof) Root(leaf [ReportDataSize]byte) ([sha256.Size]byte, error) {
	if err := p.check(len(p.Path)); err != nil {
		return [sha256.Size]byte{}, err
	}
	r := leafHash(leaf[:])
	fn, sn := p.Index, p.Size-1
	for _, s := range p.Path {
		if sn == 0 {
			// Unreachable after check; kept so that the loop fails closed.
			return [sha256.Size]byte{}, Fail(ErrMalformedEvidence, "batch.path", "path longer than the tree")
		}
		if fn&1 == 1 || fn == sn {
			r = nodeHash(s, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = nodeHash(r, s)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return [sha256.Size]byte{}, Fail(ErrMalformedEvidence, "batch.path", "path shorter than the tree")
	}
	return r, nil
}

// BatchReportData is the REPORT_DATA of a batch report:
//
//	SHA-512( "ATLS-SNP-V1-BATCH" || size (8 bytes BE) || root )
func BatchReportData(size uint32, root [sha256.Size]byte) [ReportDataSize]byte {
	buf := make([]byte, 0, len(BatchLabel)+8+sha256.Size)
	buf = append(buf, BatchLabel...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(size))
	buf = append(buf, root[:]...)
	return sha512.Sum512(buf)
}

// ExpectedReportData returns the REPORT_DATA that ev's report must carry for
// binding b: b.ReportData() in static and nonce mode; in batch mode the
// batch REPORT_DATA of the root that ev's proof record gives for the leaf
// b.ReportData(). Missing, unexpected or malformed proofs fail with
// ErrMalformedEvidence and a batch.* check; an invalid binding with
// ErrBinding ("binding").
func ExpectedReportData(ev *Evidence, b Binding) ([ReportDataSize]byte, error) {
	var none [ReportDataSize]byte
	leaf, err := b.ReportData()
	if err != nil {
		return none, Wrap(ErrBinding, "binding", err)
	}
	if ev == nil {
		return none, Fail(ErrMalformedEvidence, "evidence.collection", "nil evidence")
	}
	rec, ok := ev.Records[BatchRecordLabel]
	if b.Mode != ModeBatch {
		if ok {
			return none, Fail(ErrMalformedEvidence, "batch.proof", "%s-mode evidence carries a %q record", b.Mode, BatchRecordLabel)
		}
		return leaf, nil
	}
	if !ok {
		return none, Fail(ErrMalformedEvidence, "batch.proof", "batch-mode evidence has no %q record", BatchRecordLabel)
	}
	return proofReportData(rec, leaf)
}

// proofReportData returns the batch REPORT_DATA that the batch-proof
// record rec gives for leaf.
func proofReportData(rec Record, leaf [ReportDataSize]byte) ([ReportDataSize]byte, error) {
	var none [ReportDataSize]byte
	if rec.MediaType != BatchMediaType {
		return none, Fail(ErrMalformedEvidence, "batch.proof", "record %q has media type %q, want %q", BatchRecordLabel, rec.MediaType, BatchMediaType)
	}
	p, err := ParseBatchProof(rec.Value)
	if err != nil {
		return none, err
	}
	root, err := p.Root(leaf)
	if err != nil {
		return none, err
	}
	return BatchReportData(p.Size, root), nil
}

func leafHash(leaf []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte{leafPrefix})
	h.Write(leaf)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func nodeHash(left, right [sha256.Size]byte) [sha256.Size]byte {
	var buf [1 + 2*sha256.Size]byte
	buf[0] = nodePrefix
	copy(buf[1:], left[:])
	copy(buf[1+sha256.Size:], right[:])
	return sha256.Sum256(buf[:])
}

// merkleTree holds every level of the RFC 9162 tree over its leaves. The
// tree of section 2.1.1 (split at the largest power of two below n) is the
// one built bottom-up by hashing nodes in pairs, left to right, and carrying
// an unpaired last node up unchanged: levels[0] are the leaf hashes and the
// last level is the root alone.
type merkleTree struct {
	levels [][][sha256.Size]byte
}

// newMerkleTree builds the tree over leaves (at least one).
func newMerkleTree(leaves [][ReportDataSize]byte) *merkleTree {
	level := make([][sha256.Size]byte, len(leaves))
	for i := range leaves {
		level[i] = leafHash(leaves[i][:])
	}
	t := &merkleTree{levels: [][][sha256.Size]byte{level}}
	for len(level) > 1 {
		next := make([][sha256.Size]byte, (len(level)+1)/2)
		for i := range next {
			if 2*i+1 < len(level) {
				next[i] = nodeHash(level[2*i], level[2*i+1])
			} else {
				next[i] = level[2*i]
			}
		}
		t.levels = append(t.levels, next)
		level = next
	}
	return t
}

func (t *merkleTree) size() int { return len(t.levels[0]) }

func (t *merkleTree) root() [sha256.Size]byte { return t.levels[len(t.levels)-1][0] }

// path is RFC 9162 section 2.1.3.1 PATH(m, D[n]), leaf level first: at each
// level the sibling of the node on m's way up, where it has one.
func (t *merkleTree) path(m int) [][sha256.Size]byte {
	var out [][sha256.Size]byte
	for _, level := range t.levels[:len(t.levels)-1] {
		if s := m ^ 1; s < len(level) {
			out = append(out, level[s])
		}
		m >>= 1
	}
	return out
}

// BatcherOptions configure a Batcher. The zero value is usable.
type BatcherOptions struct {
	// MaxSize is the number of leaves per report at most; 0 means
	// DefaultMaxBatchSize. It may not exceed MaxBatchSize.
	MaxSize int
	// MaxWait is the extra time to gather a batch once the attester is
	// free. 0 means none: a lone request is a batch of one, with no added
	// wait.
	MaxWait time.Duration
	// MaxPending bounds the requests waiting for a report (queued or in
	// the batch in flight); 0 means 4*MaxSize. Beyond it Attest fails at
	// once with ErrBusy, check "batch.busy".
	MaxPending int
	// AttestTimeout bounds one call of the wrapped attester, which runs
	// detached from the cancellation of any single requester. 0 means no
	// bound beyond the wrapped attester's own.
	AttestTimeout time.Duration
	// MinInterval is the least time between the starts of two reports;
	// requests that arrive meanwhile join the next batch. Set it to the
	// host's sustained report period where the host throttles reports
	// (for example one second on a host that allows one report per
	// second): a batch then waits for the throttle while it can still
	// grow, instead of waiting for it inside the device with its leaves
	// sealed, which would make a request that arrives just after it wait
	// for two throttle periods. 0 means none.
	MinInterval time.Duration
}

// Batcher is an Attester: Attest(ctx, leaf) returns evidence whose report
// commits to the root of the batch the leaf joined, plus that leaf's
// batch-proof record. One report is in flight at a time; requests that
// arrive meanwhile form the next batch. Identical leaves of one batch share
// one index. The leaf is normally the REPORT_DATA of a ModeBatch binding.
//
// A Batcher is safe for concurrent use. It holds no goroutine while idle.
type Batcher struct {
	a          Attester
	maxSize    int
	maxWait    time.Duration
	maxPending int
	timeout    time.Duration
	interval   time.Duration
	reports    atomic.Uint64

	mu       sync.Mutex
	queue    []*batchRequest // admitted, not yet dispatched, in arrival order
	admitted int             // requests holding a slot: queued or in flight
	running  bool            // a dispatcher goroutine exists
	last     time.Time       // when the last report was started
	wake     chan struct{}   // wakes a gathering dispatcher: batch full, or a request dropped
}

// batchRequest is one call of Batcher.Attest.
type batchRequest struct {
	ctx  context.Context
	leaf [ReportDataSize]byte
	// dispatched is set, under the Batcher's mutex, when the request
	// leaves the queue for a batch.
	dispatched bool
	// done is closed once ev and err are set.
	done chan struct{}
	ev   *Evidence
	err  error
}

// NewBatcher returns a Batcher over a. It fails with ErrConfig (check
// "batch.config") for a nil attester or options out of range.
func NewBatcher(a Attester, opts BatcherOptions) (*Batcher, error) {
	bad := func(format string, args ...any) (*Batcher, error) {
		return nil, Fail(ErrConfig, "batch.config", format, args...)
	}
	if a == nil {
		return bad("no attester")
	}
	if opts.MaxSize < 0 || opts.MaxSize > MaxBatchSize {
		return bad("MaxSize %d, want 0..%d", opts.MaxSize, MaxBatchSize)
	}
	if opts.MaxWait < 0 || opts.MaxPending < 0 || opts.AttestTimeout < 0 || opts.MinInterval < 0 {
		return bad("negative MaxWait, MaxPending, AttestTimeout or MinInterval")
	}
	b := &Batcher{
		a:          a,
		maxSize:    opts.MaxSize,
		maxWait:    opts.MaxWait,
		maxPending: opts.MaxPending,
		timeout:    opts.AttestTimeout,
		interval:   opts.MinInterval,
		wake:       make(chan struct{}, 1),
	}
	if b.maxSize == 0 {
		b.maxSize = DefaultMaxBatchSize
	}
	if b.maxPending == 0 {
		b.maxPending = 4 * b.maxSize
	}
	return b, nil
}

// Reports returns the number of reports requested from the wrapped
// attester so far.
func (b *Batcher) Reports() uint64 { return b.reports.Load() }

// Attest adds leaf to the next batch and waits for its report. It returns
// the shared report's evidence (its own copy) plus a batch-proof record for
// leaf. It fails with ErrBusy (check "batch.busy") when MaxPending requests
// are already waiting, with ctx's error when ctx is done first (a request
// not yet dispatched is then dropped from its batch), and with the wrapped
// attester's error, kind preserved, when the report fails.
func (b *Batcher) Attest(ctx context.Context, leaf [ReportDataSize]byte) (*Evidence, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &batchRequest{ctx: ctx, leaf: leaf, done: make(chan struct{})}
	b.mu.Lock()
	if b.admitted >= b.maxPending {
		b.mu.Unlock()
		return nil, Fail(ErrBusy, "batch.busy", "%d requests already wait for a report", b.maxPending)
	}
	b.admitted++
	b.queue = append(b.queue, r)
	if len(b.queue) >= b.maxSize {
		b.signal()
	}
	if !b.running {
		b.running = true
		go b.dispatch()
	}
	b.mu.Unlock()

	select {
	case <-r.done:
		return r.ev, r.err
	case <-ctx.Done():
		b.mu.Lock()
		if !r.dispatched {
			b.remove(r)
		}
		b.mu.Unlock()
		return nil, ctx.Err()
	}
}

// remove drops a queued request. b.mu must be held.
func (b *Batcher) remove(r *batchRequest) {
	if i := slices.Index(b.queue, r); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
		b.admitted--
		if len(b.queue) == 0 {
			b.signal()
		}
	}
}

// signal wakes a gathering dispatcher, if any, without blocking.
func (b *Batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// dispatch runs batches, one at a time, until the queue is empty.
func (b *Batcher) dispatch() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		last := b.last
		b.mu.Unlock()
		if b.interval > 0 && !last.IsZero() {
			if d := b.interval - time.Since(last); d > 0 {
				time.Sleep(d)
			}
		}
		b.gather()
		b.mu.Lock()
		batch := b.take()
		if len(batch) > 0 {
			b.last = time.Now()
		}
		b.mu.Unlock()
		if len(batch) > 0 {
			b.run(batch)
		}
	}
}

// gather waits up to MaxWait for the queue to fill a batch, and no longer
// once it is full or empty.
func (b *Batcher) gather() {
	if b.maxWait <= 0 {
		return
	}
	t := time.NewTimer(b.maxWait)
	defer t.Stop()
	for {
		b.mu.Lock()
		n := len(b.queue)
		b.mu.Unlock()
		if n >= b.maxSize || n == 0 {
			return
		}
		select {
		case <-t.C:
			return
		case <-b.wake:
		}
	}
}

// take removes the next batch from the queue: up to MaxSize distinct
// leaves, with every queued duplicate of them, dropping requests whose
// context is done. b.mu must be held.
func (b *Batcher) take() []*batchRequest {
	var batch []*batchRequest
	leaves := map[[ReportDataSize]byte]bool{}
	rest := b.queue[:0]
	for _, r := range b.queue {
		switch {
		case r.ctx.Err() != nil:
			// Its Attest returns on ctx; it no longer holds a slot.
			r.dispatched = true
			b.admitted--
		case leaves[r.leaf] || len(leaves) < b.maxSize:
			leaves[r.leaf] = true
			r.dispatched = true
			batch = append(batch, r)
		default:
			rest = append(rest, r)
		}
	}
	clear(b.queue[len(rest):])
	b.queue = rest
	return batch
}

// run requests one report for batch and hands every request its result.
func (b *Batcher) run(batch []*batchRequest) {
	var leaves [][ReportDataSize]byte
	index := map[[ReportDataSize]byte]int{}
	for _, r := range batch {
		if _, ok := index[r.leaf]; !ok {
			index[r.leaf] = len(leaves)
			leaves = append(leaves, r.leaf)
		}
	}
	tree := newMerkleTree(leaves)
	rd := BatchReportData(uint32(tree.size()), tree.root())

	// The leader's context values (deadlines aside) reach the attester;
	// no single requester's cancellation does.
	ev, err := b.report(context.WithoutCancel(batch[0].ctx), rd)
	if err != nil {
		err = fmt.Errorf("attest: batch of %d leaves: %w", len(leaves), err)
	}

	proofs := make([][]byte, len(leaves))
	for _, r := range batch {
		if err != nil {
			r.err = err
		} else {
			i := index[r.leaf]
			if proofs[i] == nil {
				p := BatchProof{Index: uint32(i), Size: uint32(len(leaves)), Path: tree.path(i)}
				proofs[i] = p.Marshal()
			}
			r.ev = copyEvidence(ev)
			r.ev.Records[BatchRecordLabel] = Record{MediaType: BatchMediaType, Value: bytes.Clone(proofs[i])}
		}
		close(r.done)
	}
	b.mu.Lock()
	b.admitted -= len(batch)
	b.mu.Unlock()
}

// report requests one report from the wrapped attester.
func (b *Batcher) report(ctx context.Context, rd [ReportDataSize]byte) (*Evidence, error) {
	if b.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.timeout)
		defer cancel()
	}
	b.reports.Add(1)
	ev, err := b.a.Attest(ctx, rd)
	switch {
	case err != nil:
		return nil, err
	case ev == nil:
		return nil, Fail(ErrMalformedEvidence, "batch.attest", "attester returned no evidence")
	}
	if _, ok := ev.Records[BatchRecordLabel]; ok {
		return nil, Fail(ErrMalformedEvidence, "batch.attest", "attester evidence already has a %q record", BatchRecordLabel)
	}
	return ev, nil
}

// copyEvidence returns a deep copy of ev.
func copyEvidence(ev *Evidence) *Evidence {
	out := &Evidence{Type: ev.Type, Records: maps.Clone(ev.Records)}
	if out.Records == nil {
		out.Records = map[string]Record{}
	}
	for l, r := range out.Records {
		r.Value = bytes.Clone(r.Value)
		out.Records[l] = r
	}
	return out
}
