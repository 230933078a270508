package main

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo [-product Milan|Genoa|Turin] [-sp-profile "+strings.Join(snp.SPProfileNames(), "|")+"]",
		"demo [flags]", "atls demo -product Genoa -sp-profile serial-8ms", stderr)
	product := fs.String("product", "Milan", "simulated `product` line: Milan, Genoa or Turin")
	spProfile := fs.String("sp-profile", "none", "timing `profile` of the simulated secure processor:\n"+spProfilesHelp("  "))
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "atls demo: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	sp, err := snp.ParseSPProfile(*spProfile)
	if err != nil {
		fmt.Fprintf(stderr, "atls demo: -sp-profile: %q is not a profile (want one of %s)\n", *spProfile, strings.Join(snp.SPProfileNames(), ", "))
		return exitUsage
	}
	d := &demo{out: stdout, sp: sp}
	if err := d.run(*product); err != nil {
		fmt.Fprintf(stderr, "atls demo: %v\n", err)
		return exitFailure
	}
	return exitOK
}

type demo struct {
	out io.Writer
	sp  snp.SPProfile // the simulated secure processor's timing
}

// demoBurst is how many handshakes the demo makes at once to show the
// secure processor's cost.
const demoBurst = 4

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "\n"+format+"\n", args...)
}

func (d *demo) run(product string) error {
	fmt.Fprintln(d.out, "atls demo: attested TLS on loopback, using the built-in SEV-SNP simulator.")
	fmt.Fprintln(d.out, "Everything below is SIMULATED: the AMD root is a simulated one that this demo trusts explicitly.")

	d.step("[1/5] Creating a simulated AMD key hierarchy for %s (ARK and ASK are RSA-4096; this takes a few seconds)...", product)
	start := time.Now()
	chain, err := snp.NewSimChain(product)
	if err != nil {
		return err
	}
	serverImage := sha512.Sum384([]byte("atls demo server image"))
	clientImage := sha512.Sum384([]byte("atls demo client image"))
	serverVM, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: serverImage, SP: d.sp})
	if err != nil {
		return err
	}
	clientVM, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: clientImage})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "      done in %v: a simulated server VM and client VM, each with its own chip and VCEK.\n", time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(d.out, "      The server VM's secure processor: profile %s.\n", d.sp)

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

	// One-way: the server attests, the client verifies.
	d.step("[2/5] One-way attestation: an attested HTTPS server and a verifying client.")
	srv, err := atls.NewServer(atls.ServerOptions{Attester: serverVM})
	if err != nil {
		return err
	}
	cli, err := atls.NewClient(atls.ClientOptions{Verifier: serverVerifier})
	if err != nil {
		return err
	}
	if err := d.exchange(srv, cli, false); err != nil {
		return err
	}
	if err := d.burst(srv, cli, serverVM); err != nil {
		return err
	}

	// Mutual: both attest, both verify.
	d.step("[3/5] Mutual attestation: the client attests to the server too.")
	msrv, err := atls.NewServer(atls.ServerOptions{Attester: serverVM, ClientVerifier: clientVerifier})
	if err != nil {
		return err
	}
	mcli, err := atls.NewClient(atls.ClientOptions{Verifier: serverVerifier, Attester: clientVM})
	if err != nil {
		return err
	}
	if err := d.exchange(msrv, mcli, true); err != nil {
		return err
	}

	// The same, over QUIC (HTTP/3).
	d.step("[4/5] Mutual attestation over QUIC (HTTP/3), with the same server and client.")
	if err := d.exchangeHTTP3(msrv, mcli); err != nil {
		return err
	}

	// A refusal: the client expects another image.
	d.step("[5/5] A client whose policy expects another image refuses the server:")
	wrong, err := verifierFor(sha512.Sum384([]byte("some other image")))
	if err != nil {
		return err
	}
	wcli, err := atls.NewClient(atls.ClientOptions{Verifier: wrong})
	if err != nil {
		return err
	}
	err = d.exchange(srv, wcli, false)
	if err == nil {
		return errors.New("the server was accepted by a policy that pins another measurement")
	}
	if !errors.Is(err, atls.ErrPolicy) {
		return fmt.Errorf("expected a policy failure, got: %w", err)
	}
	fmt.Fprintf(d.out, "      refused, as expected (failed check %q):\n      %v\n", attest.FailedCheck(err), err)

	fmt.Fprintln(d.out, "\nDone: three attested connections accepted (TCP one-way, TCP mutual, QUIC mutual), one refused by policy.")
	return nil
}

