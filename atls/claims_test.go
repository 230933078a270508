package atls

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
)

// reportClaims returns claims as a platform verifier makes them for the
// i-th report of the VM vm: newly allocated, the per-VM fields equal for
// every report of vm, REPORT_DATA and evidence digest unique. Field sizes
// are those of an SEV-SNP report.
func reportClaims(vm byte, i int) *attest.Claims {
	fill := func(n int, b byte) attest.HexBytes { return bytes.Repeat([]byte{b + vm}, n) }
	rd := make(attest.HexBytes, 64)
	binary.BigEndian.PutUint64(rd, uint64(i))
	dig := sha256.Sum256(rd)
	return &attest.Claims{
		Platform: "amd-sev-snp", Simulated: true,
		ValidUntil: time.Now().Add(time.Hour), ReportData: rd, EvidenceDigest: bytes.Clone(dig[:]),
		SNP: &attest.SNPClaims{
			ReportVersion: 3, Product: "Milan", Signer: "VCEK", GuestPolicy: 0x30000,
			FamilyID: fill(16, 1), ImageID: fill(16, 2), Measurement: fill(48, 3), HostData: fill(32, 4),
			IDKeyDigest: fill(48, 5), AuthorKeyDigest: fill(48, 6), ReportID: fill(32, 7), ReportIDMA: fill(32, 8),
			ChipID: fill(64, 9), CurrentTCB: 0xdb18000000000004, ReportedTCB: 0xdb18000000000004,
			CommittedTCB: 0xdb18000000000004, LaunchTCB: 0xdb18000000000004, CertTCB: 0xdb18000000000004,
			CurrentVersion: "1.55.21", CommittedVersion: "1.55.21",
		},
	}
}

func heapInUse() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// The claims kept for PeerClaims are bounded in entries and in bytes:
// each nonce handshake stores one entry, and claims of one VM share their
// platform part (issue 13, finding 13: claims memory).
func TestClaimsMemoryBound(t *testing.T) {
	const size = 4096
	// A generous bound: the entry measures about 0.5 KiB on amd64
	// (claims 0.2 KiB, REPORT_DATA and digest, cache bookkeeping), and
	// an unshared copy of the platform claims adds 0.7 KiB (1.2 KiB per
	// entry before they were shared).
	const maxPerEntry = 768
	now := time.Now()
	leaf := &x509.Certificate{NotBefore: now.Add(-time.Minute), NotAfter: now.Add(10 * time.Minute)}
	params := attest.BindingParams{Version: 1, Role: attest.RoleServer, Mode: attest.ModeNonce}
	p := &peerCheck{role: attest.RoleServer, now: time.Now, claims: newClaims(0, size)}
	store := func(from, to int) {
		for i := from; i < to; i++ {
			c := p.accepted(reportClaims(0, i), params, leaf)
			p.keepClaims(sha256.Sum256(c.ReportData), c, now)
		}
	}

	before := heapInUse()
	store(0, size)
	filled := heapInUse()
	perEntry := (filled - before) / size
	t.Logf("%d entries: %d bytes each", size, perEntry)
	require.Less(t, perEntry, int64(maxPerEntry))

	// Four times as many handshakes: still size entries, no more memory.
	store(size, 4*size)
	require.Equal(t, size, p.claims.Len())
	after := heapInUse()
	t.Logf("after %d handshakes: %d bytes", 4*size, after-before)
	require.Less(t, after-before, int64(size*maxPerEntry))

	// The oldest entries were evicted, the newest are readable.
	_, ok := p.claims.Get(sha256.Sum256(reportClaims(0, 0).ReportData), now)
	require.False(t, ok)
	c, ok := p.claims.Get(sha256.Sum256(reportClaims(0, 4*size-1).ReportData), now)
	require.True(t, ok)
	require.Equal(t, reportClaims(0, 4*size-1).ReportData, c.ReportData)
	runtime.KeepAlive(p)
}

// Sharing the platform part never mixes the claims of two VMs.
func TestClaimsShareOnlyEqualPlatformClaims(t *testing.T) {
	p := &peerCheck{}
	leaf := &x509.Certificate{}
	params := attest.BindingParams{Version: 1, Role: attest.RoleServer, Mode: attest.ModeNonce}
	a1 := p.accepted(reportClaims(0, 1), params, leaf)
	a2 := p.accepted(reportClaims(0, 2), params, leaf)
	require.Same(t, a1.SNP, a2.SNP, "equal platform claims are stored once")
	b := p.accepted(reportClaims(1, 3), params, leaf)
	require.NotSame(t, a1.SNP, b.SNP)
	require.Equal(t, reportClaims(1, 3).SNP, b.SNP)
	a3 := p.accepted(reportClaims(0, 4), params, leaf)
	require.Equal(t, reportClaims(0, 4).SNP, a3.SNP)
	require.Equal(t, reportClaims(0, 1).SNP, a1.SNP, "earlier claims are unchanged")

	// One differing field is enough to keep them apart.
	c := reportClaims(0, 5)
	c.SNP.CurrentTCB++
	got := p.accepted(c, params, leaf)
	require.Equal(t, c.SNP.CurrentTCB, got.SNP.CurrentTCB)
	require.NotEqual(t, a3.SNP.CurrentTCB, got.SNP.CurrentTCB)
}
