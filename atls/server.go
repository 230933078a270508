package atls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
)

// Freshness selects how an attester proves its evidence is current.
type Freshness int

const (
	// FreshnessNonce (the default) binds every certificate to the peer's
	// fresh nonce, no replay: one attestation per batch of handshakes
	// (mode batch, see ServerOptions.DisableBatching), or per handshake.
	FreshnessNonce Freshness = iota
	// FreshnessStatic reuses one attested certificate until it rotates;
	// verifiers must opt in and bound its age. Use it where the peer
	// cannot send a nonce (browsers, curl, openssl) or where the cost of
	// one attestation per handshake matters.
	FreshnessStatic
)

func (f Freshness) String() string {
	switch f {
	case FreshnessNonce:
		return "nonce"
	case FreshnessStatic:
		return "static"
	}
	return fmt.Sprintf("Freshness(%d)", int(f))
}

// ServerOptions configure the attested side of a server, the verifying
// side, or both (mutual attestation).
type ServerOptions struct {
	// Attester makes the server's evidence. When nil the server presents
	// the certificates of the base configuration (ordinary PKI), and
	// ClientVerifier must be set.
	Attester attest.Attester
	// Freshness of the server's evidence (default FreshnessNonce).
	Freshness Freshness
	// StaticFallback, in nonce mode, serves a static-mode certificate to
	// clients that send no nonce instead of refusing them. Such clients
	// can check the certificate offline; they get no freshness guarantee.
	// It is also served, and the cause logged, when a nonce-bound
	// certificate cannot be made in time: the attester is saturated (see
	// MaxAttestationWait) or fails. Clients that accept static evidence
	// then still connect; the others refuse it. NewServer issues the
	// static certificate (and fails with check "server.static" if it
	// cannot); it is renewed in the background until Close.
	//
	// Off by default, so that no client ever gets weaker evidence than
	// nonce mode unless the program chose so; the atls command's serve
	// turns it on (--static-fallback), because a server run by hand is
	// probed with curl, openssl and browsers. Without it such clients get
	// an internal_error alert (crypto/tls's alert for every refusal before
	// the certificate) and the server names check "nonce.missing" in its
	// error (net/http's ErrorLog) and Logger.
	StaticFallback bool
	// KeyType and Validity of the server's certificates (see certgen).
	KeyType  certgen.KeyType
	Validity time.Duration
	// CommonName and DNSNames are written into the server's certificates
	// for display; peers are identified by evidence, not names.
	CommonName string
	DNSNames   []string

	// ClientVerifier, when set, requires every client to present
	// attested evidence bound to a nonce the server sends in its
	// CertificateRequest (mutual attestation, or attested clients of an
	// ordinary-PKI server).
	ClientVerifier attest.Verifier
	// AcceptStaticClients accepts static-mode client evidence no older
	// than ClientMaxAge (default DefaultMaxAge).
	AcceptStaticClients bool
	ClientMaxAge        time.Duration

	// DisableBatching turns batched attestation off. By default a
	// nonce-mode server batches: handshakes that arrive while a report is
	// being made share the next report, whose REPORT_DATA commits to the
	// root of a Merkle tree over their bindings (mode "batch", exactly as
	// fresh as nonce mode: each certificate still has its own key and the
	// client's own nonce). One report is in flight at a time, so a batched
	// server needs no attestation slots: Batch.MaxPending bounds the
	// handshakes waiting for a report instead. With DisableBatching every
	// nonce handshake costs one report, bounded by
	// MaxConcurrentAttestations and MaxWaitingAttestations.
	DisableBatching bool
	// Batch configures the batcher of a batching server (see
	// attest.BatcherOptions; the zero value means batches of up to
	// attest.DefaultMaxBatchSize handshakes, no added wait, and at most
	// four batches' worth of handshakes waiting; beyond that a handshake
	// is refused at once with ErrBusy, check "batch.busy", or gets the
	// static certificate with StaticFallback).
	Batch attest.BatcherOptions

	// MaxConcurrentAttestations bounds how many nonce-bound certificates
	// an unbatched server (DisableBatching) makes at once. In nonce mode
	// every ClientHello costs one attestation before the client has proved
	// anything, so a flood of ClientHellos would otherwise queue unbounded
	// work on the secure processor. Zero means
	// DefaultMaxConcurrentAttestations; negative means no bound. A
	// batching server ignores it (see DisableBatching).
	MaxConcurrentAttestations int
	// MaxWaitingAttestations bounds the handshakes of an unbatched server
	// that wait for an attestation slot. A handshake beyond it is not
	// queued: it gets the static certificate at once if StaticFallback is
	// set, or fails with ErrBusy (check "server.busy"). Zero means eight
	// times MaxConcurrentAttestations (no bound when that is unbounded);
	// negative means no bound.
	MaxWaitingAttestations int
	// MaxAttestationsPerSource bounds the nonce handshakes from one IP
	// address that wait for, or are having made, an attestation, so that
	// one source cannot fill the queue every client shares (over QUIC the
	// address counts once validated, see package atlsquic). Beyond
	// it a handshake gets the static certificate if StaticFallback is set,
	// or fails with ErrBusy (check "server.busy_source"). Zero means half
	// of the server's bound on waiting handshakes (slots plus
	// MaxWaitingAttestations, or Batch.MaxPending), no bound when that is
	// unbounded; negative means no bound.
	MaxAttestationsPerSource int
	// MaxAttestationWait bounds how long a nonce handshake waits for its
	// certificate: for an attestation slot (unbatched) or for its batch's
	// report (batched). After it the handshake gets the static certificate
	// if StaticFallback is set, or fails with ErrBusy (check
	// "server.busy"). Zero means DefaultMaxAttestationWait, which is well
	// below the handshake timeouts of QUIC stacks (quic-go: 5 s by
	// default, 10 s in package atlsquic), so that a fallback still
	// arrives in time.
	MaxAttestationWait time.Duration

	// EnableResumption turns TLS session tickets on. Checks run in
	// VerifyConnection, so a resumed session is checked again; with nonce
	// freshness a resumed session cannot be re-bound to a new nonce and
	// is therefore refused. Leave it off unless you accept that trade-off.
	EnableResumption bool
	// CacheSize bounds the verification cache (default DefaultCacheSize;
	// negative disables it).
	CacheSize int
	// Logger receives one line per rejected peer (Warn) and per accepted
	// one (Debug). Nil means silent.
	Logger *slog.Logger
	// Now returns the current time (default time.Now).
	Now func() time.Time

	// Authorize, when set with a ClientVerifier, decides inside the
	// handshake whether a client whose evidence was verified may connect
	// (see AuthorizeFunc); nil accepts every verified client.
	Authorize AuthorizeFunc
	// Trace receives the server's attestation, verification and cache
	// events (see Trace); nil reports nothing.
	Trace *Trace
}