// exchange serves one HTTPS request from the server to the client and
// prints what each side verified.
func (d *demo) exchange(srv *atls.Server, cli *atls.Client, mutual bool) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{
		TLSConfig: srv.TLSConfig(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			msg := "hello from an attested server"
			if c, ok := srv.RequestClaims(r); ok {
				msg += fmt.Sprintf("; you are the client VM with measurement %.16s…", c.SNP.Measurement.String())
			}
			_, _ = io.WriteString(w, msg)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          quietLog(),
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	defer hs.Close()

	tr := cli.Transport()
	tr.DisableKeepAlives = true
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := "https://" + ln.Addr().String() + "/"
	ctx := context.Background()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	start := time.Now()
	resp, err := hc.Do(req)
	elapsed := time.Since(start)
	if err != nil {
		var ce *attest.CheckError
		if errors.As(err, &ce) {
			return ce
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "      GET %s -> %s %q\n", url, resp.Status, string(body))
	fmt.Fprintf(d.out, "      connection + %s + request took %v\n",
		map[bool]string{false: "attestation of the server", true: "attestation of both sides"}[mutual],
		elapsed.Round(100*time.Microsecond))
	claims, ok := cli.ResponseClaims(resp)
	if !ok {
		return errors.New("no verified claims for the server")
	}
	fmt.Fprintln(d.out, "      The client verified the server:")
	printClaims(d.out, claims, "        ")
	return nil
}

// burst makes demoBurst one-way handshakes (each with one request) at
// once and prints their latencies and how many reports the server's
// secure processor made for them.
func (d *demo) burst(srv *atls.Server, cli *atls.Client, vm *snp.SimAttester) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{
		TLSConfig:         srv.TLSConfig(),
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          quietLog(),
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	defer hs.Close()
	url := "https://" + ln.Addr().String() + "/"

	before := vm.SPStats()
	latencies := make([]time.Duration, demoBurst)
	errs := make([]error, demoBurst)
	var wg sync.WaitGroup
	for i := range demoBurst {
		wg.Go(func() {
			tr := cli.Transport()
			tr.DisableKeepAlives = true
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			start := time.Now()
			resp, err := hc.Get(url)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			latencies[i], errs[i] = time.Since(start), err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	slices.Sort(latencies)
	parts := make([]string, len(latencies))
	for i, l := range latencies {
		parts[i] = l.Round(100 * time.Microsecond).String()
	}
	after := vm.SPStats()
	fmt.Fprintf(d.out, "      %d handshakes at once (secure processor %s): %s\n", demoBurst, d.sp.Name, strings.Join(parts, ", "))
	if !d.sp.IsZero() {
		fmt.Fprintf(d.out, "      the secure processor made %d report(s) for them, one at a time (waited %v for its throttle)\n",
			after.Reports-before.Reports, (after.ThrottleWait - before.ThrottleWait).Round(time.Millisecond))
	}
	return nil
}

// exchangeHTTP3 serves one HTTP/3 request over QUIC on loopback.
func (d *demo) exchangeHTTP3(srv *atls.Server, cli *atls.Client) error {
	h3 := atlsquic.NewHTTP3Server(srv, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		msg := "hello over " + r.Proto
		if c, ok := srv.RequestClaims(r); ok {
			msg += fmt.Sprintf("; you are the client VM with measurement %.16s…", c.SNP.Measurement.String())
		}
		_, _ = io.WriteString(w, msg)
	}))
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer pc.Close()
	served := make(chan error, 1)
	go func() { served <- h3.Serve(pc) }()
	defer func() {
		_ = h3.Close()
		<-served
	}()

	tr := atlsquic.HTTP3Transport(cli, nil)
	defer tr.Close()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := "https://" + pc.LocalAddr().String() + "/"
	start := time.Now()
	resp, err := hc.Get(url)
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "      GET %s (%s) -> %s %q\n", url, resp.Proto, resp.Status, string(body))
	fmt.Fprintf(d.out, "      QUIC handshake + attestation of both sides + request took %v\n", elapsed.Round(100*time.Microsecond))
	claims, ok := cli.ResponseClaims(resp)
	if !ok {
		return errors.New("no verified claims for the HTTP/3 server")
	}
	fmt.Fprintf(d.out, "      The client verified the server: %s, measurement %.16s…, freshness %s\n",
		claimsPlatform(claims), claims.SNP.Measurement.String(), claims.Mode)
	return nil
}

func claimsPlatform(c *atls.Claims) string {
	if c.Simulated {
		return c.Platform + " (SIMULATED)"
	}
	return c.Platform
}

// printClaims writes the main claims as an aligned table.
func printClaims(w io.Writer, c *atls.Claims, indent string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s%s\t%s\n", indent, k, v) }
	platform := c.Platform
	if c.Simulated {
		platform += " (SIMULATED: not real hardware)"
	}
	row("platform", platform)
	row("role / freshness", c.Role.String()+" / "+c.Mode.String())
	if s := c.SNP; s != nil {
		row("product", s.Product+", report v"+fmt.Sprint(s.ReportVersion)+", signed by "+s.Signer)
		row("measurement", s.Measurement.String())
		row("guest policy", fmt.Sprintf("0x%x", s.GuestPolicy))
		row("vmpl", fmt.Sprint(s.VMPL))
		row("reported tcb", fmt.Sprintf("0x%016x", s.ReportedTCB))
		row("chip id", abbreviate(s.ChipID.String()))
		row("host data", s.HostData.String())
		row("report id", s.ReportID.String())
	}
	row("certificate", c.NotBefore.UTC().Format(time.RFC3339)+" .. "+c.NotAfter.UTC().Format(time.RFC3339))
	_ = tw.Flush()
}

func abbreviate(s string) string {
	if len(s) <= 32 {
		return s
	}
	return s[:16] + "…" + s[len(s)-16:]
}

// quietLog discards the http.Server's own log: the demo reports what
// matters itself (the refused handshake of step 4 would otherwise log).
func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }
