// Command mutual runs two services that attest each other before they
// exchange requests, on loopback, using the SEV-SNP simulator:
//
//	go run ./examples/mutual
//
// "orders" and "payments" each run in their own confidential VM, each
// serve attested HTTPS, and each call the other. Every connection is
// mutually attested: the client checks the server's evidence (bound to
// the client's nonce) and presents its own, bound to a nonce the server
// sends in its CertificateRequest; the server checks it before the
// request is read. Each side's policy pins the other's image, so each
// knows exactly which code is on the other end, and its handler can ask
// (Server.RequestClaims) to authorize by measurement.
//
// A third VM running an unknown image, on the same (simulated) hardware,
// is refused by both.
//
// On real hardware: guest.NewAttester instead of the simulator, and
// snp.AMDRoots() instead of the simulated chain's roots.
package main

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mutual:", err)
		os.Exit(1)
	}
}

// service is one attested service: a server that admits only its peer's
// image, and a client that attests as itself and admits only its peer.
type service struct {
	name   string
	image  [48]byte
	vm     *snp.SimAttester
	srv    *atls.Server
	hc     *http.Client // for calling the peer
	cli    *atls.Client
	url    string
	names  map[string]string // measurement -> service name, for display
	closer func()
}

func run(ctx context.Context, w io.Writer) error {
	out := &syncWriter{w: w}
	fmt.Fprintln(out, "Creating a simulated AMD chain (SIMULATED: not real hardware)...")
	chain, err := snp.NewSimChain("Genoa")
	if err != nil {
		return err
	}
	images := map[string][48]byte{
		"orders":   sha512.Sum384([]byte("orders service v3")),
		"payments": sha512.Sum384([]byte("payments service v7")),
		"impostor": sha512.Sum384([]byte("something else")),
	}
	names := map[string]string{}
	for n, m := range images {
		names[attest.HexBytes(m[:]).String()] = n
	}

	// verifierFor accepts exactly one image, on the chain's hardware.
	verifierFor := func(peer string) (*snp.Verifier, error) {
		m := images[peer]
		p := snp.NewPolicy()
		p.Measurements = []attest.HexBytes{m[:]}
		return snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: p})
	}
	newService := func(name, peer string) (*service, error) {
		s := &service{name: name, image: images[name], names: names}
		var err error
		if s.vm, err = snp.NewSimAttester(chain, snp.SimOptions{Measurement: s.image}); err != nil {
			return nil, err
		}
		peerVerifier, err := verifierFor(peer)
		if err != nil {
			return nil, err
		}
		// The server admits only the peer's image...
		s.srv, err = atls.NewServer(atls.ServerOptions{
			Attester:       s.vm,
			ClientVerifier: peerVerifier,
			Logger: slog.New(slog.NewTextHandler(&prefixWriter{out: out, prefix: "   [" + name + " log] "}, &slog.HandlerOptions{
				ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey && len(groups) == 0 {
						return slog.Attr{} // keep the output short
					}
					return a
				},
			})),
		})
		if err != nil {
			return nil, err
		}
		// ...and its client talks only to the peer's image, as itself.
		s.cli, err = atls.NewClient(atls.ClientOptions{Verifier: peerVerifier, Attester: s.vm})
		if err != nil {
			return nil, err
		}
		s.hc = &http.Client{Transport: s.cli.Transport(), Timeout: 30 * time.Second}

		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		hs := &http.Server{Handler: s, TLSConfig: s.srv.TLSConfig(), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
		go func() { _ = hs.ServeTLS(ln, "", "") }()
		s.url = "https://" + ln.Addr().String()
		s.closer = func() { hs.Close() }
		return s, nil
	}

	orders, err := newService("orders", "payments")
	if err != nil {
		return err
	}
	defer orders.closer()
	payments, err := newService("payments", "orders")
	if err != nil {
		return err
	}
	defer payments.closer()
	fmt.Fprintf(out, "orders   (image %.8x…) at %s\n", images["orders"], orders.url)
	fmt.Fprintf(out, "payments (image %.8x…) at %s\n", images["payments"], payments.url)

	fmt.Fprintln(out, "\n1. orders calls payments:")
	if err := orders.call(ctx, out, payments.url+"/charge"); err != nil {
		return err
	}
	fmt.Fprintln(out, "\n2. payments calls orders:")
	if err := payments.call(ctx, out, orders.url+"/status"); err != nil {
		return err
	}

	// An impostor that pretends to be orders: genuine (simulated)
	// hardware, another image. It trusts payments, but payments does not
	// trust it.
	fmt.Fprintln(out, "\n3. an impostor VM (another image) calls payments:")
	impostorVM, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: images["impostor"]})
	if err != nil {
		return err
	}
	pv, err := verifierFor("payments")
	if err != nil {
		return err
	}
	impostor, err := atls.NewClient(atls.ClientOptions{Verifier: pv, Attester: impostorVM})
	if err != nil {
		return err
	}
	ihc := &http.Client{Transport: impostor.Transport(), Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, payments.url+"/charge", nil)
	if err != nil {
		return err
	}
	resp, err := ihc.Do(req)
	if err == nil {
		resp.Body.Close()
		return errors.New("payments accepted an impostor")
	}
	fmt.Fprintf(out, "   refused in the TLS handshake, before any request: %v\n", errors.Unwrap(err))
	fmt.Fprintln(out, "\nDone: every request crossed a connection attested in both directions.")
	return nil
}

// ServeHTTP answers with who called, as the verified claims say.
func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, ok := s.srv.RequestClaims(r)
	if !ok {
		// Cannot happen: the server refuses unattested clients.
		http.Error(w, "unattested", http.StatusUnauthorized)
		return
	}
	caller := s.names[c.SNP.Measurement.String()]
	fmt.Fprintf(w, "%s handled %s for %s", s.name, r.URL.Path, caller)
}

// call makes a request to the peer and prints what each side verified.
func (s *service) call(ctx context.Context, out io.Writer, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	c, ok := s.cli.ResponseClaims(resp)
	if !ok {
		return errors.New("no verified claims")
	}
	sim := ""
	if c.Simulated {
		sim = ", SIMULATED"
	}
	fmt.Fprintf(out, "   %s verified the server: %s (measurement %.16s…, %s mode%s)\n",
		s.name, s.names[c.SNP.Measurement.String()], c.SNP.Measurement, c.Mode, sim)
	fmt.Fprintf(out, "   response %s: %q\n", resp.Status, body)
	return nil
}

// prefixWriter writes each log line with a prefix.
type prefixWriter struct {
	out    io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.out, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
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
