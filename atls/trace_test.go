package atls_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
)

// traceLog records every Trace event.
type traceLog struct {
	mu      sync.Mutex
	starts  []atls.AttestStartInfo
	attests []atls.AttestDoneInfo
	verifs  []atls.VerifyDoneInfo
	lookups []atls.CacheLookupInfo
}

func (l *traceLog) trace() *atls.Trace {
	return &atls.Trace{
		AttestStart: func(i atls.AttestStartInfo) { l.mu.Lock(); l.starts = append(l.starts, i); l.mu.Unlock() },
		AttestDone:  func(i atls.AttestDoneInfo) { l.mu.Lock(); l.attests = append(l.attests, i); l.mu.Unlock() },
		VerifyDone:  func(i atls.VerifyDoneInfo) { l.mu.Lock(); l.verifs = append(l.verifs, i); l.mu.Unlock() },
		CacheLookup: func(i atls.CacheLookupInfo) { l.mu.Lock(); l.lookups = append(l.lookups, i); l.mu.Unlock() },
	}
}

// Each side reports its attestations, its appraisals (with the refusing
// check) and its cache lookups.
func TestTrace(t *testing.T) {
	f := atlstest.Get(t)
	ctx := context.Background()
	var sl, cl traceLog
	srv := atlstest.NewServer(t, atls.ServerOptions{
		Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement),
		Trace: sl.trace(),
	})
	cli := atlstest.NewClient(t, atls.ClientOptions{
		Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester,
		Trace: cl.trace(),
	})
	addr := serveTLS(t, srv.TLSConfig())
	conn, err := cli.DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	_ = conn.Close()

	// The server appraises the client after the client's side of the
	// handshake has completed.
	require.Eventually(t, func() bool {
		sl.mu.Lock()
		defer sl.mu.Unlock()
		return len(sl.verifs) > 0
	}, 10*time.Second, 5*time.Millisecond)
	sl.mu.Lock()
	require.Equal(t, []atls.AttestStartInfo{{Role: attest.RoleServer, Mode: attest.ModeBatch}}, sl.starts)
	require.Len(t, sl.attests, 1)
	require.NoError(t, sl.attests[0].Err)
	require.Positive(t, sl.attests[0].Latency)
	require.Len(t, sl.verifs, 1)
	require.Equal(t, atls.VerifyDoneInfo{Role: attest.RoleClient, Mode: attest.ModeNonce, Latency: sl.verifs[0].Latency}, sl.verifs[0])
	sl.mu.Unlock()
	cl.mu.Lock()
	require.Equal(t, []atls.AttestStartInfo{{Role: attest.RoleClient, Mode: attest.ModeNonce}}, cl.starts)
	require.Len(t, cl.verifs, 1)
	require.Equal(t, attest.RoleServer, cl.verifs[0].Role)
	require.NoError(t, cl.verifs[0].Err)
	// Batched evidence goes through the evidence cache: one miss.
	require.Contains(t, cl.lookups, atls.CacheLookupInfo{Level: atls.CacheEvidence, Hit: false})
	cl.mu.Unlock()

	// A refused server is reported with the refusing check.
	var rl traceLog
	wrong := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, [48]byte{0xff}), Trace: rl.trace()})
	_, err = wrong.DialContext(ctx, "tcp", addr)
	require.Error(t, err)
	rl.mu.Lock()
	require.Len(t, rl.verifs, 1)
	require.Equal(t, "policy.measurement", rl.verifs[0].Check)
	require.ErrorIs(t, rl.verifs[0].Err, atls.ErrPolicy)
	rl.mu.Unlock()
}

// Static certificates are looked up in the certificate cache: a miss,
// then hits.
func TestTraceCertificateCache(t *testing.T) {
	f := atlstest.Get(t)
	var l traceLog
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Freshness: atls.FreshnessStatic})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true, Trace: l.trace()})
	addr := serveTLS(t, srv.TLSConfig())
	for range 3 {
		conn, err := cli.DialContext(context.Background(), "tcp", addr)
		require.NoError(t, err)
		_ = conn.Close()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var certHits, certMisses int
	for _, i := range l.lookups {
		if i.Level == atls.CacheCertificate {
			if i.Hit {
				certHits++
			} else {
				certMisses++
			}
		}
	}
	require.Equal(t, 1, certMisses)
	require.Equal(t, 2, certHits)
	require.Len(t, l.verifs, 3)
}
