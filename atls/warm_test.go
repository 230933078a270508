package atls_test

import (
	"context"
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
	"github.com/confidential-go/atls/internal/atlstest"
)

// fakeClock is a settable time source for ClientOptions.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// validUntil sets ValidUntil on the claims of the verifier it wraps.
type validUntil struct {
	attest.Verifier
	until time.Time
}

func (v validUntil) Verify(ctx context.Context, ev *attest.Evidence, rd [64]byte) (*attest.Claims, error) {
	c, err := v.Verifier.Verify(ctx, ev, rd)
	if err != nil {
		return nil, err
	}
	c = c.Clone()
	c.ValidUntil = v.until
	return c, nil
}

// A static certificate verified before is accepted from the cache without
// parsing, but never at a time when a full verification would refuse it
// or must run again: each time-dependent check still applies on a hit.
func TestStaticCacheHitKeepsTimeChecks(t *testing.T) {
	f := atlstest.Get(t)
	issueStatic := func(validity time.Duration) *tls.Certificate {
		c, err := certgen.Issue(context.Background(), certgen.Request{
			Attester: f.ServerAttester, Role: attest.RoleServer, Mode: attest.ModeStatic, Validity: validity,
		})
		require.NoError(t, err)
		return c
	}
	short := issueStatic(5 * time.Minute)
	long := issueStatic(time.Hour)

	type step struct {
		at    time.Duration // after the certificate's NotBefore
		check string        // failed check, "" for accepted
		calls int64         // appraisals by the platform verifier so far
	}
	run := func(t *testing.T, cert *tls.Certificate, opts atls.ClientOptions, steps []step) {
		clock := &fakeClock{}
		counting := f.Verifier(t, f.ServerMeasurement)
		if opts.Verifier == nil {
			opts.Verifier = counting
		} else {
			opts.Verifier = validUntil{counting, opts.Verifier.(validUntil).until}
		}
		opts.AcceptStatic, opts.Now = true, clock.Now
		cli := atlstest.NewClient(t, opts)
		scfg := maliciousServer(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil })
		for _, s := range steps {
			clock.Set(cert.Leaf.NotBefore.Add(s.at))
			res := atlstest.Handshake(t, scfg, clientConfig(t, cli, nil))
			if s.check == "" {
				require.NoError(t, res.Client, "at %v", s.at)
				c, ok := cli.PeerClaims(res.ClientCS)
				require.True(t, ok)
				require.Equal(t, attest.ModeStatic, c.Mode)
			} else {
				atlstest.RequireCheck(t, res.Client, attest.ErrBinding, s.check)
			}
			require.Equal(t, s.calls, counting.Calls.Load(), "appraisals at %v", s.at)
		}
	}
	require.Less(t, short.Leaf.NotAfter.Sub(short.Leaf.NotBefore), 10*time.Minute, "expires inside the cache lifetime")

	t.Run("certificate.validity", func(t *testing.T) {
		run(t, short, atls.ClientOptions{MaxAge: 24 * time.Hour}, []step{
			{time.Minute, "", 1},
			{2 * time.Minute, "", 1}, // from the cache
			{-time.Second, "certificate.validity", 1},
			{short.Leaf.NotAfter.Sub(short.Leaf.NotBefore) + time.Second, "certificate.validity", 1},
		})
	})
	t.Run("binding.max_age", func(t *testing.T) {
		run(t, long, atls.ClientOptions{MaxAge: 3 * time.Minute}, []step{
			{time.Minute, "", 1},
			{3 * time.Minute, "", 1}, // from the cache, at the limit
			{3*time.Minute + time.Second, "binding.max_age", 1},
		})
	})
	t.Run("ValidUntil", func(t *testing.T) {
		run(t, long, atls.ClientOptions{Verifier: validUntil{until: long.Leaf.NotBefore.Add(2 * time.Minute)}}, []step{
			{time.Minute, "", 1},
			{90 * time.Second, "", 1},            // from the cache
			{2*time.Minute + time.Second, "", 2}, // the verdict lapsed: appraised again
			{2*time.Minute + 2*time.Second, "", 3},
		})
	})
	t.Run("cache lifetime", func(t *testing.T) {
		run(t, long, atls.ClientOptions{}, []step{
			{time.Minute, "", 1},
			{10 * time.Minute, "", 1},
			{11*time.Minute + time.Second, "", 2},
			{12 * time.Minute, "", 2},
		})
	})
	t.Run("cache off", func(t *testing.T) {
		run(t, long, atls.ClientOptions{CacheSize: -1}, []step{
			{time.Minute, "", 1},
			{2 * time.Minute, "", 2},
		})
	})
}

// A nonce-bound certificate is never accepted from a cache: replayed to
// the client that accepted it, it fails as any replay does.
func TestNonceCertificateNotReusedFromCache(t *testing.T) {
	f := atlstest.Get(t)
	ver := f.Verifier(t, f.ServerMeasurement)
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: ver, AcceptStatic: true})
	var first *tls.Certificate
	scfg := maliciousServer(func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if first == nil {
			c, err := atlstest.IssueForClientNonce(h, f.ServerAttester, attest.RoleServer)
			first = c
			return c, err
		}
		return first, nil
	})
	res := atlstest.Handshake(t, scfg, clientConfig(t, cli, nil))
	require.NoError(t, res.Client)
	res = atlstest.Handshake(t, scfg, clientConfig(t, cli, nil))
	atlstest.RequireCheck(t, res.Client, attest.ErrBinding, "snp.report_data")
	require.Equal(t, int64(2), ver.Calls.Load())
}