// DefaultMaxConcurrentAttestations is the default bound on concurrent
// nonce-bound attestations of one unbatched Server.
const DefaultMaxConcurrentAttestations = 16

// DefaultMaxAttestationWait is the default bound on how long a nonce
// handshake waits for its attestation (ServerOptions.MaxAttestationWait).
const DefaultMaxAttestationWait = 2 * time.Second

// staticIssueTimeout bounds the issuance of the first static certificate
// in NewServer.
const staticIssueTimeout = time.Minute

// Server makes server-side tls.Configs. Create it with NewServer.
type Server struct {
	opts    ServerOptions
	static  *certgen.Static
	peer    *peerCheck      // nil unless ClientVerifier is set
	batcher *attest.Batcher // nil unless the server batches nonce certificates
	slots   chan struct{}   // bounds concurrent attestations; nil: no bound
	admit   *admission      // bounds the nonce handshakes waiting for evidence
	wait    time.Duration   // MaxAttestationWait, resolved
}

// NewServer checks opts and returns a Server.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Attester == nil && opts.ClientVerifier == nil {
		return nil, attest.Fail(attest.ErrConfig, "server.options", "neither an Attester nor a ClientVerifier: nothing to attest or verify")
	}
	if opts.Freshness != FreshnessNonce && opts.Freshness != FreshnessStatic {
		return nil, attest.Fail(attest.ErrConfig, "server.options", "unknown freshness %v", opts.Freshness)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, wait: opts.MaxAttestationWait}
	if s.wait <= 0 {
		s.wait = DefaultMaxAttestationWait
	}
	bound := 0 // handshakes waiting for nonce evidence at most; 0: no bound
	if opts.Attester != nil && opts.Freshness == FreshnessNonce && !opts.DisableBatching {
		b, err := attest.NewBatcher(traceAttester(opts.Attester, opts.Trace, attest.RoleServer, attest.ModeBatch), opts.Batch)
		if err != nil {
			return nil, err
		}
		s.batcher = b
		bound = opts.Batch.MaxPending
		if bound == 0 {
			size := opts.Batch.MaxSize
			if size == 0 {
				size = attest.DefaultMaxBatchSize
			}
			bound = 4 * size
		}
	} else {
		switch n := opts.MaxConcurrentAttestations; {
		case n == 0:
			s.slots = make(chan struct{}, DefaultMaxConcurrentAttestations)
		case n > 0:
			s.slots = make(chan struct{}, n)
		}
		switch w := opts.MaxWaitingAttestations; {
		case w > 0 && s.slots != nil:
			bound = cap(s.slots) + w
		case w > 0:
			bound = w
		case w == 0 && s.slots != nil:
			bound = 9 * cap(s.slots)
		}
	}
	perSource := opts.MaxAttestationsPerSource
	if perSource == 0 {
		perSource = (bound + 1) / 2
	}
	// The batcher enforces the total bound itself (check "batch.busy").
	if s.batcher != nil {
		bound = 0
	}
	s.admit = newAdmission(bound, perSource)
	if opts.Attester != nil && (opts.Freshness == FreshnessStatic || opts.StaticFallback) {
		st, err := certgen.NewStatic(s.request(attest.ModeStatic, [attest.NonceSize]byte{}))
		if err != nil {
			return nil, err
		}
		// Issue the static certificate now rather than on first use,
		// when the attester may be saturated by nonce handshakes; Current
		// then renews it in the background.
		ctx, cancel := context.WithTimeout(context.Background(), staticIssueTimeout)
		_, err = st.Current(ctx)
		cancel()
		if err != nil {
			return nil, attest.Wrap(attest.ErrConfig, "server.static", fmt.Errorf("issuing the static certificate: %w", err))
		}
		s.static = st
	}
	if opts.ClientVerifier != nil {
		s.peer = &peerCheck{
			verifier:     opts.ClientVerifier,
			role:         attest.RoleClient,
			acceptStatic: opts.AcceptStaticClients,
			maxAge:       opts.ClientMaxAge,
			now:          opts.Now,
			certs:        newCache(opts.CacheSize),
			cache:        newCache(opts.CacheSize),
			claims:       newClaims(0, DefaultClaimsSize),
			logger:       opts.Logger,
			hooks:        newPeerHooks(opts.Authorize, opts.Trace),
		}
	}
	return s, nil
}

