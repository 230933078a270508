package atls_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
)

// pipeHandshake runs one handshake over an in-memory pipe, so that the
// numbers measure TLS and attestation, not the network stack.
func pipeHandshake(b *testing.B, serverCfg, clientCfg *tls.Config) *tls.Conn {
	sc, cc := net.Pipe()
	errc := make(chan error, 1)
	go func() {
		s := tls.Server(sc, serverCfg)
		errc <- s.Handshake()
		s.Close()
	}()
	c := tls.Client(cc, clientCfg)
	if err := c.Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	c.Close()
	return c
}

// BenchmarkHandshake compares, side by side, a plain TLS 1.3 handshake
// with a self-signed ECDSA P-256 certificate against attested handshakes
// with the simulator (same key type). The simulator signs reports in
// software (ECDSA P-384), so "nonce" includes that signing, which real
// hardware replaces by a firmware call.
func BenchmarkHandshake(b *testing.B) {
	f := getFixture(b)
	plainCert := newTestCA(b).issue(b, "plain", x509.ExtKeyUsageServerAuth)
	b.Run("plain", func(b *testing.B) {
		scfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{plainCert}}
		ccfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
		for b.Loop() {
			pipeHandshake(b, scfg, ccfg)
		}
		b.ReportMetric(float64(len(plainCert.Certificate[0])), "cert-bytes")
	})

	bench := func(name string, so atls.ServerOptions, co atls.ClientOptions) {
		b.Run(name, func(b *testing.B) {
			so.Attester = f.serverAtt
			co.Verifier = f.verifier(b, f.serverMeasure)
			srv, err := atls.NewServer(so)
			if err != nil {
				b.Fatal(err)
			}
			cli, err := atls.NewClient(co)
			if err != nil {
				b.Fatal(err)
			}
			scfg := srv.TLSConfig()
			var size int
			for b.Loop() {
				ccfg, err := cli.TLSConfig()
				if err != nil {
					b.Fatal(err)
				}
				c := pipeHandshake(b, scfg, ccfg)
				size = len(c.ConnectionState().PeerCertificates[0].Raw)
			}
			b.ReportMetric(float64(size), "cert-bytes")
		})
	}
	bench("nonce", atls.ServerOptions{}, atls.ClientOptions{})
	bench("static-cached", atls.ServerOptions{Freshness: atls.FreshnessStatic}, atls.ClientOptions{AcceptStatic: true})
	bench("static-uncached", atls.ServerOptions{Freshness: atls.FreshnessStatic}, atls.ClientOptions{AcceptStatic: true, CacheSize: -1})
}

// BenchmarkIssue measures making one attested certificate per key type.
func BenchmarkIssue(b *testing.B) {
	f := getFixture(b)
	for _, kt := range []certgen.KeyType{certgen.ECDSAP256, certgen.ECDSAP384, certgen.Ed25519} {
		b.Run(kt.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := certgen.Issue(b.Context(), certgen.Request{Attester: f.serverAtt, Role: attest.RoleServer, Mode: attest.ModeStatic, KeyType: kt}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
