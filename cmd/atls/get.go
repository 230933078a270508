package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
)

var getSpec = &cmdSpec{
	name:     "get",
	synopsis: []string{"get --policy FILE [--roots FILE] [--show-attestation [--json]] [--follow-cross-origin] [--accept-static [--max-age D]] [--attest [--simulate]] [--quic] URL"},
	summary: `Fetches an https:// URL from an attested server and writes the body to
stdout, like curl, but only after verifying the server's evidence in the TLS
handshake: the AMD certificate chain up to the roots (AMD's, or --roots), the
report signature, the binding to the server's key and to a fresh nonce this
command sends, and --policy.

--show-attestation prints the verified claims on stderr (a table, or JSON with
--json). With --attest the client attests too, for servers that require
attested clients (atls serve --mutual): with the SEV-SNP hardware of this VM,
or with --simulate.

With --quic the request goes over HTTP/3 (QUIC, UDP) instead of HTTPS over
TCP, to a server such as 'atls serve --quic', with the same verification.

Redirects within the origin of the URL (same scheme, host and port) are
followed. A redirect to another origin is refused unless
--follow-cross-origin is given: that origin is another server, whose
evidence would otherwise pass for the first one's. When following, the chain
is printed on stderr, every server on it is verified against the same
--policy, and --show-attestation prints the claims of each response under
its own origin (with --json, in place of the chain: a list of {"origin",
"url", "status", "claims"}, one per response, even when there is no
redirect).

The exit code says why a request failed: 3 a server is not attested, 4 its
evidence does not verify, 5 the policy refuses it, 1 anything else (network,
a handshake the server refused, a redirect to another origin without
--follow-cross-origin, an HTTP status of 400 or more, whose body is still
written to stdout).`,
	examples: []string{
		"# A simulated server on this machine (see 'atls serve -h'):",
		"atls get --policy policy.json --roots sim-roots.pem --show-attestation https://127.0.0.1:8443/hello",
		"",
		"# Mutual attestation, the client simulated too:",
		"atls get --policy policy.json --roots sim-roots.pem --attest --simulate https://127.0.0.1:8443/",
		"",
		"# Over HTTP/3 (QUIC), from 'atls serve --simulate --quic':",
		"atls get --quic --policy policy.json --roots sim-roots.pem --show-attestation https://127.0.0.1:8443/",
		"",
		"# Follow a redirect to another attested server, showing whose claims are whose:",
		"atls get --policy policy.json --roots sim-roots.pem --follow-cross-origin --show-attestation https://127.0.0.1:8443/moved",
		"",
		"# A real server, AMD's roots; accept its static certificate if it has one:",
		"atls get --policy policy.json --accept-static https://service.internal:8443/",
	},
	exits: exitCodesHelp,
}

func runGet(e *env, args []string) int {
	fs := newFlags(e, getSpec)
	vf := addVerifierFlags(fs, "the server's")
	show := fs.Bool("show-attestation", false, "print the server's verified claims on stderr")
	asJSON := fs.Bool("json", false, "with --show-attestation: print the claims as JSON")
	crossOrigin := fs.Bool("follow-cross-origin", false, "follow redirects to other origins (scheme, host, port), each verified against --policy")
	acceptStatic := fs.Bool("accept-static", false, "accept static-mode server evidence (not bound to this request's nonce) no older than --max-age")
	maxAge := fs.Duration("max-age", atls.DefaultMaxAge, "with --accept-static: the oldest static evidence accepted")
	attestSelf := fs.Bool("attest", false, "present an attested client certificate when the server asks for one")
	af := addAttesterFlags(fs, "with --attest: attest with the simulator instead of SEV-SNP hardware")
	quic := fs.Bool("quic", false, "fetch over HTTP/3 (QUIC, UDP) instead of HTTPS over TCP")
	timeout := fs.Duration("timeout", 30*time.Second, "timeout of the whole request")
	pos, code := parseArgs(e, fs, getSpec, args, 1, 1)
	if code >= 0 {
		return code
	}
	return finish(e, getSpec, get(e, pos[0], getOptions{
		verifier: vf, show: *show, json: *asJSON, crossOrigin: *crossOrigin, acceptStatic: *acceptStatic, maxAge: *maxAge,
		attest: *attestSelf, attester: af, quic: *quic, timeout: *timeout,
	}))
}

