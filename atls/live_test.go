package atls_test

import (
	"context"
	"crypto/tls"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/internal/atlstest"
)

// serveTLS accepts connections on a loopback listener and completes each
// handshake with cfg, until the test ends.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return ln.Addr().String()
}

// A policy swapped while handshakes run: each handshake is decided under
// exactly one of the two policies (never a mix of their fields), and
// after a swap new handshakes use the new policy, warm caches or not.
func TestVerifierPolicySwapUnderLoad(t *testing.T) {
	f := atlstest.Get(t)
	other := [48]byte{0xff}
	// A pins the server's measurement and a host data it does not have;
	// B pins another measurement and no host data. Each refuses, with
	// its own check; a mix (A's measurements, B's host data) would
	// accept.
	polA := atlstest.PinMeasurement(t, f.ServerMeasurement)
	polA.HostData = make(attest.HexBytes, 32)
	polA.HostData[0] = 0x11
	polB := atlstest.PinMeasurement(t, other)
	polAccept := atlstest.PinMeasurement(t, f.ServerMeasurement)

	ver, err := snp.NewVerifier(snp.VerifierOptions{Roots: f.Chain.Roots(), Policy: polA})
	require.NoError(t, err)
	var hits atomic.Int64
	cli := atlstest.NewClient(t, atls.ClientOptions{
		Verifier: ver, AcceptStatic: true,
		Trace: &atls.Trace{CacheLookup: func(i atls.CacheLookupInfo) {
			if i.Hit {
				hits.Add(1)
			}
		}},
	})
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Freshness: atls.FreshnessStatic})
	addr := serveTLS(t, srv.TLSConfig())
	ctx := context.Background()
	dial := func() error {
		conn, err := cli.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = conn.Close()
		}
		return err
	}

	stop := make(chan struct{})
	var swaps atomic.Int64
	var swapper sync.WaitGroup
	swapper.Add(1)
	go func() {
		defer swapper.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := polA
			if i%2 == 1 {
				p = polB
			}
			if err := ver.SetPolicy(p); err != nil {
				t.Error(err)
				return
			}
			swaps.Add(1)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	var wg sync.WaitGroup
	var byCheck sync.Map
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				err := dial()
				check := "ok"
				if err != nil {
					check = attest.FailedCheck(err)
				}
				n, _ := byCheck.LoadOrStore(check, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	swapper.Wait()
	total := int64(0)
	byCheck.Range(func(k, v any) bool {
		n := v.(*atomic.Int64).Load()
		total += n
		require.Contains(t, []string{"policy.host_data", "policy.measurement"}, k, "%d handshakes decided %q: a mix of policies, or another failure", n, k)
		return true
	})
	require.Equal(t, int64(80), total)
	require.Greater(t, swaps.Load(), int64(2), "the policy changed during the handshakes")

	// After a swap, the next handshake uses the new policy, although the
	// caches hold the same certificate's verdict.
	require.NoError(t, ver.SetPolicy(polAccept))
	require.NoError(t, dial())
	before := hits.Load()
	require.NoError(t, dial())
	require.Greater(t, hits.Load(), before, "the second handshake under one policy is served from the cache")
	require.NoError(t, ver.SetPolicy(polA))
	atlstest.RequireCheck(t, dial(), atls.ErrPolicy, "policy.host_data")
	require.NoError(t, ver.SetPolicy(polAccept))
	require.NoError(t, dial())

	// An invalid policy is refused and changes nothing.
	gen := ver.Generation()
	require.ErrorIs(t, ver.SetPolicy(&snp.Policy{}), atls.ErrConfig)
	require.Equal(t, gen, ver.Generation())
	require.NoError(t, dial())
}

// A connection keeps the decision it got: a policy that would refuse its
// server, installed after the handshake, changes nothing for it.
func TestVerifierPolicySwapKeepsConnections(t *testing.T) {
	f := atlstest.Get(t)
	ver, err := snp.NewVerifier(snp.VerifierOptions{Roots: f.Chain.Roots(), Policy: atlstest.PinMeasurement(t, f.ServerMeasurement)})
	require.NoError(t, err)
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: ver})
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
	addr := serveTLS(t, srv.TLSConfig())
	conn, err := cli.DialContext(context.Background(), "tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, ver.SetPolicy(atlstest.PinMeasurement(t, [48]byte{0xff})))
	claims, ok := cli.PeerClaims(conn.ConnectionState())
	require.True(t, ok)
	require.Equal(t, f.ServerMeasurement[:], []byte(claims.SNP.Measurement))
	_, err = cli.DialContext(context.Background(), "tcp", addr)
	atlstest.RequireCheck(t, err, atls.ErrPolicy, "policy.measurement")
}
