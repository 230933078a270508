package main

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/certgen"
)

var serveSpec = &cmdSpec{
	name: "serve",
	synopsis: []string{
		"serve [--addr HOST:PORT] [--simulate] [--mode nonce|static] [--dir DIR] [flags]",
		"serve --mutual --policy FILE [--roots FILE] [flags]",
		"serve --quic [flags]",
		"serve --simulate --sp-profile none|serial-8ms|gcp [flags]",
	},
	summary: `Runs an HTTPS server whose every TLS certificate carries SEV-SNP evidence:
a fresh attestation report bound to the certificate key and to the client's
nonce. Inside an SEV-SNP VM it uses the hardware; with --simulate it uses the
simulator (the simulated AMD chain and VM kept in --sim-dir).

In nonce mode (the default) a client that sends no nonce (a browser, curl,
openssl) gets a static-mode certificate instead, which it can save and check
offline ('atls inspect', 'atls verify --accept-static'). --mode static serves
only static certificates, rotated before two thirds of --validity.

With --mutual, clients must present attested certificates too, bound to a
nonce the server sends; they are verified against --policy and --roots.

With --quic the server speaks HTTP/3 over QUIC on UDP --addr instead of
HTTPS over TCP (ALPN h3, 0-RTT off), with the same attestation, handlers and
flags; fetch from it with 'atls get --quic'. HTTP/3 clients that are not atls
(curl --http3-only) send no nonce: like their TCP counterparts they get a
static-mode attested certificate, in nonce mode with --static-fallback (the
default) and in --mode static, and are refused with --static-fallback=false.

--static-fallback is on here, unlike ServerOptions.StaticFallback in the
library (off): a server run by hand is probed with curl, openssl and
browsers, which send no nonce and would otherwise get only an internal_error
alert; a program embedding the library decides for its own clients, and off
is the choice that never serves weaker evidence than asked for.

With --simulate, --sp-profile makes the simulated secure processor cost what
a real one does: a latency per report, one report at a time, and the host's
throttle (a batching server then starts reports no more often than the
throttle's sustained rate, gathering handshakes meanwhile). Profiles:
` + spProfilesHelp("  ") + `

The handler serves the files of --dir, or by default echoes the request's
method and path and, with --mutual, the client's verified claims, as JSON.
Logs go to stderr. SIGINT or SIGTERM shuts the server down gracefully.`,
	examples: []string{
		"# Inside an SEV-SNP VM:",
		"atls serve --addr :8443 --cert-cache /var/cache/atls",
		"",
		"# On a laptop, with the simulator:",
		"atls serve --simulate --addr 127.0.0.1:8443",
		"",
		"# Require attested clients (the simulator's roots trusted explicitly):",
		"atls roots export --simulate > sim-roots.pem",
		"atls policy init --simulate > policy.json",
		"atls serve --simulate --addr 127.0.0.1:8443 --mutual --policy policy.json --roots sim-roots.pem",
		"",
		"# HTTP/3 over QUIC (UDP port 8443), fetched with 'atls get --quic':",
		"atls serve --simulate --addr 127.0.0.1:8443 --quic",
		"",
		"# The simulator with a GCP-like secure processor (8 ms per report, throttled):",
		"atls serve --simulate --addr 127.0.0.1:8443 --sp-profile gcp",
	},
}

func runServe(e *env, args []string) int {
	fs := newFlags(e, serveSpec)
	addr := fs.String("addr", ":8443", "listen on `HOST:PORT` (port 0 picks a free port, which is logged)")
	mode := fs.String("mode", "nonce", "freshness `mode` of the server's evidence: nonce or static")
	fallback := fs.Bool("static-fallback", true, "in nonce mode, serve a static certificate to clients that send no nonce\n(set --static-fallback=false to refuse them)")
	af := addAttesterFlags(fs, "attest with the simulator instead of SEV-SNP hardware (SIMULATED evidence)")
	mutual := fs.Bool("mutual", false, "require attested clients, verified against --policy and --roots")
	vf := addVerifierFlags(fs, "clients'")
	acceptStatic := fs.Bool("accept-static-clients", false, "with --mutual: accept static-mode client evidence no older than --max-age")
	maxAge := fs.Duration("max-age", atls.DefaultMaxAge, "with --accept-static-clients: the oldest static client evidence accepted")
	dir := fs.String("dir", "", "serve the files in `DIR` instead of the echo handler")
	keyType := fs.String("key-type", "ecdsa-p256", "certificate key `type`: ecdsa-p256, ecdsa-p384 or ed25519")
	validity := fs.Duration("validity", 0, "validity of the server's certificates (default 10m in nonce mode, 1h for static ones)")
	quic := fs.Bool("quic", false, "serve HTTP/3 over QUIC on UDP --addr instead of HTTPS over TCP")
	verbose := fs.Bool("v", false, "verbose: also log accepted handshakes")
	spProfile := fs.String("sp-profile", "none", "with --simulate: timing `profile` of the simulated secure processor: "+strings.Join(snp.SPProfileNames(), ", "))
	if _, code := parseArgs(e, fs, serveSpec, args, 0, 0); code >= 0 {
		return code
	}
	return finish(e, serveSpec, serve(e, serveOptions{
		addr: *addr, mode: *mode, fallback: *fallback, attester: af, mutual: *mutual, verifier: vf,
		acceptStatic: *acceptStatic, maxAge: *maxAge, dir: *dir, keyType: *keyType, validity: *validity,
		quic: *quic, verbose: *verbose, spProfile: *spProfile,
	}))
}

