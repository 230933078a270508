package atls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync"

	"github.com/confidential-go/atls/atls/attest"
)

// AuthorizeFunc decides, inside the handshake, whether a peer whose
// evidence has been verified may connect: claims are its verified claims
// (shared: do not modify them), cs the state of the handshake under way
// (HandshakeComplete is false). A nil error accepts the peer. An error
// refuses it with a TLS alert, as a failed check: an *attest.CheckError
// (see attest.Fail) is kept as it is, with its own kind and check name;
// any other error is wrapped as kind ErrPolicy, check "authorize".
//
// It is called only for peers that passed every attestation check, before
// the base configuration's VerifyConnection, from the handshake's
// goroutine and possibly from many at once; a panic in it refuses the
// peer ("authorize").
type AuthorizeFunc func(claims *Claims, cs tls.ConnectionState) error

// peerHooks are what the application adds to the appraisal of a peer:
// its Authorize function, its Trace, and the claims of handshakes under
// way for HandshakeClaims. A nil *peerHooks adds nothing.
type peerHooks struct {
	authorize AuthorizeFunc
	trace     *Trace

	mu sync.Mutex
	// verifying holds the claims of each handshake whose peer was
	// accepted, from then until the base configuration's VerifyConnection
	// (wrapped by scope) has returned, keyed by the identity of the leaf
	// certificate crypto/tls parsed for that handshake: the pointer, not
	// the bytes, so that two connections presenting one static
	// certificate never see each other's entry.
	verifying map[*x509.Certificate]*attest.Claims
}

func newPeerHooks(authorize AuthorizeFunc, trace *Trace) *peerHooks {
	return &peerHooks{authorize: authorize, trace: trace}
}

// traceOf returns the Trace of h (nil for none).
func (h *peerHooks) traceOf() *Trace {
	if h == nil {
		return nil
	}
	return h.trace
}

// authorizePeer runs the Authorize function, if any, on a verified peer.
func (h *peerHooks) authorizePeer(claims *attest.Claims, cs tls.ConnectionState) (err error) {
	if h == nil || h.authorize == nil {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = attest.Fail(attest.ErrPolicy, "authorize", "the Authorize function panicked: %v", r)
		}
	}()
	// A copy: the claims may be shared with the verification caches.
	err = h.authorize(claims.Clone(), cs)
	if err == nil {
		return nil
	}
	var ce *attest.CheckError
	if errors.As(err, &ce) && ce.Kind != nil && ce.Check != "" {
		return err
	}
	return attest.Wrap(attest.ErrPolicy, "authorize", err)
}

// enter records the claims of the accepted peer of cs for HandshakeClaims.
func (h *peerHooks) enter(cs tls.ConnectionState, claims *attest.Claims) {
	if h == nil || len(cs.PeerCertificates) == 0 {
		return
	}
	h.mu.Lock()
	if h.verifying == nil {
		h.verifying = map[*x509.Certificate]*attest.Claims{}
	}
	h.verifying[cs.PeerCertificates[0]] = claims
	h.mu.Unlock()
}

// leave forgets what enter recorded for cs.
func (h *peerHooks) leave(cs tls.ConnectionState) {
	if h == nil || len(cs.PeerCertificates) == 0 {
		return
	}
	h.mu.Lock()
	delete(h.verifying, cs.PeerCertificates[0])
	h.mu.Unlock()
}

// handshakeClaims returns a copy of the claims recorded for cs.
func (h *peerHooks) handshakeClaims(cs tls.ConnectionState) (*attest.Claims, bool) {
	if h == nil || len(cs.PeerCertificates) == 0 {
		return nil, false
	}
	h.mu.Lock()
	c, ok := h.verifying[cs.PeerCertificates[0]]
	h.mu.Unlock()
	if !ok {
		return nil, false
	}
	return c.Clone(), true
}

// scope wraps the base configuration's VerifyConnection (which may be
// nil), called right after a successful peer.verify on the same state,
// so that HandshakeClaims answers while it runs and forgets the
// handshake when it returns. The result is never nil.
func (p *peerCheck) scope(user func(tls.ConnectionState) error) func(tls.ConnectionState) error {
	h := p.hooks
	return func(cs tls.ConnectionState) error {
		defer h.leave(cs)
		if user != nil {
			return user(cs)
		}
		return nil
	}
}

// HandshakeClaims returns the verified claims of the client whose
// handshake is under way with state cs. It answers only inside the
// VerifyConnection of the base configuration given to Hook, which runs
// after every attestation check and ServerOptions.Authorize have accepted
// the client, so that an application can decide on the claims and other
// TLS state together; elsewhere ok is false. Once the handshake is
// complete, use PeerClaims.
func (s *Server) HandshakeClaims(cs tls.ConnectionState) (*Claims, bool) {
	if s.peer == nil {
		return nil, false
	}
	return s.peer.hooks.handshakeClaims(cs)
}

// HandshakeClaims returns the verified claims of the server whose
// handshake is under way with state cs. It answers only inside the
// VerifyConnection of the base configuration (ClientOptions.Base, or the
// one given to Hook), which runs after every attestation check and
// ClientOptions.Authorize have accepted the server; elsewhere ok is
// false. Once the handshake is complete, use PeerClaims.
func (c *Client) HandshakeClaims(cs tls.ConnectionState) (*Claims, bool) {
	if c.peer == nil {
		return nil, false
	}
	return c.peer.hooks.handshakeClaims(cs)
}