func (s *Server) request(mode attest.Mode, nonce [attest.NonceSize]byte) certgen.Request {
	return certgen.Request{
		Attester:   traceAttester(s.opts.Attester, s.opts.Trace, attest.RoleServer, mode),
		Role:       attest.RoleServer,
		Mode:       mode,
		Nonce:      nonce,
		KeyType:    s.opts.KeyType,
		Validity:   s.opts.Validity,
		CommonName: s.opts.CommonName,
		DNSNames:   s.opts.DNSNames,
		Now:        s.opts.Now,
	}
}

// TLSConfig returns a new server configuration. It may be used for any
// number of connections.
func (s *Server) TLSConfig() *tls.Config {
	return s.Hook(nil)
}

// Hook returns a copy of base (which may be nil) patched for attestation:
// TLS 1.3 only, an attested certificate per connection, and, with a
// ClientVerifier, client attestation checked in VerifyConnection. The
// base's own NextProtos, ClientAuth/ClientCAs (when the server does not
// verify attested clients) and VerifyConnection are kept; the latter runs
// after the attestation checks. base is not modified.
//
// The returned configuration makes the real one of each connection in its
// GetConfigForClient. Configure base before calling Hook: later changes to
// the returned configuration are not used (except NextProtos, which
// net/http and http3 add), and a change to its client authentication is
// refused at the next handshake. Used without its GetConfigForClient (for
// example returned from another configuration's GetConfigForClient), it
// fails every handshake instead of serving unattested.
//
// A client that offers only the nonce in ALPN gets no application protocol
// over TCP; over QUIC, which requires one, it is refused (check "tls.alpn").
// For QUIC and HTTP/3 see package atlsquic.
func (s *Server) Hook(base *tls.Config) *tls.Config {
	tmpl := s.prepare(base)
	cfg := tmpl.Clone()
	var userGetConfig func(*tls.ClientHelloInfo) (*tls.Config, error)
	if base != nil {
		userGetConfig = base.GetConfigForClient
	}

	// The shell fails closed when used without its GetConfigForClient.
	if s.opts.Attester != nil {
		cfg.Certificates = nil
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errShellUsed
		}
	}
	if s.peer != nil {
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = func(tls.ConnectionState) error { return errShellUsed }
	}
	shellAuth, shellCAs := cfg.ClientAuth, cfg.ClientCAs

	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if cfg.ClientAuth != shellAuth || cfg.ClientCAs != shellCAs {
			return nil, attest.Fail(attest.ErrConfig, "server.config_changed",
				"the client authentication of the configuration returned by Server.Hook was changed; set it on the base before calling Hook")
		}
		t := tmpl
		// Read the protocols of the returned configuration at handshake
		// time: net/http adds "h2" and "http/1.1" to the configuration it
		// is given after Hook has returned.
		protos := cfg.NextProtos
		if userGetConfig != nil {
			uc, err := userGetConfig(hello)
			if err != nil {
				return nil, err
			}
			if uc != nil {
				t = s.prepare(uc)
				protos = t.NextProtos
			}
		}
		return s.connConfig(t, protos, hello)
	}
	return cfg
}

