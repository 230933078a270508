package atlsquic_test

import (
	"crypto/sha512"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// An attested HTTP/3 server and a client that verifies it, on loopback,
// with the simulator standing in for SEV-SNP hardware. On a real guest the
// attester is guest.NewAttester and the client trusts snp.AMDRoots().
func Example() {
	chain, err := snp.NewSimChain("Milan") // RSA-4096: takes a moment
	if err != nil {
		panic(err)
	}
	image := sha512.Sum384([]byte("my service image"))
	vm, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: image})
	if err != nil {
		panic(err)
	}

	// Server side, inside the VM: ALPN h3, 0-RTT off. Start it with Serve
	// or ListenAndServe, never ListenAndServeTLS (which ignores TLSConfig).
	srv, err := atls.NewServer(atls.ServerOptions{Attester: vm})
	if err != nil {
		panic(err)
	}
	h3 := atlsquic.NewHTTP3Server(srv, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello over "+r.Proto)
	}))
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	defer pc.Close() // Serve does not close it
	// The handshake is bounded by the QUIC handshake idle timeout (10 s,
	// see atlsquic.DefaultHandshakeIdleTimeout); bound idle connections too.
	h3.IdleTimeout = 2 * time.Minute
	go h3.Serve(pc)
	defer h3.Close()

	// Client side: pin the image, trust the simulated root explicitly.
	policy := snp.NewPolicy()
	policy.Measurements = []attest.HexBytes{image[:]}
	verifier, err := snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: policy})
	if err != nil {
		panic(err)
	}
	cli, err := atls.NewClient(atls.ClientOptions{Verifier: verifier})
	if err != nil {
		panic(err)
	}
	tr := atlsquic.HTTP3Transport(cli, nil) // a fresh nonce per connection
	defer tr.Close()
	hc := &http.Client{Transport: tr}
	resp, err := hc.Get("https://" + pc.LocalAddr().String() + "/")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	claims, _ := cli.ResponseClaims(resp)
	fmt.Println(resp.Proto)
	fmt.Println(string(body))
	fmt.Println(claims.Role, claims.Mode, "simulated:", claims.Simulated)
	fmt.Println("measurement pinned:", claims.SNP.Measurement.String() == attest.HexBytes(image[:]).String())
	// Output:
	// HTTP/3.0
	// hello over HTTP/3.0
	// server batch simulated: true
	// measurement pinned: true
}
