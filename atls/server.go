package atls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
)

// Freshness selects how an attester proves its evidence is current.
type Freshness int

const (
	// FreshnessNonce (the default) binds every certificate to the peer's
	// fresh nonce: one attestation per handshake, no replay.
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

	// MaxConcurrentAttestations bounds how many nonce-bound certificates
	// are being made at once. In nonce mode every ClientHello costs one
	// attestation before the client has proved anything, so a flood of
	// ClientHellos would otherwise queue unbounded work on the secure
	// processor. Handshakes beyond the bound wait up to five seconds, then
	// get the static certificate if StaticFallback is set, or fail. Zero
	// means DefaultMaxConcurrentAttestations; negative means no bound.
	MaxConcurrentAttestations int

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
}

// DefaultMaxConcurrentAttestations is the default bound on concurrent
// nonce-bound attestations of one Server.
const DefaultMaxConcurrentAttestations = 16

// Server makes server-side tls.Configs. Create it with NewServer.
type Server struct {
	opts   ServerOptions
	static *certgen.Static
	peer   *peerCheck    // nil unless ClientVerifier is set
	slots  chan struct{} // bounds concurrent attestations; nil: no bound
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
	s := &Server{opts: opts}
	switch n := opts.MaxConcurrentAttestations; {
	case n == 0:
		s.slots = make(chan struct{}, DefaultMaxConcurrentAttestations)
	case n > 0:
		s.slots = make(chan struct{}, n)
	}
	if opts.Attester != nil && (opts.Freshness == FreshnessStatic || opts.StaticFallback) {
		st, err := certgen.NewStatic(s.request(attest.ModeStatic, [attest.NonceSize]byte{}))
		if err != nil {
			return nil, err
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
			cache:        newCache(opts.CacheSize),
			claims:       newCache(DefaultClaimsSize),
			logger:       opts.Logger,
		}
	}
	return s, nil
}

func (s *Server) request(mode attest.Mode, nonce [attest.NonceSize]byte) certgen.Request {
	return certgen.Request{
		Attester:   s.opts.Attester,
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
			cert, err = s.issueNonce(ctx, clientNonce)
			if errors.Is(err, errSlotsBusy) && s.static != nil {
				// Overloaded: serve static evidence, which clients that
				// accept it can still check, rather than nothing.
				cert, err = s.static.Certificate(ctx)
			}
		case s.static != nil:
			cert, err = s.static.Certificate(ctx)
		default:
			err = attest.Fail(attest.ErrBinding, "nonce.missing", "client sent no nonce and this server requires one (nonce freshness, no static fallback)")
		}
		if err != nil {
			if s.opts.Logger != nil {
				s.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "atls: cannot serve an attested certificate", slog.String("error", err.Error()))
			}
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
		userVerify := cfg.VerifyConnection
		peer := s.peer
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if _, err := peer.verify(ctx, cs, &serverNonce); err != nil {
				return err
			}
			if userVerify != nil {
				return userVerify(cs)
			}
			return nil
		}
	}
	return cfg, nil
}

// attestationWait bounds how long a handshake waits for an attestation
// slot, so that a flood of ClientHellos cannot park handshakes forever.
const attestationWait = 5 * time.Second

// errSlotsBusy reports that no attestation slot became free in time.
var errSlotsBusy = errors.New("atls: all attestation slots stayed busy")

// issueNonce makes a certificate bound to the client's nonce, waiting a
// bounded time for a free attestation slot first.
func (s *Server) issueNonce(ctx context.Context, nonce [attest.NonceSize]byte) (*tls.Certificate, error) {
	if s.slots != nil {
		timer := time.NewTimer(attestationWait)
		defer timer.Stop()
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		case <-timer.C:
			return nil, fmt.Errorf("%w (%d slots, waited %v)", errSlotsBusy, cap(s.slots), attestationWait)
		case <-ctx.Done():
			return nil, fmt.Errorf("atls: waiting for one of %d attestation slots: %w", cap(s.slots), ctx.Err())
		}
	}
	return certgen.Issue(ctx, s.request(attest.ModeNonce, nonce))
}

// PeerClaims returns the verified claims of the client of a connection
// accepted with this Server's configuration (mutual attestation only).
// ok is false when the client was not verified by this Server.
func (s *Server) PeerClaims(cs tls.ConnectionState) (*attest.Claims, bool) {
	if s.peer == nil || !cs.HandshakeComplete {
		return nil, false
	}
	return s.peer.peerClaims(cs)
}
