package atlsquic_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/internal/atlstest"
)

// BenchmarkBoundQUICSetup compares QUIC connection setup with one-way
// attestation of the server until both ends hold a usable connection:
// nonce mode (evidence in the certificate; atlsquic.ListenAddr, DialAddr)
// against bound mode (evidence on the attestation stream; ListenBound,
// DialBound). Both validate the client's address first (one Retry) and
// dial from a new UDP socket per connection.
func BenchmarkBoundQUICSetup(b *testing.B) {
	f := atlstest.Get(b)
	ctx := context.Background()
	b.Run("nonce", func(b *testing.B) {
		srv := atlstest.NewServer(b, atls.ServerOptions{Attester: f.ServerAttester})
		cli := atlstest.NewClient(b, atls.ClientOptions{Verifier: f.Verifier(b, f.ServerMeasurement)})
		ln, err := atlsquic.ListenAddr("127.0.0.1:0", srv, &tls.Config{NextProtos: []string{boundProto}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		for b.Loop() {
			c, err := atlsquic.DialAddr(ctx, ln.Addr().String(), cli, &tls.Config{NextProtos: []string{boundProto}}, nil)
			if err != nil {
				b.Fatal(err)
			}
			sc, err := ln.Accept(ctx)
			if err != nil {
				b.Fatal(err)
			}
			_ = sc.CloseWithError(0, "")
			_ = c.CloseWithError(0, "")
		}
	})
	b.Run("bound", func(b *testing.B) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { pc.Close() })
		ln, err := atlsquic.ListenBound(pc, atlsquic.BoundListenerOptions{TLS: &tls.Config{NextProtos: []string{boundProto}},
			Bound: atls.BoundOptions{Attester: f.ServerAttester}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		opts := atlsquic.BoundDialOptions{TLS: &tls.Config{NextProtos: []string{boundProto}, InsecureSkipVerify: true},
			Bound: atls.BoundOptions{Verifier: f.Verifier(b, f.ServerMeasurement)}}
		for b.Loop() {
			c, err := atlsquic.DialBound(ctx, ln.Addr().String(), opts)
			if err != nil {
				b.Fatal(err)
			}
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			sc, err := ln.Accept(actx)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			_ = sc.CloseWithError(0, "")
			_ = c.CloseWithError(0, "")
		}
	})
}
