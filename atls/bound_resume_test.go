package atls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
	"github.com/stretchr/testify/require"
)

// resumingClient runs the client side of the bound exchange over a
// tls.Client that resumes sessions from cache (which BoundDialer never
// does), and returns the TLS state and the exchange's outcome.
func resumingClient(t *testing.T, addr string, cache tls.ClientSessionCache, opts *atls.BoundOptions) (tls.ConnectionState, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	defer raw.Close()
	require.NoError(t, raw.SetDeadline(time.Now().Add(20*time.Second)))
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, ClientSessionCache: cache})
	require.NoError(t, c.Handshake())
	cs := c.ConnectionState()
	sess := &atls.BoundSession{Options: opts, Role: attest.RoleClient, State: cs}
	_, err = sess.Exchange(context.Background(), c)
	return cs, err
}

// A client with session resumption on, against a BoundListener: the
// listener issues no ticket, so the second connection is a full handshake
// and the exchange succeeds on it.
func TestBoundListenerIssuesNoTicket(t *testing.T) {
	f := atlstest.Get(t)
	p := newBoundPairForResume(t, f)
	cache := &countingCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	opts := &atls.BoundOptions{Verifier: f.Verifier(t, f.ServerMeasurement)}
	for range 2 {
		cs, err := resumingClient(t, p, cache, opts)
		require.NoError(t, err)
		require.False(t, cs.DidResume)
	}
	require.Zero(t, cache.puts, "the bound listener sent a session ticket")
}

// A server that would resume (its configuration, passed to
// BoundServerHandshake, has tickets on) and a client that resumes: the
// second connection really resumes, and both sides refuse it with
// bound.resumed before any frame is exchanged.
func TestBoundServerRefusesRealResumption(t *testing.T) {
	f := atlstest.Get(t)
	cert := atlstest.NewCA(t).Issue(t, "srv", x509.ExtKeyUsageServerAuth)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	// A fixed ticket key, so that the per-connection clones of cfg all
	// accept the ticket.
	cfg.SetSessionTicketKeys([][32]byte{{'r', 'e', 's', 'u', 'm', 'e'}})
	srvOpts := &atls.BoundOptions{Attester: f.ServerAttester}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	results := make(chan error, 4)
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer raw.Close()
				bc, err := atls.BoundServerHandshake(context.Background(), raw, cfg, srvOpts)
				results <- err
				if err == nil {
					// Let the client finish reading before closing.
					_, _ = bc.Read(make([]byte, 1))
				}
			}()
		}
	}()
	cache := &countingCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	cliOpts := &atls.BoundOptions{Verifier: f.Verifier(t, f.ServerMeasurement)}

	cs, err := resumingClient(t, ln.Addr().String(), cache, cliOpts)
	require.NoError(t, err)
	require.False(t, cs.DidResume)
	require.NoError(t, <-results)
	require.Equal(t, 1, cache.puts, "the client got a ticket while reading the server's frame")

	cs, err = resumingClient(t, ln.Addr().String(), cache, cliOpts)
	require.True(t, cs.DidResume, "the second connection did not resume: the test proves nothing")
	atlstest.RequireCheck(t, err, attest.ErrBinding, "bound.resumed")
	atlstest.RequireCheck(t, <-results, attest.ErrBinding, "bound.resumed")
}

func newBoundPairForResume(t *testing.T, f *atlstest.Fixture) string {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln, err := atls.NewBoundListener(inner, atls.BoundListenerOptions{Bound: atls.BoundOptions{Attester: f.ServerAttester}})
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Read(make([]byte, 1))
			}()
		}
	}()
	return ln.Addr().String()
}

// countingCache counts the tickets stored. Each test uses it from one
// goroutine (crypto/tls calls Put from the reading goroutine).
type countingCache struct {
	tls.ClientSessionCache
	puts int
}

func (c *countingCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.puts++
	}
	c.ClientSessionCache.Put(key, cs)
}
