package atls_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
)

// countingConn counts the bytes that cross a connection, both ways.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// BenchmarkBoundSetup compares connection setup, one-way attestation of
// the server over loopback TCP with the simulator, until the client may
// send application data: nonce mode (the evidence in the certificate)
// against bound mode (an ephemeral certificate, then the evidence frame),
// with and without a Batcher in front of the bound server's attester. It
// reports the bytes that crossed the connection (both directions) per
// setup.
func BenchmarkBoundSetup(b *testing.B) {
	f := atlstest.Get(b)
	dialCounted := func(b *testing.B, addr string, wire *atomic.Int64) net.Conn {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		return countingConn{Conn: raw, n: wire}
	}
	b.Run("nonce", func(b *testing.B) {
		srv := atlstest.NewServer(b, atls.ServerOptions{Attester: f.ServerAttester})
		cli := atlstest.NewClient(b, atls.ClientOptions{Verifier: f.Verifier(b, f.ServerMeasurement)})
		addr, errc := benchServer(b, srv.TLSConfig())
		var wire atomic.Int64
		for b.Loop() {
			cfg, err := cli.TLSConfig()
			if err != nil {
				b.Fatal(err)
			}
			c := tls.Client(dialCounted(b, addr, &wire), cfg)
			if err := c.Handshake(); err != nil {
				b.Fatal(err)
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
		b.ReportMetric(float64(wire.Load())/float64(b.N), "wire-bytes/op")
	})
	bound := func(name string, att attest.Attester) {
		b.Run(name, func(b *testing.B) {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ln, err := atls.NewBoundListener(inner, atls.BoundListenerOptions{Bound: atls.BoundOptions{Attester: att}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			d, err := atls.NewBoundDialer(atls.BoundDialerOptions{TLS: &tls.Config{InsecureSkipVerify: true},
				Bound: atls.BoundOptions{Verifier: f.Verifier(b, f.ServerMeasurement)}})
			if err != nil {
				b.Fatal(err)
			}
			var wire atomic.Int64
			for b.Loop() {
				raw := dialCounted(b, inner.Addr().String(), &wire)
				c, err := d.Client(context.Background(), raw, "")
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			b.ReportMetric(float64(wire.Load())/float64(b.N), "wire-bytes/op")
		})
	}
	bound("bound", f.ServerAttester)
	batcher, err := attest.NewBatcher(f.ServerAttester, attest.BatcherOptions{})
	if err != nil {
		b.Fatal(err)
	}
	bound("bound-batched", batcher)
}
