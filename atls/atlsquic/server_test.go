package atlsquic_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
)

// slowAttester counts its calls and, like a secure processor, makes one
// report at a time, each taking delay.
type slowAttester struct {
	inner attest.Attester
	delay time.Duration
	calls atomic.Int64
	mu    sync.Mutex
}

func (s *slowAttester) Attest(ctx context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.inner.Attest(ctx, rd)
}

// recordFirstFlight returns the datagrams a client sends to a silent
// server before it hears anything: its first flight, ClientHello and
// nonce included.
func recordFirstFlight(t *testing.T, cli *atls.Client, base *tls.Config) [][]byte {
	t.Helper()
	rec, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer rec.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c, err := atlsquic.DialAddr(ctx, rec.LocalAddr().String(), cli, base, nil); err == nil {
			c.CloseWithError(0, "")
		}
	}()
	defer func() {
		cancel()
		<-done
	}()
	var out [][]byte
	buf := make([]byte, 2048)
	_ = rec.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, _, err := rec.ReadFrom(buf)
		if err != nil {
			break
		}
		out = append(out, append([]byte(nil), buf[:n]...))
		// The rest of the flight follows at once; a retransmission
		// would come only after a probe timeout.
		_ = rec.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	}
	require.NotEmpty(t, out)
	return out
}

// Finding 3 (issue 13): over QUIC a burst of recorded first flights, each
// from its own socket closed at once (what a spoofed source looks like to
// the server), costs no report: the listener validates source addresses
// before the handshake. A genuine client still gets through.
func TestSpoofedFirstFlightsCostNoReportFinding3(t *testing.T) {
	f := atlstest.Get(t)
	att := &slowAttester{inner: f.ServerAttester}
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: att, DisableBatching: true})
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement)})
	base := &tls.Config{NextProtos: []string{"atls-test"}}

	const flood = 10
	flights := make([][][]byte, flood)
	for i := range flights {
		flights[i] = recordFirstFlight(t, cli, base)
	}

	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer pc.Close()
	ln, err := atlsquic.Listen(pc, srv, base, nil)
	require.NoError(t, err)
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			_ = c.CloseWithError(0, "")
		}
	}()

	for _, flight := range flights {
		s, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		for _, d := range flight {
			_, err := s.WriteTo(d, pc.LocalAddr())
			require.NoError(t, err)
		}
		require.NoError(t, s.Close())
	}

	conn, err := atlsquic.DialAddr(ctx, pc.LocalAddr().String(), cli, base, nil)
	require.NoError(t, err, "a client that receives at its address is served")
	_, ok := cli.PeerClaims(conn.ConnectionState().TLS)
	require.True(t, ok)
	_ = conn.CloseWithError(0, "")
	// Give any handshake started by the flood time to reach the attester
	// (without validation each of them does, within milliseconds).
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, int64(1), att.calls.Load(), "only the genuine client cost a report")
}

// Finding 9 (issue 13): over QUIC an overloaded nonce server delivers the
// static fallback before the client's handshake times out. More clients
// than a serial attester can serve within the handshake timeout: the ones
// it cannot serve in time get the static certificate, none fails.
func TestOverloadedQUICServerFallsBackFinding9(t *testing.T) {
	if testing.Short() {
		t.Skip("several seconds of load")
	}
	f := atlstest.Get(t)
	att := &slowAttester{inner: f.ServerAttester, delay: 300 * time.Millisecond}
	// Every client waits for the slot (no bound on waiters), so that
	// the fallback comes from the wait bound.
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: att, StaticFallback: true, DisableBatching: true,
		MaxConcurrentAttestations: 1, MaxWaitingAttestations: -1, MaxAttestationsPerSource: -1})
	defer srv.Close()
	url := serveHTTP3(t, atlsquic.NewHTTP3Server(srv, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), AcceptStatic: true})

	// 25 reports of 300 ms take 7.5 s, beyond quic-go's default handshake
	// timeout of 5 s.
	const clients = 25
	var nonce, static atomic.Int64
	errs := make(chan error, clients)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range clients {
		go func() {
			tr := atlsquic.HTTP3Transport(cli, nil)
			defer tr.Close()
			resp, body, err := get(ctx, &http.Client{Transport: tr}, url)
			if err == nil && body != "ok" {
				err = io.ErrUnexpectedEOF
			}
			if err == nil {
				ev, eerr := attest.FromCertificate(resp.TLS.PeerCertificates[0])
				if eerr != nil {
					err = eerr
				} else if p, perr := ev.Binding(); perr != nil {
					err = perr
				} else if p.Mode == attest.ModeStatic {
					static.Add(1)
				} else {
					nonce.Add(1)
				}
			}
			errs <- err
		}()
	}
	for range clients {
		require.NoError(t, <-errs)
	}
	require.Positive(t, nonce.Load(), "some clients got a nonce-bound certificate")
	require.Positive(t, static.Load(), "the others got the static fallback")
	require.Equal(t, int64(clients), nonce.Load()+static.Load())
}
