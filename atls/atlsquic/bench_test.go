package atlsquic_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/internal/atlstest"
)

const benchProto = "bench/1"

// benchListener accepts connections and hands each back once its
// handshake is complete.
func benchListener(b *testing.B, ln *quic.Listener) <-chan *quic.Conn {
	accepted := make(chan *quic.Conn)
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				close(accepted)
				return
			}
			accepted <- conn
		}
	}()
	b.Cleanup(func() { _ = ln.Close() })
	return accepted
}

// BenchmarkQUICHandshake compares, side by side, a plain QUIC handshake
// with a self-signed ECDSA P-256 certificate (client: InsecureSkipVerify)
// against attested QUIC handshakes with the simulator (same key type).
// One iteration is one connection over loopback, from the client's dial to
// the server's Accept, on one client and one server UDP socket. The
// simulator signs reports in software (ECDSA P-384), so "nonce" includes
// that signing, which real hardware replaces by a firmware call.
func BenchmarkQUICHandshake(b *testing.B) {
	f := atlstest.Get(b)
	ctx := context.Background()
	clientTransport := func(b *testing.B) *quic.Transport {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		tr := &quic.Transport{Conn: pc}
		b.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	serverSocket := func(b *testing.B) net.PacketConn {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = pc.Close() })
		return pc
	}
	finish := func(b *testing.B, conn *quic.Conn, accepted <-chan *quic.Conn) int {
		select {
		case sc := <-accepted:
			_ = sc.CloseWithError(0, "")
		case <-time.After(10 * time.Second):
			b.Fatal("the server did not accept")
		}
		size := len(conn.ConnectionState().TLS.PeerCertificates[0].Raw)
		_ = conn.CloseWithError(0, "")
		return size
	}

	b.Run("plain", func(b *testing.B) {
		cert := selfSignedP256(b)
		pc := serverSocket(b)
		ln, err := quic.Listen(pc, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{benchProto}}, atlsquic.QUICConfig(nil))
		if err != nil {
			b.Fatal(err)
		}
		accepted := benchListener(b, ln)
		tr := clientTransport(b)
		ccfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{benchProto}}
		dial := func() int {
			conn, err := tr.Dial(ctx, pc.LocalAddr(), ccfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			return finish(b, conn, accepted)
		}
		measure(b, dial)
	})
	// What a user compares against: a CA-issued certificate verified
	// against a root pool instead of InsecureSkipVerify.
	b.Run("plain-ca", func(b *testing.B) {
		ca := atlstest.NewCA(b)
		cert := ca.Issue(b, "plain.test", x509.ExtKeyUsageServerAuth)
		pc := serverSocket(b)
		ln, err := quic.Listen(pc, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{benchProto}}, atlsquic.QUICConfig(nil))
		if err != nil {
			b.Fatal(err)
		}
		accepted := benchListener(b, ln)
		tr := clientTransport(b)
		ccfg := &tls.Config{RootCAs: ca.Pool, ServerName: "plain.test", NextProtos: []string{benchProto}}
		dial := func() int {
			conn, err := tr.Dial(ctx, pc.LocalAddr(), ccfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			return finish(b, conn, accepted)
		}
		measure(b, dial)
	})

	bench := func(name string, so atls.ServerOptions, co atls.ClientOptions) {
		b.Run(name, func(b *testing.B) {
			so.Attester = f.ServerAttester
			co.Verifier = f.Verifier(b, f.ServerMeasurement)
			srv := atlstest.NewServer(b, so)
			cli := atlstest.NewClient(b, co)
			base := &tls.Config{NextProtos: []string{benchProto}}
			pc := serverSocket(b)
			ln, err := atlsquic.Listen(pc, srv, base, nil)
			if err != nil {
				b.Fatal(err)
			}
			accepted := benchListener(b, ln.Listener)
			tr := clientTransport(b)
			dial := func() int {
				conn, err := atlsquic.Dial(ctx, tr, pc.LocalAddr(), cli, base, nil)
				if err != nil {
					b.Fatal(err)
				}
				return finish(b, conn, accepted)
			}
			measure(b, dial)
		})
	}
	bench("nonce", atls.ServerOptions{}, atls.ClientOptions{})
	bench("nonce-unbatched", atls.ServerOptions{DisableBatching: true}, atls.ClientOptions{})
	bench("static-cached", atls.ServerOptions{Freshness: atls.FreshnessStatic}, atls.ClientOptions{AcceptStatic: true})
	bench("static-uncached", atls.ServerOptions{Freshness: atls.FreshnessStatic}, atls.ClientOptions{AcceptStatic: true, CacheSize: -1})
}

// measure times dial, which makes one connection and returns the size of
// the server's certificate. First it runs one untimed handshake
// (first-use costs: sockets, the verifier's VCEK chain cache, a static
// certificate) and collects the garbage of earlier work (the simulated
// chain's RSA keys), so that every variant is measured in the same steady
// state.
func measure(b *testing.B, dial func() int) {
	dial()
	runtime.GC()
	var size int
	for b.Loop() {
		size = dial()
	}
	b.ReportMetric(float64(size), "cert-bytes")
}

func selfSignedP256(b *testing.B) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "plain"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		b.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