// errShellUsed is returned by a configuration from Hook used without its
// GetConfigForClient.
var errShellUsed = attest.Fail(attest.ErrConfig, "server.config_used_directly",
	"a configuration from Server.Hook was used without its GetConfigForClient (for example returned from another GetConfigForClient); return Server.Hook(yourConfig) itself")

// prepare returns a copy of base with the settings every attested
// connection needs, and no GetConfigForClient.
func (s *Server) prepare(base *tls.Config) *tls.Config {
	var cfg *tls.Config
	if base == nil {
		cfg = &tls.Config{}
	} else {
		cfg = base.Clone()
	}
	cfg.GetConfigForClient = nil
	cfg.MinVersion = tls.VersionTLS13
	cfg.MaxVersion = 0
	if !s.opts.EnableResumption {
		cfg.SessionTicketsDisabled = true
	}
	return cfg
}

// extQUICTransportParameters is the quic_transport_parameters TLS
// extension (RFC 9001, section 8.2): every QUIC ClientHello carries it, no
// TLS-over-TCP one may.
const extQUICTransportParameters = 57

// connConfig builds the configuration of one connection.
func (s *Server) connConfig(tmpl *tls.Config, protos []string, hello *tls.ClientHelloInfo) (*tls.Config, error) {
	ctx := hello.Context()
	// Refuse what the handshake would refuse anyway before spending an
	// attestation on it.
	if !slices.Contains(hello.SupportedVersions, tls.VersionTLS13) {
		return nil, attest.Fail(attest.ErrConfig, "tls.version", "the client does not offer TLS 1.3, which attested TLS requires")
	}
	clientNonce, found, appProtos, err := splitALPN(hello.SupportedProtos)
	if err != nil {
		return nil, err
	}
	cfg := tmpl.Clone()
	cfg.NextProtos = slices.Clone(protos)
	if found && len(appProtos) == 0 {
		if slices.Contains(hello.Extensions, extQUICTransportParameters) {
			// QUIC has no "no protocol": RFC 9001, section 8.1 requires
			// an application protocol to be negotiated. Clearing
			// NextProtos (as below for TCP) would let crypto/tls accept
			// the connection with none and hand it to an application
			// that expects its own protocol; refuse it, and say why.
			err := attest.Fail(attest.ErrConfig, "tls.alpn", "QUIC client offered no application protocol besides the atls nonce (server protocols %q); QUIC requires one (RFC 9001, section 8.1)", tmpl.NextProtos)
			if s.opts.Logger != nil {
				s.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "atls: refusing a QUIC client without an application protocol", slog.String("error", err.Error()))
			}
			return nil, err
		}
		// The client offered no protocol of its own: negotiate none
		// rather than fail with no_application_protocol.
		cfg.NextProtos = nil
	}

	if s.opts.Attester != nil {
		var cert *tls.Certificate
		switch {
		case s.opts.Freshness == FreshnessNonce && found:
			cert, err = s.issueNonce(ctx, hello.Conn, clientNonce)
			if err != nil && s.static != nil && !errors.Is(err, errPeerGone) && ctx.Err() == nil {
				// Overloaded, or the attester failed: serve static
				// evidence, which clients that accept it can still
				// check, rather than nothing.
				s.log(ctx, slog.LevelWarn, "atls: serving the static certificate instead of a nonce-bound one", hello, err)
				cert, err = s.static.Current(ctx)
			}
		case s.static != nil:
			cert, err = s.static.Current(ctx)
		default:
			err = attest.Fail(attest.ErrBinding, "nonce.missing", "client sent no nonce and this server requires one (nonce freshness, no static fallback): an ordinary TLS client (curl, a health probe) gets an internal_error alert; serve it with ServerOptions.StaticFallback, or connect with an atls client")
		}
		if err != nil {
			// crypto/tls answers an error from GetConfigForClient with
			// an internal_error alert whatever it is, so the client
			// cannot tell the cause: it is named here, in the server's
			// log (check name and peer address).
			s.log(ctx, slog.LevelWarn, "atls: cannot serve an attested certificate", hello, err)
			return nil, err
		}
		cfg.Certificates = nil
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }
	}

	if s.peer != nil {
		serverNonce, err := newNonce()
		if err != nil {
			return nil, err
		}
		dn, err := nonceDN(serverNonce)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		// Only the subject is ever read from this pool: it fills the
		// certificate_authorities list of the CertificateRequest.
		pool.AddCert(&x509.Certificate{Raw: dn, RawSubject: dn})
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAnyClientCert
		peer := s.peer
		userVerify := peer.scope(cfg.VerifyConnection)
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			claims, err := peer.verify(ctx, cs, &serverNonce)
			if err != nil {
				return err
			}
			// For ClaimsFromContext: the connection's record, if any.
			recordClaims(ctx, claims)
			if userVerify != nil {
				return userVerify(cs)
			}
			return nil
		}
	}
	return cfg, nil
}

