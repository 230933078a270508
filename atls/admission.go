package atls

import (
	"net"
	"net/netip"
	"sync"

	"github.com/confidential-go/atls/atls/attest"
)

// admission bounds the handshakes that are waiting for, or making, a
// nonce-bound attestation: in all (total) and per source address, so that
// one source cannot fill the queue that every client shares. A zero or
// negative bound means none.
type admission struct {
	maxTotal, maxPerSource int

	mu       sync.Mutex
	total    int
	bySource map[netip.Addr]int
}

func newAdmission(maxTotal, maxPerSource int) *admission {
	return &admission{maxTotal: maxTotal, maxPerSource: maxPerSource, bySource: make(map[netip.Addr]int)}
}

// sourceOf returns the IP address of the peer of c; ok is false when there
// is none to count (no connection, or not an IP address). quic-go gives a
// connection with the client's address.
func sourceOf(c net.Conn) (netip.Addr, bool) {
	if c == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// enter admits one handshake from src (counted per source only when
// hasSrc), or fails at once with an ErrBusy error naming the bound. Every
// successful enter must be followed by one leave with the same arguments.
func (a *admission) enter(src netip.Addr, hasSrc bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.maxTotal > 0 && a.total >= a.maxTotal {
		return attest.Fail(attest.ErrBusy, "server.busy",
			"%d handshakes already wait for an attestation (bound %d); refused at once rather than queued", a.total, a.maxTotal)
	}
	if hasSrc && a.maxPerSource > 0 && a.bySource[src] >= a.maxPerSource {
		return attest.Fail(attest.ErrBusy, "server.busy_source",
			"%d handshakes from %v already wait for an attestation (bound per source %d)", a.bySource[src], src, a.maxPerSource)
	}
	a.total++
	if hasSrc {
		a.bySource[src]++
	}
	return nil
}

func (a *admission) leave(src netip.Addr, hasSrc bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if hasSrc {
		if a.bySource[src] <= 1 {
			delete(a.bySource, src)
		} else {
			a.bySource[src]--
		}
	}
}