type getOptions struct {
	verifier     *verifierFlags
	show, json   bool
	crossOrigin  bool
	acceptStatic bool
	maxAge       time.Duration
	attest       bool
	attester     *attesterFlags
	quic         bool
	timeout      time.Duration
}

func get(e *env, rawURL string, o getOptions) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return usageErrorf("%q is not a URL", rawURL)
	}
	if u.Scheme != "https" {
		return usageErrorf("%q: only https:// URLs can be attested", rawURL)
	}
	if !o.attest && (*o.attester.simulate || *o.attester.measurement != "" || *o.attester.certCache != "" || *o.attester.allowNetwork) {
		return usageErrorf("--simulate, --measurement, --cert-cache and --allow-network select the client's attester: they need --attest")
	}
	if o.json && !o.show {
		return usageErrorf("--json needs --show-attestation")
	}
	if err := o.attester.check(); err != nil {
		return err
	}
	ver, err := o.verifier.verifier()
	if err != nil {
		return err
	}
	opts := atls.ClientOptions{
		Verifier: ver, AcceptStatic: o.acceptStatic, MaxAge: o.maxAge,
		// Offer HTTP/1.1 besides the nonce: a server that is not atls
		// refuses a handshake with no protocol in common, and should
		// instead be found "not attested".
		Base: &tls.Config{NextProtos: []string{"http/1.1"}},
	}
	if o.attest {
		att, _, err := o.attester.attester(e, slog.New(slog.NewTextHandler(e.stderr, nil)))
		if err != nil {
			return err
		}
		opts.Attester = att
	}
	cli, err := atls.NewClient(opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return usageErrorf("%v", err)
	}
	req.Header.Set("User-Agent", "atls/"+version)
	var tr http.RoundTripper
	if o.quic {
		// A fresh configuration and nonce per QUIC connection, ALPN h3,
		// no 0-RTT.
		t3 := atlsquic.HTTP3Transport(cli, nil)
		defer t3.Close()
		tr = t3
	} else {
		t := cli.Transport()
		defer t.CloseIdleConnections()
		tr = t
	}
	chain := &redirectChain{cli: cli, follow: o.crossOrigin, next: req.URL}
	hc := &http.Client{Transport: tr, CheckRedirect: chain.check}
	resp, err := hc.Do(req)
	if err != nil {
		var ce *attest.CheckError
		var coe *crossOriginError
		switch {
		case errors.As(err, &coe):
			return coe
		case errors.As(err, &ce):
			verr := withHint(ce, *o.verifier.roots != "")
			var ue *url.Error
			if errors.As(err, &ue) && len(chain.hops) > 0 {
				// The server refused is not the one asked for.
				verr = fmt.Errorf("%s, redirected from %s: %w", ue.URL, chain.hops[0].url.Redacted(), verr)
			}
			return verifyError(verr)
		case o.quic:
			return quicError(err, o.attest, u.Host)
		}
		return handshakeError(err, o.attest)
	}
	defer resp.Body.Close()
	chain.add(resp, chain.next)

	if chain.crossed() && !(o.show && o.json) {
		chain.print(e.stderr)
	}
	if o.show {
		if err := chain.showClaims(e.stderr, o.json, o.crossOrigin); err != nil {
			return err
		}
	}
	if _, err := io.Copy(e.stdout, resp.Body); err != nil {
		return fmt.Errorf("reading the response: %w", err)
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// redirectChain follows the redirects of one get: within the origin of
// the first URL always, to other origins only when follow is set. It
// keeps every response's verified claims, so that each is shown under
// the origin it came from rather than the one asked for.
type redirectChain struct {
	cli    *atls.Client
	follow bool
	hops   []hop
	next   *url.URL // the URL requested last
}

// hop is one response on the chain.
type hop struct {
	url    *url.URL
	status string
	claims *atls.Claims // nil if none were found (a bug: every connection is verified)
}

// crossOriginError is a redirect to another origin that get was not told
// to follow (exit 1).
type crossOriginError struct {
	from, to *url.URL
}

func (e *crossOriginError) Error() string {
	return fmt.Sprintf("refusing a redirect from %s to %s: another origin, that is another server with its own "+
		"attestation; use --follow-cross-origin to follow it (each origin is verified against the same --policy, and "+
		"--show-attestation labels its claims with its origin)", e.from.Redacted(), e.to.Redacted())
}

// check is the http.Client's CheckRedirect.
func (c *redirectChain) check(req *http.Request, via []*http.Request) error {
	// A redirect to http:// would leave attestation behind.
	if req.URL.Scheme != "https" {
		return fmt.Errorf("refusing a redirect to %s: only https:// can be attested", req.URL.Redacted())
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	from := via[len(via)-1].URL
	if req.Response != nil {
		c.add(req.Response, from)
	}
	if !c.follow && origin(req.URL) != origin(via[0].URL) {
		return &crossOriginError{from: from, to: req.URL}
	}
	c.next = req.URL
	return nil
}

// add records a response to a request for u, and the claims of the
// server that sent it.
func (c *redirectChain) add(resp *http.Response, u *url.URL) {
	h := hop{url: u, status: resp.Status}
	if claims, ok := c.cli.ResponseClaims(resp); ok {
		h.claims = claims
	}
	c.hops = append(c.hops, h)
}

// crossed reports whether the chain left the first URL's origin.
func (c *redirectChain) crossed() bool {
	for _, h := range c.hops {
		if origin(h.url) != origin(c.hops[0].url) {
			return true
		}
	}
	return false
}

// print writes the chain, one response a line.
func (c *redirectChain) print(w io.Writer) {
	fmt.Fprintln(w, "atls get: followed redirects across origins, each server verified on its own:")
	for i, h := range c.hops {
		fmt.Fprintf(w, "  %d. %s -> %s (origin %s)\n", i+1, printable(h.url.Redacted()), printable(h.status), printable(origin(h.url)))
	}
}

// originClaims are the claims of the server of one response, for
// --json with --follow-cross-origin.
type originClaims struct {
	Origin string       `json:"origin"`
	URL    string       `json:"url"`
	Status string       `json:"status"`
	Claims *atls.Claims `json:"claims"`
}

// showClaims writes the verified claims under the origin they came from:
// those of the final response when the chain stayed within one origin,
// else those of every response on it. With labels
// (--follow-cross-origin) the JSON is a list of originClaims, without
// them the claims alone.
func (c *redirectChain) showClaims(w io.Writer, asJSON, labels bool) error {
	hops, crossed := c.hops, c.crossed()
	if !crossed {
		hops = hops[len(hops)-1:]
	}
	var list []originClaims
	for _, h := range hops {
		if h.claims == nil {
			return fmt.Errorf("internal error: no verified claims for the response from %s", h.url.Redacted())
		}
		list = append(list, originClaims{Origin: origin(h.url), URL: h.url.Redacted(), Status: h.status, Claims: h.claims})
	}
	switch {
	case asJSON && labels:
		return writeJSON(w, list)
	case asJSON:
		return writeJSON(w, list[len(list)-1].Claims)
	}
	for _, oc := range list {
		title := fmt.Sprintf("Verified attestation of %s:", oc.Origin)
		if crossed {
			title = fmt.Sprintf("Verified attestation of %s (for %s, %s):", oc.Origin, oc.URL, oc.Status)
		}
		writeClaimsTable(w, title, oc.Claims)
	}
	return nil
}

// origin is the web origin of an https URL, the unit one server's
// evidence speaks for: scheme, lower-case host and port.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}