// errPeerGone marks the failure of a handshake whose client closed or
// reset its connection before the server attested for it.
var errPeerGone = errors.New("the client closed its connection before the server attested for it")

// checkPeer fails when the client of conn has already gone, so that no
// attestation is spent on a dead connection (a replayed ClientHello
// followed by a reset costs the sender nothing).
func checkPeer(conn net.Conn) error {
	if conn == nil {
		return nil
	}
	if err := peerGone(conn); err != nil {
		return &attest.CheckError{Kind: attest.ErrBusy, Check: "server.peer_gone", Err: fmt.Errorf("%w: %w", errPeerGone, err)}
	}
	return nil
}

// issueNonce makes a certificate bound to the client's nonce: batched, or
// after a bounded wait for a free attestation slot. conn, when set, is the
// client's connection: its source address is counted, and it is checked
// for liveness before the attestation is spent.
func (s *Server) issueNonce(ctx context.Context, conn net.Conn, nonce [attest.NonceSize]byte) (*tls.Certificate, error) {
	src, hasSrc := sourceOf(conn)
	if err := s.admit.enter(src, hasSrc); err != nil {
		return nil, err
	}
	defer s.admit.leave(src, hasSrc)
	if err := checkPeer(conn); err != nil {
		return nil, err
	}
	if s.batcher != nil {
		actx, cancel := context.WithTimeout(ctx, s.wait)
		defer cancel()
		req := s.request(attest.ModeBatch, nonce)
		req.Attester = s.batcher
		cert, err := certgen.Issue(actx, req)
		if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, attest.Fail(attest.ErrBusy, "server.busy", "no report for this handshake's batch within %v", s.wait)
		}
		return cert, err
	}
	if s.slots != nil {
		timer := time.NewTimer(s.wait)
		defer timer.Stop()
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		case <-timer.C:
			return nil, attest.Fail(attest.ErrBusy, "server.busy", "none of %d attestation slots became free within %v", cap(s.slots), s.wait)
		case <-ctx.Done():
			return nil, fmt.Errorf("atls: waiting for one of %d attestation slots: %w", cap(s.slots), ctx.Err())
		}
		// The wait may have outlived the client.
		if err := checkPeer(conn); err != nil {
			return nil, err
		}
	}
	return certgen.Issue(ctx, s.request(attest.ModeNonce, nonce))
}

