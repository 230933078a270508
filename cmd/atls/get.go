package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
)

var getSpec = &cmdSpec{
	name:     "get",
	synopsis: []string{"get --policy FILE [--roots FILE] [--show-attestation [--json]] [--accept-static [--max-age D]] [--attest [--simulate]] [--quic] URL"},
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

The exit code says why a request failed: 3 the server is not attested, 4 its
evidence does not verify, 5 the policy refuses it, 1 anything else (network,
a handshake the server refused, an HTTP status of 400 or more, whose body is
still written to stdout).`,
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
		verifier: vf, show: *show, json: *asJSON, acceptStatic: *acceptStatic, maxAge: *maxAge,
		attest: *attestSelf, attester: af, quic: *quic, timeout: *timeout,
	}))
}

type getOptions struct {
	verifier     *verifierFlags
	show, json   bool
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
	hc := &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		// A redirect to http:// would leave attestation behind.
		if req.URL.Scheme != "https" {
			return fmt.Errorf("refusing a redirect to %s: only https:// can be attested", req.URL.Redacted())
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}}
	resp, err := hc.Do(req)
	if err != nil {
		var ce *attest.CheckError
		if errors.As(err, &ce) {
			return verifyError(withHint(ce, *o.verifier.roots != ""))
		}
		if o.quic {
			return quicError(err, o.attest, u.Host)
		}
		return handshakeError(err, o.attest)
	}
	defer resp.Body.Close()

	if o.show {
		claims, ok := cli.ResponseClaims(resp)
		if !ok {
			return errors.New("internal error: no verified claims for the response")
		}
		if o.json {
			if err := writeJSON(e.stderr, claims); err != nil {
				return err
			}
		} else {
			writeClaimsTable(e.stderr, fmt.Sprintf("Verified attestation of %s:", u.Host), claims)
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
