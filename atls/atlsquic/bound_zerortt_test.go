package atlsquic_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// A client that really attempts 0-RTT against a bound QUIC server is
// refused and its early data never reaches the application.
//
// The client gets a ticket that allows 0-RTT from a plain QUIC server
// with the same certificate, application protocol and ticket key as the
// bound server (a bound server issues no ticket itself), then dials the
// bound server with quic-go's DialAddrEarly and writes application bytes
// in 0-RTT, on the stream that would be the attestation stream. The
// bound server, even configured with Allow0RTT (which it overrides),
// refuses the ticket: the handshake is a full one, the client's early
// stream fails with quic.Err0RTTRejected, and without an attestation
// stream the server refuses the connection (bound.missing) and hands
// nothing to the application.
func TestBoundQUICZeroRTTRefused(t *testing.T) {
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cert := atlstest.NewCA(t).Issue(t, "attested", x509.ExtKeyUsageServerAuth)
	serverTLS := func() *tls.Config {
		c := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{boundProto}, MinVersion: tls.VersionTLS13}
		c.SetSessionTicketKeys([][32]byte{{'b', 'o', 'u', 'n', 'd', '0', 'r', 't', 't'}})
		return c
	}

	// The ticket source, 0-RTT on. It records what it reads early.
	source, err := quic.ListenAddrEarly("127.0.0.1:0", serverTLS(), &quic.Config{Allow0RTT: true})
	require.NoError(t, err)
	t.Cleanup(func() { source.Close() })
	sourceEarly := make(chan string, 4)
	go func() {
		for {
			c, err := source.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				st, err := c.AcceptStream(context.Background())
				if err != nil {
					return
				}
				b, _ := io.ReadAll(io.LimitReader(st, 64))
				if c.ConnectionState().Used0RTT {
					sourceEarly <- string(b)
				}
			}()
		}
	}()

	// The bound server. Whatever reaches its application is recorded.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	var (
		mu       sync.Mutex
		rejected []error
		appData  = make(chan string, 4)
		accepted = make(chan *atlsquic.BoundConn, 4)
	)
	ln, err := atlsquic.ListenBound(pc, atlsquic.BoundListenerOptions{
		TLS: serverTLS(), QUIC: &quic.Config{Allow0RTT: true},
		// A short exchange timeout: the refusal below waits for it.
		Bound: atls.BoundOptions{Attester: f.ServerAttester, Timeout: 3 * time.Second},
		OnReject: func(_ net.Addr, err error) {
			mu.Lock()
			rejected = append(rejected, err)
			mu.Unlock()
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			accepted <- c
			go func() {
				for {
					st, err := c.AcceptStream(context.Background())
					if err != nil {
						return
					}
					b, _ := io.ReadAll(io.LimitReader(st, 64))
					appData <- string(b)
				}
			}()
		}
	}()

	cache := &storeSignal{ClientSessionCache: tls.NewLRUClientSessionCache(4), stored: make(chan struct{}, 1)}
	dial := func(addr string, qc *quic.Config) *quic.Conn {
		cfg := &tls.Config{ServerName: "attested", InsecureSkipVerify: true, NextProtos: []string{boundProto}, ClientSessionCache: cache}
		c, err := quic.DialAddrEarly(ctx, addr, cfg, qc)
		require.NoError(t, err)
		return c
	}
	sendEarly := func(c *quic.Conn) *quic.Stream {
		st, err := c.OpenStream()
		require.NoError(t, err)
		_, err = st.Write([]byte("early application data"))
		require.NoError(t, err)
		require.NoError(t, st.Close())
		return st
	}

	// A full handshake with the source, for a ticket.
	c1 := dial(source.Addr().String(), nil)
	select {
	case <-cache.stored:
	case <-ctx.Done():
		t.Fatal("no session ticket")
	}
	_ = c1.CloseWithError(0, "")

	// Control: with that ticket the source accepts 0-RTT and reads the
	// early data, so the ticket is good for 0-RTT.
	var control zeroRTTCounter
	c2 := dial(source.Addr().String(), control.config())
	sendEarly(c2)
	select {
	case got := <-sourceEarly:
		require.Equal(t, "early application data", got)
	case <-ctx.Done():
		t.Fatal("the source did not accept 0-RTT: the test proves nothing")
	}
	require.Positive(t, control.sent.Load())
	// Wait for c2's own ticket before closing it, so that the cache holds
	// a fresh one for the next attempt.
	select {
	case <-cache.stored:
	case <-ctx.Done():
		t.Fatal("no second session ticket")
	}
	_ = c2.CloseWithError(0, "")

	// The attempt against the bound server.
	var counter zeroRTTCounter
	c3 := dial(ln.Addr().String(), counter.config())
	defer c3.CloseWithError(0, "")
	st := sendEarly(c3)
	select {
	case <-c3.HandshakeComplete():
	case <-ctx.Done():
		t.Fatal("no handshake")
	}
	require.Positive(t, counter.sent.Load(), "the client sent no 0-RTT packet: the test proves nothing")
	require.False(t, c3.ConnectionState().Used0RTT, "the bound server accepted 0-RTT")
	_, err = st.Read(make([]byte, 1))
	require.ErrorIs(t, err, quic.Err0RTTRejected)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(rejected) > 0
	}, 30*time.Second, 20*time.Millisecond)
	mu.Lock()
	atlstest.RequireCheck(t, rejected[0], attest.ErrNotAttested, "bound.missing")
	mu.Unlock()
	select {
	case c := <-accepted:
		t.Fatalf("the application got the connection from %v", c.RemoteAddr())
	case b := <-appData:
		t.Fatalf("the application read %q", b)
	default:
	}
	// The server closed the connection with the bound error code naming
	// the check.
	<-c3.Context().Done()
	var aerr *quic.ApplicationError
	require.True(t, errors.As(context.Cause(c3.Context()), &aerr), "closed by %v", context.Cause(c3.Context()))
	require.True(t, aerr.Remote)
	require.Equal(t, atlsquic.BoundErrorCode, aerr.ErrorCode)
	require.Equal(t, "bound.missing", aerr.ErrorMessage)
}
