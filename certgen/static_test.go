package certgen_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
)

// Finding 11 (issue 13): Current renews in the background. Callers keep
// the certificate in hand, without waiting, while a renewal runs; they
// wait only when there is none or it is past five sixths of its life.
func TestStaticCurrentRenewsInBackground(t *testing.T) {
	clk := &clock{now: t0}
	held := make(chan struct{})
	var release func()
	var calls int
	entered := make(chan struct{}, 8)
	fa := funcAttester(func(ctx context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
		calls++
		if calls > 1 {
			entered <- struct{}{}
			select {
			case <-held:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return (&fakeAttester{}).Attest(ctx, rd)
	})
	release = func() { close(held) }
	s, err := certgen.NewStatic(certgen.Request{Attester: fa, Role: attest.RoleServer, Now: clk.Now})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()

	c1, err := s.Current(ctx)
	require.NoError(t, err)
	life := c1.Leaf.NotAfter.Sub(c1.Leaf.NotBefore)

	// Due: the current one is returned at once and one renewal starts.
	clk.Set(c1.Leaf.NotBefore.Add(life * 2 / 3))
	for range 3 {
		c, err := s.Current(ctx)
		require.NoError(t, err)
		require.Same(t, c1, c, "no caller waits for the renewal")
	}
	<-entered
	require.Empty(t, entered, "one renewal at a time")
	release()
	var c2 = c1
	for deadline := time.Now().Add(10 * time.Second); c2 == c1 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		c2, err = s.Current(ctx)
		require.NoError(t, err)
	}
	require.NotSame(t, c1, c2, "the renewal replaced the certificate")
}

// Finding 11 (issue 13): Close stops a background renewal (its context is
// cancelled) and waits for it, so that no goroutine outlives the server.
func TestStaticCloseStopsRenewal(t *testing.T) {
	clk := &clock{now: t0}
	var calls int
	entered := make(chan struct{}, 1)
	cancelled := make(chan error, 1)
	fa := funcAttester(func(ctx context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
		calls++
		if calls > 1 {
			entered <- struct{}{}
			<-ctx.Done()
			cancelled <- ctx.Err()
			return nil, ctx.Err()
		}
		return (&fakeAttester{}).Attest(ctx, rd)
	})
	s, err := certgen.NewStatic(certgen.Request{Attester: fa, Role: attest.RoleServer, Now: clk.Now})
	require.NoError(t, err)
	c1, err := s.Current(context.Background())
	require.NoError(t, err)
	clk.Set(c1.Leaf.NotBefore.Add(c1.Leaf.NotAfter.Sub(c1.Leaf.NotBefore) * 3 / 4))
	_, err = s.Current(context.Background())
	require.NoError(t, err)
	<-entered
	s.Close() // returns only once the renewal has ended
	select {
	case err := <-cancelled:
		require.True(t, errors.Is(err, context.Canceled))
	default:
		t.Fatal("Close returned before the renewal ended")
	}
	// After Close no renewal starts; the certificate in hand is served.
	c, err := s.Current(context.Background())
	require.NoError(t, err)
	require.Same(t, c1, c)
	s.Close() // idempotent
}
