package atlsquic_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/internal/atlstest"
)

// skewClock is a clock that tests move forward.
type skewClock struct{ skew atomic.Int64 }

func (c *skewClock) now() time.Time          { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *skewClock) advance(d time.Duration) { c.skew.Add(int64(d)) }

// A long-lived HTTP/3 connection keeps its client's claims past the
// client certificate's NotAfter (atls.ClaimsFromContext in the handler),
// where RequestClaims stops answering; a request in flight when the
// connection closes sees them go (issue 14).
func TestHTTP3ClaimsOutliveCertificate(t *testing.T) {
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clock := &skewClock{}
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement), Now: clock.now})
	type seen struct {
		ctx    context.Context
		claims *atls.Claims
		lookup bool
	}
	seenc := make(chan seen, 4)
	afterClose := make(chan bool, 1)
	h3 := atlsquic.NewHTTP3Server(srv, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := atls.ClaimsFromContext(r.Context())
		_, lookup := srv.RequestClaims(r)
		seenc <- seen{r.Context(), c, lookup}
		if r.URL.Path == "/hold" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			_, ok := atls.ClaimsFromContext(r.Context())
			afterClose <- ok
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer pc.Close()
	go func() { _ = h3.Serve(pc) }()
	defer h3.Close()
	url := "https://" + pc.LocalAddr().String()

	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
	tr := atlsquic.HTTP3Transport(cli, nil)
	defer tr.Close()
	hc := &http.Client{Transport: tr}

	resp, _, err := get(ctx, hc, url+"/")
	require.NoError(t, err)
	require.Equal(t, "HTTP/3.0", resp.Proto)
	first := <-seenc
	require.NotNil(t, first.claims)
	require.True(t, first.lookup)
	require.Equal(t, f.ClientMeasurement[:], []byte(first.claims.SNP.Measurement))

	clock.advance(time.Until(first.claims.NotAfter) + time.Hour)
	_, _, err = get(ctx, hc, url+"/")
	require.NoError(t, err)
	second := <-seenc
	require.False(t, second.lookup, "RequestClaims expires with the certificate")
	require.NotNil(t, second.claims, "the connection's claims must outlive its certificate")
	require.Equal(t, first.claims.EvidenceDigest, second.claims.EvidenceDigest, "same connection, same claims")

	go func() { _, _, _ = get(ctx, hc, url+"/hold") }()
	held := <-seenc
	require.NotNil(t, held.claims)
	require.Equal(t, first.claims.EvidenceDigest, held.claims.EvidenceDigest, "still the first connection")
	require.NoError(t, h3.Close())
	select {
	case ok := <-afterClose:
		require.False(t, ok, "the claims outlived the connection")
	case <-time.After(20 * time.Second):
		t.Fatal("the held request did not end with its connection")
	}
}

// ConnClaims gives the claims of a raw QUIC connection for its whole life,
// past the certificate's NotAfter, and nothing once it is closed.
func TestConnClaimsRawQUIC(t *testing.T) {
	f := atlstest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clock := &skewClock{}
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement), Now: clock.now})
	base := &tls.Config{NextProtos: []string{"my-proto"}}
	ln, err := atlsquic.ListenAddr("127.0.0.1:0", srv, base, nil)
	require.NoError(t, err)
	defer ln.Close()
	cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})

	dialed := make(chan error, 1)
	go func() {
		c, err := atlsquic.DialAddr(ctx, ln.Addr().String(), cli, base, nil)
		if err == nil {
			<-c.Context().Done() // held open until the server closes it
		}
		dialed <- err
	}()
	conn, err := ln.Accept(ctx)
	require.NoError(t, err)
	claims, ok := atlsquic.ConnClaims(conn)
	require.True(t, ok)
	require.Equal(t, f.ClientMeasurement[:], []byte(claims.SNP.Measurement))
	_, ok = srv.PeerClaims(conn.ConnectionState().TLS)
	require.True(t, ok)

	clock.advance(time.Until(claims.NotAfter) + time.Hour)
	_, ok = srv.PeerClaims(conn.ConnectionState().TLS)
	require.False(t, ok, "PeerClaims expires with the certificate")
	again, ok := atlsquic.ConnClaims(conn)
	require.True(t, ok, "the connection's claims must outlive its certificate")
	require.Equal(t, claims.EvidenceDigest, again.EvidenceDigest)

	require.NoError(t, conn.CloseWithError(0, "done"))
	_, ok = atlsquic.ConnClaims(conn)
	require.False(t, ok)
	require.NoError(t, <-dialed)
	_, ok = atlsquic.ConnClaims(nil)
	require.False(t, ok)
}
