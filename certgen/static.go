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
type Static struct {
	req Request

	mu  sync.Mutex
	cur *tls.Certificate
}

// NewStatic returns a Static for req, whose Mode is forced to static and
// Nonce cleared.
func NewStatic(req Request) (*Static, error) {
	if req.Attester == nil {
		return nil, errors.New("certgen: no attester")
	}
	req.Mode = attest.ModeStatic
	req.Nonce = [attest.NonceSize]byte{}
	return &Static{req: req}, nil
}

// Certificate returns the current certificate, issuing a new one first if
// there is none or the current one is due for rotation.
func (s *Static) Certificate(ctx context.Context) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now
	if s.req.Now != nil {
		now = s.req.Now
	}
	if s.cur != nil && now().Before(s.rotateAt(s.cur)) {
		return s.cur, nil
	}
	c, err := Issue(ctx, s.req)
	if err != nil {
		return nil, err
	}
	s.cur = c
	return c, nil
}

func (s *Static) rotateAt(c *tls.Certificate) time.Time {
	life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
	return c.Leaf.NotBefore.Add(life * 2 / 3)
}
