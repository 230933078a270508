package atlsquic

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/quic-go/quic-go"
)

// ticketSignal is a session cache that says when a ticket was stored.
type ticketSignal struct {
	tls.ClientSessionCache
	stored chan struct{}
}

func (s *ticketSignal) Put(key string, cs *tls.ClientSessionState) {
	s.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case s.stored <- struct{}{}:
		default:
		}
	}
}

// The second line behind the refusal of tickets: on a connection that
// really completed with 0-RTT (against a server that allows it, as no
// bound listener does), the bound server's and client's exchanges refuse
// to start, with bound.early_data, before any frame is read.
func TestBoundEarlyDataCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srvTLS, err := atls.BoundTLSConfig(&tls.Config{NextProtos: []string{"atls-test"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	srvTLS.SessionTicketsDisabled = false
	srvTLS.SetSessionTicketKeys([][32]byte{{'e', 'a', 'r', 'l', 'y'}})
	ln, err := quic.ListenAddrEarly("127.0.0.1:0", srvTLS, &quic.Config{Allow0RTT: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := &BoundListener{opts: BoundListenerOptions{Bound: atls.BoundOptions{Verifier: refuseAll{}}}, leaf: srvTLS.Certificates[0].Certificate[0]}
	serverErr := make(chan error, 2)
	go func() {
		for {
			qc, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				select {
				case <-qc.HandshakeComplete():
				case <-ctx.Done():
					return
				}
				_, err := l.establish(qc)
				serverErr <- err
				_ = qc.CloseWithError(BoundErrorCode, attest.FailedCheck(err))
			}()
		}
	}()

	cache := &ticketSignal{ClientSessionCache: tls.NewLRUClientSessionCache(4), stored: make(chan struct{}, 1)}
	cliTLS := &tls.Config{ServerName: "atls-bound", InsecureSkipVerify: true, NextProtos: []string{"atls-test"}, ClientSessionCache: cache}
	first, err := quic.DialAddr(ctx, ln.Addr().String(), cliTLS, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-cache.stored:
	case <-ctx.Done():
		t.Fatal("no session ticket")
	}
	_ = first.CloseWithError(0, "")
	if err := <-serverErr; attest.FailedCheck(err) == "bound.early_data" {
		t.Fatalf("a full handshake refused as 0-RTT: %v", err)
	}

	qc, err := quic.DialAddrEarly(ctx, ln.Addr().String(), cliTLS, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	st, err := qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-qc.HandshakeComplete():
	case <-ctx.Done():
		t.Fatal("no handshake")
	}
	if !qc.ConnectionState().Used0RTT {
		t.Fatal("the connection did not use 0-RTT: the test proves nothing")
	}
	_, err = dialExchange(ctx, qc, &BoundDialOptions{Bound: atls.BoundOptions{Verifier: refuseAll{}}}, nil)
	if got := attest.FailedCheck(err); got != "bound.early_data" {
		t.Fatalf("client: got %v, want bound.early_data", err)
	}
	select {
	case err := <-serverErr:
		if got := attest.FailedCheck(err); got != "bound.early_data" {
			t.Fatalf("server: got %v, want bound.early_data", err)
		}
	case <-ctx.Done():
		t.Fatal("the server did not decide")
	}
}

// refuseAll is a verifier these checks never reach.
type refuseAll struct{}

func (refuseAll) Verify(context.Context, *attest.Evidence, [64]byte) (*attest.Claims, error) {
	return nil, attest.Fail(attest.ErrVerification, "verifier", "not expected here")
}
