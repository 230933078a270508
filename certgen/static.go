package certgen

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"time"

	"github.com/confidential-go/atls/atls/attest"
)

// Static holds one static-mode attested certificate and replaces it when
// two thirds of its validity have passed, so that verifiers enforcing a
// maximum age (at least the validity) never see a stale one. It is safe for
// concurrent use; concurrent callers share one issuance.
//
// Certificate rotates synchronously: the caller that finds the certificate
// due waits for the new one. Current never waits while the certificate in
// hand is usable: it renews in the background instead. Close stops a
// background renewal and waits for it to end.
type Static struct {
	req Request

	mu       sync.Mutex
	cur      *tls.Certificate
	renewing bool      // a background renewal is running
	retryAt  time.Time // no background renewal before this (after a failure)
	closed   bool
	ctx      context.Context // of background renewals; cancelled by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// renewRetry is how long Current waits before it tries a failed
// background renewal again.
const renewRetry = 10 * time.Second

// NewStatic returns a Static for req, whose Mode is forced to static and
// Nonce cleared. It issues nothing until the first call of Certificate or
// Current.
func NewStatic(req Request) (*Static, error) {
	if req.Attester == nil {
		return nil, errors.New("certgen: no attester")
	}
	req.Mode = attest.ModeStatic
	req.Nonce = [attest.NonceSize]byte{}
	ctx, cancel := context.WithCancel(context.Background())
	return &Static{req: req, ctx: ctx, cancel: cancel}, nil
}

func (s *Static) now() time.Time {
	if s.req.Now != nil {
		return s.req.Now()
	}
	return time.Now()
}

// Certificate returns the current certificate, issuing a new one first if
// there is none or the current one is due for rotation.
func (s *Static) Certificate(ctx context.Context) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.now().Before(rotateAt(s.cur)) {
		return s.cur, nil
	}
	return s.issueLocked(ctx)
}

// Current returns the current certificate without waiting for a rotation:
// once the certificate is due (two thirds of its validity) it starts one
// background renewal and keeps returning the current certificate until
// the new one is ready. It issues synchronously, as Certificate does, only
// when there is no certificate yet or the current one has passed five
// sixths of its validity (the renewal failed or is late). A failed
// background renewal is retried after ten seconds.
func (s *Static) Current(ctx context.Context) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.cur == nil || !now.Before(expireAt(s.cur)) {
		return s.issueLocked(ctx)
	}
	if !now.Before(rotateAt(s.cur)) && !s.renewing && !s.closed && !now.Before(s.retryAt) {
		s.renewing = true
		s.wg.Add(1)
		go s.renew()
	}
	return s.cur, nil
}

// issueLocked issues a certificate and makes it current; s.mu is held.
func (s *Static) issueLocked(ctx context.Context) (*tls.Certificate, error) {
	c, err := Issue(ctx, s.req)
	if err != nil {
		return nil, err
	}
	s.cur = c
	return c, nil
}

// renew issues a replacement in the background.
func (s *Static) renew() {
	defer s.wg.Done()
	c, err := Issue(s.ctx, s.req)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renewing = false
	if err != nil {
		s.retryAt = s.now().Add(renewRetry)
		return
	}
	if s.cur == nil || !c.Leaf.NotBefore.Before(s.cur.Leaf.NotBefore) {
		s.cur = c
	}
}

// Close stops a background renewal, waits for it to end, and starts no
// other. Certificate and Current keep working (synchronously). Close is
// idempotent.
func (s *Static) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// rotateAt is when c is due for rotation: two thirds of its lifetime.
func rotateAt(c *tls.Certificate) time.Time {
	life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
	return c.Leaf.NotBefore.Add(life * 2 / 3)
}

// expireAt is when Current stops serving c while a renewal is pending:
// five sixths of its lifetime.
func expireAt(c *tls.Certificate) time.Time {
	life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
	return c.Leaf.NotBefore.Add(life * 5 / 6)
}
