// Command http3 runs an attested HTTP/3 server and a client that verifies
// it, both in this process on loopback, with the SEV-SNP simulator
// standing in for the hardware:
//
//	go run ./examples/http3
//
// The attestation is mutual: the server's handler reads the client's
// verified claims from the request, and the client reads the server's from
// the response. Everything is SIMULATED: the AMD root is a simulated one
// that this example trusts explicitly. On a real guest the attesters come
// from guest.NewAttester and the verifiers trust snp.AMDRoots().
package main

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "http3 example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	fmt.Fprintln(w, "Creating a simulated AMD key hierarchy (RSA-4096, a few seconds)...")
	chain, err := snp.NewSimChain("Milan")
	if err != nil {
		return err
	}
	serverImage := sha512.Sum384([]byte("example http3 server image"))
	clientImage := sha512.Sum384([]byte("example http3 client image"))
	serverVM, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: serverImage})
	if err != nil {
		return err
	}
	clientVM, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: clientImage})
	if err != nil {
		return err
	}
	verifierFor := func(m [48]byte) (*snp.Verifier, error) {
		p := snp.NewPolicy()
		p.Measurements = []attest.HexBytes{m[:]}
		return snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: p})
	}
	serverVerifier, err := verifierFor(serverImage)
	if err != nil {
		return err
	}
	clientVerifier, err := verifierFor(clientImage)
	if err != nil {
		return err
	}

	// Server: attested, and verifying its clients.
	srv, err := atls.NewServer(atls.ServerOptions{Attester: serverVM, ClientVerifier: clientVerifier})
	if err != nil {
		return err
	}
	h3 := atlsquic.NewHTTP3Server(srv, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := srv.RequestClaims(r)
		if !ok {
			http.Error(w, "no verified client", http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, "hello over %s, client VM %.16s…", r.Proto, c.SNP.Measurement.String())
	}))
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer pc.Close()
	served := make(chan error, 1)
	// The QUIC handshake is bounded by its idle timeout (10 s in
	// atlsquic); bound idle connections too.
	h3.IdleTimeout = 2 * time.Minute
	// Serve (or ListenAndServe), never ListenAndServeTLS: it would ignore
	// the attested TLS configuration.
	go func() { served <- h3.Serve(pc) }()
	defer func() {
		_ = h3.Close()
		<-served
	}()

	// Client: verifying the server, and attested itself.
	cli, err := atls.NewClient(atls.ClientOptions{Verifier: serverVerifier, Attester: clientVM})
	if err != nil {
		return err
	}
	tr := atlsquic.HTTP3Transport(cli, nil)
	defer tr.Close()
	hc := &http.Client{Transport: tr}

	url := "https://" + pc.LocalAddr().String() + "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		var ce *atls.CheckError
		if errors.As(err, &ce) {
			return fmt.Errorf("attestation failed (check %s): %w", ce.Check, err)
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %q", url, resp.Status, body)
	}
	fmt.Fprintf(w, "GET %s -> %s %s in %v (QUIC handshake, attestation of both sides, request)\n",
		url, resp.Proto, resp.Status, time.Since(start).Round(100*time.Microsecond))
	fmt.Fprintf(w, "body: %s\n", body)

	claims, ok := cli.ResponseClaims(resp)
	if !ok {
		return errors.New("no verified claims for the server")
	}
	platform := claims.Platform
	if claims.Simulated {
		platform += " (SIMULATED: not real hardware)"
	}
	fmt.Fprintln(w, "The client verified the server:")
	fmt.Fprintf(w, "  platform     %s\n", platform)
	fmt.Fprintf(w, "  role / mode  %s / %s\n", claims.Role, claims.Mode)
	fmt.Fprintf(w, "  product      %s, signed by %s\n", claims.SNP.Product, claims.SNP.Signer)
	fmt.Fprintf(w, "  measurement  %s\n", claims.SNP.Measurement)
	fmt.Fprintf(w, "  reported tcb 0x%016x\n", claims.SNP.ReportedTCB)
	fmt.Fprintf(w, "  certificate  %s .. %s\n", claims.NotBefore.UTC().Format(time.RFC3339), claims.NotAfter.UTC().Format(time.RFC3339))
	return nil
}
