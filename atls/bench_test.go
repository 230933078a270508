package atls_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
	"github.com/confidential-go/atls/internal/atlstest"
)

// benchServer accepts connections on loopback and completes a server
// handshake on each, reporting errors on the returned channel.
func benchServer(b *testing.B, cfg *tls.Config) (addr string, errc chan error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	errc = make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s := tls.Server(c, cfg)
			errc <- s.Handshake()
			s.Close()
		}
	}()
	return ln.Addr().String(), errc
}

// clientHandshake dials addr and completes a client handshake.
func clientHandshake(b *testing.B, addr string, cfg *tls.Config, errc chan error) *tls.Conn {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	c.Close()
	return c
}

// BenchmarkHandshake compares, side by side, a plain TLS 1.3 handshake
// over loopback with a self-signed ECDSA P-256 certificate against
// attested handshakes with the simulator (same key type):
//
//   - nonce: a fresh certificate per handshake from a batching server
//     (one client, so every batch holds one handshake);
//   - nonce-unbatched: the same with DisableBatching;
//   - static-cached: the warm path, a static certificate this client
//     verified before (a hash and a cache lookup);
//   - static-uncached: the same certificate appraised every time.
//
// The simulator signs reports in software (ECDSA P-384), so the nonce
// cases include that signing, which real hardware replaces by a firmware
// call.
func BenchmarkHandshake(b *testing.B) {
	f := atlstest.Get(b)
	plainCert := atlstest.NewCA(b).Issue(b, "plain", x509.ExtKeyUsageServerAuth)
	b.Run("plain", func(b *testing.B) {
		scfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{plainCert}, SessionTicketsDisabled: true}
		ccfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
		addr, errc := benchServer(b, scfg)
		cpu := cpuTime()
		for b.Loop() {
			clientHandshake(b, addr, ccfg, errc)
		}
		reportCPU(b, cpu)
		b.ReportMetric(float64(len(plainCert.Certificate[0])), "cert-bytes")
	})
	// What a user compares against: a CA-issued certificate verified
	// against a root pool (chain building, one P-256 signature check and
	// the host name) instead of InsecureSkipVerify.
	b.Run("plain-ca", func(b *testing.B) {
		ca := atlstest.NewCA(b)
		cert := ca.Issue(b, "plain.test", x509.ExtKeyUsageServerAuth)
		scfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true}
		ccfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.Pool, ServerName: "plain.test"}
		addr, errc := benchServer(b, scfg)
		cpu := cpuTime()
		for b.Loop() {
			clientHandshake(b, addr, ccfg, errc)
		}
		reportCPU(b, cpu)
		b.ReportMetric(float64(len(cert.Certificate[0])), "cert-bytes")
	})

	bench := func(name string, so atls.ServerOptions, co atls.ClientOptions) {
		b.Run(name, func(b *testing.B) {
			so.Attester = f.ServerAttester
			co.Verifier = f.Verifier(b, f.ServerMeasurement)
			srv := atlstest.NewServer(b, so)
			cli := atlstest.NewClient(b, co)
			addr, errc := benchServer(b, srv.TLSConfig())
			var size int
			cpu := cpuTime()
			for b.Loop() {
				ccfg, err := cli.TLSConfig()
				if err != nil {
					b.Fatal(err)
				}
				c := clientHandshake(b, addr, ccfg, errc)
				size = len(c.ConnectionState().PeerCertificates[0].Raw)
			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(size), "cert-bytes")
		})
	}
	bench("nonce", atls.ServerOptions{}, atls.ClientOptions{})
	bench("nonce-unbatched", atls.ServerOptions{DisableBatching: true}, atls.ClientOptions{})
	bench("static-cached", atls.ServerOptions{Freshness: atls.FreshnessStatic}, atls.ClientOptions{AcceptStatic: true})
	bench("static-uncached", atls.ServerOptions{Freshness: atls.FreshnessStatic}, atls.ClientOptions{AcceptStatic: true, CacheSize: -1})
}

// BenchmarkIssue measures making one attested certificate per key type.
func BenchmarkIssue(b *testing.B) {
	f := atlstest.Get(b)
	for _, kt := range []certgen.KeyType{certgen.ECDSAP256, certgen.ECDSAP384, certgen.Ed25519} {
		b.Run(kt.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := certgen.Issue(b.Context(), certgen.Request{Attester: f.ServerAttester, Role: attest.RoleServer, Mode: attest.ModeStatic, KeyType: kt}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
