package atls

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls/attest"
)

// A resumed session is refused before any frame is read: crypto/tls would
// resume it with the tickets and cache that bound configurations turn off,
// so the handshake here is made with them on.
func TestBoundResumedSessionRefused(t *testing.T) {
	cert, err := ephemeralCertificate("srv")
	if err != nil {
		t.Fatal(err)
	}
	srvCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	cliCfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	// Loopback TCP, not net.Pipe: crypto/tls may write on both ends at
	// once (session tickets), which an unbuffered pipe deadlocks on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				s := tls.Server(raw, srvCfg)
				defer s.Close()
				if s.Handshake() == nil {
					// Let the client read the ticket, then wait for it to go.
					_, _ = s.Write([]byte{0})
					_, _ = s.Read(make([]byte, 1))
				}
			}()
		}
	}()
	handshake := func() tls.ConnectionState {
		raw, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
		c := tls.Client(raw, cliCfg)
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		return c.ConnectionState()
	}
	if cs := handshake(); cs.DidResume {
		t.Fatal("first handshake resumed")
	}
	cs := handshake()
	if !cs.DidResume {
		t.Fatal("second handshake did not resume: the test proves nothing")
	}
	x := &boundExchange{opts: &BoundOptions{Verifier: nopVerifier{}}, role: attest.RoleClient, cs: cs, rw: nil}
	_, err = x.run(context.Background(), nil)
	if attest.FailedCheck(err) != "bound.resumed" || !errors.Is(err, attest.ErrBinding) {
		t.Fatalf("got %v, want bound.resumed", err)
	}
}

type nopVerifier struct{}

func (nopVerifier) Verify(context.Context, *attest.Evidence, [64]byte) (*attest.Claims, error) {
	return nil, errors.New("not reached")
}

// The re-attestation rate limit counts from the last request answered,
// per connection, with the default, a configured and no interval.
func TestAllowReattest(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		interval time.Duration
		least    time.Duration // 0: no limit
	}{
		{"default", 0, DefaultMinReattestInterval},
		{"configured", 30 * time.Second, 30 * time.Second},
		{"none", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &BoundConn{sess: &BoundSession{Options: &BoundOptions{MinReattestInterval: tc.interval}}}
			other := &BoundConn{sess: c.sess}
			if ok, _ := c.allowReattest(t0); !ok {
				t.Fatal("first request refused")
			}
			ok, wait := c.allowReattest(t0.Add(tc.least / 2))
			if tc.least == 0 {
				if !ok {
					t.Fatal("refused without a limit")
				}
				return
			}
			if ok || wait != tc.least-tc.least/2 {
				t.Fatalf("request within the interval: ok=%v wait=%v", ok, wait)
			}
			if ok, _ := other.allowReattest(t0.Add(tc.least / 2)); !ok {
				t.Fatal("the limit of one connection applied to another")
			}
			// A refused request does not push the next one back.
			if ok, _ := c.allowReattest(t0.Add(tc.least)); !ok {
				t.Fatal("request after the interval refused")
			}
			if ok, _ := c.allowReattest(t0.Add(tc.least + tc.least/2)); ok {
				t.Fatal("the interval restarts from the last request answered")
			}
		})
	}
}