// log writes one line about the handshake of hello, when a Logger is set.
func (s *Server) log(ctx context.Context, level slog.Level, msg string, hello *tls.ClientHelloInfo, err error) {
	if s.opts.Logger == nil {
		return
	}
	attrs := []slog.Attr{slog.String("error", err.Error())}
	if check := attest.FailedCheck(err); check != "" {
		attrs = append(attrs, slog.String("check", check))
	}
	if hello != nil && hello.Conn != nil {
		attrs = append(attrs, slog.String("remote", hello.Conn.RemoteAddr().String()))
	}
	s.opts.Logger.LogAttrs(ctx, level, msg, attrs...)
}

// Close stops the background renewal of the static certificate and waits
// for it to end. Handshakes keep working; a static certificate that comes
// due is then renewed synchronously. Close is idempotent and always
// returns nil.
func (s *Server) Close() error {
	if s.static != nil {
		s.static.Close()
	}
	return nil
}

// Batcher returns the batcher of a batching server (nil when the server
// does not batch), for example to read how many reports it requested.
func (s *Server) Batcher() *attest.Batcher {
	return s.batcher
}

// PeerClaims returns the verified claims of the client of a connection
// accepted with this Server's configuration (mutual attestation only).
// ok is false when the client was not verified by this Server, and once
// the claims have expired or were evicted: they are kept, by the client's
// certificate, until that certificate expires (NotAfter, about ten
// minutes after a nonce handshake; for static evidence, also its maximum
// age) in a store of DefaultClaimsSize entries, not for the life of the
// connection. On connections that may outlive the certificate (HTTP/2,
// HTTP/3, gRPC) use ClaimsFromContext with ConnContext,
// atlsquic.ConnClaims or atlsgrpc.ClaimsFromContext, which answer for as
// long as the connection lives.
func (s *Server) PeerClaims(cs tls.ConnectionState) (*attest.Claims, bool) {
	if s.peer == nil || !cs.HandshakeComplete {
		return nil, false
	}
	return s.peer.peerClaims(cs)
}