type serveOptions struct {
	addr, mode   string
	fallback     bool
	attester     *attesterFlags
	mutual       bool
	verifier     *verifierFlags
	acceptStatic bool
	maxAge       time.Duration
	dir          string
	keyType      string
	validity     time.Duration
	quic         bool
	verbose      bool
	spProfile    string
}

func serve(e *env, o serveOptions) error {
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	handler := slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})
	log := slog.New(handler)

	opts := atls.ServerOptions{Logger: log}
	switch o.mode {
	case "nonce":
		opts.Freshness = atls.FreshnessNonce
		opts.StaticFallback = o.fallback
	case "static":
		opts.Freshness = atls.FreshnessStatic
	default:
		return usageErrorf("--mode must be nonce or static, not %q", o.mode)
	}
	kt, err := certgen.ParseKeyType(o.keyType)
	if err != nil {
		return usageErrorf("--key-type: %v", err)
	}
	opts.KeyType, opts.Validity = kt, o.validity
	if !o.mutual && (*o.verifier.policy != "" || *o.verifier.roots != "" || o.acceptStatic) {
		return usageErrorf("--policy, --roots and --accept-static-clients verify clients: they need --mutual")
	}
	if o.dir != "" {
		if st, err := os.Stat(o.dir); err != nil || !st.IsDir() {
			return usageErrorf("--dir %q is not a directory", o.dir)
		}
	}
	if err := o.attester.check(); err != nil {
		return err
	}
	sp, err := snp.ParseSPProfile(o.spProfile)
	if err != nil {
		return usageErrorf("--sp-profile: %q is not a profile (want one of %s)", o.spProfile, strings.Join(snp.SPProfileNames(), ", "))
	}
	if !sp.IsZero() && !*o.attester.simulate {
		return usageErrorf("--sp-profile models the simulated secure processor: it needs --simulate")
	}
	if o.mutual {
		ver, err := o.verifier.verifier()
		if err != nil {
			return err
		}
		opts.ClientVerifier = ver
		opts.AcceptStaticClients = o.acceptStatic
		opts.ClientMaxAge = o.maxAge
	}
	att, simulated, err := o.attester.attester(e, log)
	if err != nil {
		return err
	}
	var measurement []byte
	if sa, ok := att.(*snp.SimAttester); ok {
		m := sa.Options().Measurement
		measurement = m[:]
	}
	var spModel *snp.SPModel
	if !sp.IsZero() {
		if spModel, err = snp.NewSPModel(att, snp.SPModelOptions{Profile: sp}); err != nil {
			return err
		}
		att = spModel
		// Batch at the host's sustained rate: requests keep joining the
		// next batch while the throttle would hold it anyway.
		opts.Batch.MinInterval = sp.Period()
	}
	opts.Attester = att
	srv, err := atls.NewServer(opts)
	if err != nil {
		return err
	}

	var h http.Handler
	if o.dir != "" {
		h = http.FileServer(http.Dir(o.dir))
	} else {
		h = echoHandler(srv, o.mutual)
	}
	h = accessLog(log, srv, h)

	var ls listenServer
	if o.quic {
		ls, err = listenQUIC(o.addr, srv, h, log)
	} else {
		ls, err = listenTCP(o.addr, srv, h, handler)
	}
	if err != nil {
		return err
	}
	defer ls.release()

	addr := ls.addr.String()
	attrs := []any{"addr", addr, "url", "https://" + addr + "/", "protocol", ls.protocol, "mode", o.mode}
	if o.mode == "nonce" {
		attrs = append(attrs, "static_fallback", o.fallback)
	}
	attrs = append(attrs, "mutual", o.mutual)
	if measurement != nil {
		attrs = append(attrs, "measurement", hex.EncodeToString(measurement))
	}
	if simulated {
		attrs = append(attrs, "sp_profile", sp.String())
	}
	if simulated {
		log.Warn("SIMULATED attestation: certificates carry evidence signed by a simulated AMD chain, not by SEV-SNP hardware")
	}
	log.Info("atls serve: listening", attrs...)
	if e.listening != nil {
		e.listening(ls.addr)
	}

	ctx, stop := signal.NotifyContext(e.ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- ls.serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("atls serve: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ls.shutdown(sctx); err != nil {
		_ = ls.close()
		<-errc
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if spModel != nil {
		st := spModel.Stats()
		log.Info("atls serve: simulated secure processor", "profile", sp.Name, "reports", st.Reports, "failed", st.Failed,
			"throttled", st.Throttled, "throttle_wait", st.ThrottleWait.Round(time.Millisecond), "queue_wait", st.QueueWait.Round(time.Millisecond))
	}
	log.Info("atls serve: stopped")
	return nil
}

// spProfilesHelp lists the secure-processor profiles, one per line.
func spProfilesHelp(indent string) string {
	var b strings.Builder
	for i, p := range snp.SPProfiles() {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(indent + p.String())
	}
	return b.String()
}

// listenServer is a bound server, over TCP or QUIC, ready to serve.
type listenServer struct {
	addr     net.Addr
	protocol string                          // for the log
	serve    func() error                    // blocks; http.ErrServerClosed after shutdown
	shutdown func(ctx context.Context) error // graceful
	close    func() error                    // immediate
	release  func()                          // frees the socket once serve has returned
}

// listenTCP binds an HTTPS server (HTTP/2 and HTTP/1.1) to addr.
func listenTCP(addr string, srv *atls.Server, h http.Handler, handler slog.Handler) (listenServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return listenServer{}, err
	}
	hs := &http.Server{
		Handler: h,
		// h2 for browsers and curl; atls clients negotiate no protocol
		// and speak HTTP/1.1.
		TLSConfig:         srv.Hook(&tls.Config{NextProtos: []string{"h2", "http/1.1"}}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Handshake errors are logged by atls (rejected clients) or are
		// noise (port scanners); keep them for -v.
		ErrorLog: slog.NewLogLogger(handler, slog.LevelDebug),
	}
	return listenServer{
		addr:     ln.Addr(),
		protocol: "HTTPS (TCP)",
		serve:    func() error { return hs.ServeTLS(ln, "", "") },
		shutdown: hs.Shutdown,
		close:    hs.Close,
		release:  func() { _ = ln.Close() },
	}, nil
}

// listenQUIC binds an HTTP/3 server to UDP addr. atlsquic.NewHTTP3Server
// hooks srv onto TLSConfig (ALPN h3), turns 0-RTT off and answers 425 to
// requests on connections whose handshake is not complete. It is started
// with Serve on a socket of our own, never with ListenAndServeTLS, which
// would ignore TLSConfig and serve no attested certificate.
func listenQUIC(addr string, srv *atls.Server, h http.Handler, log *slog.Logger) (listenServer, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return listenServer{}, err
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return listenServer{}, err
	}
	h3 := atlsquic.NewHTTP3Server(srv, nil, h)
	h3.IdleTimeout = 2 * time.Minute
	h3.Logger = log // http3 logs at Debug: shown with -v
	return listenServer{
		addr:     pc.LocalAddr(),
		protocol: "HTTP/3 (QUIC, UDP)",
		serve:    func() error { return h3.Serve(pc) },
		shutdown: h3.Shutdown,
		close:    h3.Close,
		// Serve does not close the socket it was given.
		release: func() { _ = pc.Close() },
	}, nil
}

// echoResponse is what the default handler answers.
type echoResponse struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// ClientAttested is true when the client's evidence was verified
	// (--mutual).
	ClientAttested bool         `json:"client_attested"`
	Client         *atls.Claims `json:"client,omitempty"`
	Note           string       `json:"note,omitempty"`
}

func echoHandler(srv *atls.Server, mutual bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := echoResponse{Method: r.Method, Path: r.URL.Path}
		if mutual {
			if c, ok := srv.RequestClaims(r); ok {
				resp.ClientAttested, resp.Client = true, c
				if c.Simulated {
					resp.Note = "the client's evidence is " + simulatedNote
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = writeJSON(w, resp)
	})
}

// accessLog logs each request, with the client's measurement when it is
// attested.
func accessLog(log *slog.Logger, srv *atls.Server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attrs := []any{"method", r.Method, "path", r.URL.Path, "proto", r.Proto, "remote", r.RemoteAddr}
		if c, ok := srv.RequestClaims(r); ok && c.SNP != nil {
			attrs = append(attrs, "client_measurement", c.SNP.Measurement.String(), "client_simulated", c.Simulated)
		}
		log.Info("request", attrs...)
		next.ServeHTTP(w, r)
	})
}
