// Command https runs an attested HTTPS server and a client that verifies
// it, with net/http, on loopback, using the SEV-SNP simulator:
//
//	go run ./examples/https
//
// The server is what runs inside a confidential VM. atls.Server gives
// every TLS connection a fresh certificate whose extension carries an
// attestation report bound to the certificate key and to the client's
// nonce. The client is an ordinary http.Client whose Transport sends that
// nonce and checks the server's evidence during the handshake, against
// the AMD roots and a policy, before a single byte of the request is sent.
//
// The second part shows a client that cannot send a nonce (curl, a
// browser, any plain TLS stack): with StaticFallback the server gives it
// a static-mode certificate, which can be saved and verified offline with
// atls.VerifyCertificate.
//
// On real hardware, only the platform changes: the server uses
// guest.NewAttester(guest.AttesterOptions{}) instead of the simulator, and
// the client trusts snp.AMDRoots() instead of the simulated chain's roots
// (and a policy file, see `atls policy init`).
package main

import (
	"context"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/snp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "https:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer) error {
	out := &syncWriter{w: w}

	// The platform. A simulated AMD key hierarchy (two RSA-4096 keys:
	// this takes a few seconds) and a simulated VM running our image.
	fmt.Fprintln(out, "Creating a simulated AMD chain and VM (SIMULATED: not real hardware)...")
	chain, err := snp.NewSimChain("Milan")
	if err != nil {
		return err
	}
	image := sha512.Sum384([]byte("example https service v1"))
	vm, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: image})
	if err != nil {
		return err
	}

	// Server side, inside the VM.
	srv, err := atls.NewServer(atls.ServerOptions{
		Attester:       vm,
		StaticFallback: true, // for clients that send no nonce
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from inside the confidential VM")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: mux, TLSConfig: srv.TLSConfig(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	defer hs.Close()
	url := "https://" + ln.Addr().String() + "/hello"
	fmt.Fprintf(out, "Attested HTTPS server listening on %s\n", url)

	// Client side, anywhere. The policy is what a client trusts about
	// the server beyond "genuine AMD hardware": here, its image.
	policy, err := snp.ParsePolicy(fmt.Appendf(nil, `{"measurements": ["%x"]}`, image))
	if err != nil {
		return err
	}
	verifier, err := snp.NewVerifier(snp.VerifierOptions{
		Roots:  chain.Roots(), // real hardware: snp.AMDRoots()
		Policy: policy,
	})
	if err != nil {
		return err
	}
	cli, err := atls.NewClient(atls.ClientOptions{Verifier: verifier})
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: cli.Transport(), Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ce *atls.CheckError
		if errors.As(err, &ce) {
			return fmt.Errorf("the server failed check %q: %w", ce.Check, ce)
		}
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	claims, ok := cli.ResponseClaims(resp)
	if !ok {
		return errors.New("no verified claims for the response")
	}
	fmt.Fprintf(out, "\nGET %s -> %s: %s", url, resp.Status, body)
	fmt.Fprintln(out, "The client verified the server before sending the request:")
	printClaims(out, claims)

	// A client that cannot send a nonce: plain crypto/tls. It gets the
	// server's static certificate, which it (or anyone later) can verify
	// offline. A plain client must skip the usual PKI checks: the
	// certificate is self-signed, and its evidence is what identifies it.
	conn, err := (&tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	leaf := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
	conn.Close()
	offline, err := atls.VerifyCertificate(ctx, leaf, atls.VerifyCertificateOptions{
		Verifier:     verifier,
		AcceptStatic: true,
		MaxAge:       time.Hour,
	})
	if err != nil {
		return fmt.Errorf("verifying the static certificate: %w", err)
	}
	fmt.Fprintf(out, "\nA plain TLS client (no nonce) got a %s-mode certificate; verified offline:\n", offline.Mode)
	printClaims(out, offline)
	fmt.Fprintln(out, "(Offline verification proves the key was made in the attested VM; the TLS handshake")
	fmt.Fprintln(out, "is what proves the server holds it.)")
	return nil
}

func printClaims(w io.Writer, c *atls.Claims) {
	platform := c.Platform
	if c.Simulated {
		platform += " (SIMULATED)"
	}
	fmt.Fprintf(w, "  platform     %s\n", platform)
	fmt.Fprintf(w, "  freshness    %s\n", c.Mode)
	fmt.Fprintf(w, "  measurement  %s\n", c.SNP.Measurement)
	fmt.Fprintf(w, "  product      %s, TCB 0x%016x, chip %.16s…\n", c.SNP.Product, c.SNP.ReportedTCB, c.SNP.ChipID)
}

// syncWriter serializes writes from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
