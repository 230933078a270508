package atls

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/confidential-go/atls/atls/attest"
)

// Session-bound attestation (mode "bound", interop/SPEC.md section 9):
// right after a TLS 1.3 handshake, and before any application data, each
// side sends one frame. An attested side sends evidence whose REPORT_DATA
// binds the connection's TLS exporter (with a label of its own role), the
// hash of the certificate it presented and the mode; the other side
// verifies it with REPORT_DATA it computes itself. The certificates can be
// anything: attested self-signed, ephemeral, or issued by a CA.

// Frame types of the bound exchange.
const (
	// BoundFrameEvidence carries a JSON CMW collection (the evidence).
	BoundFrameEvidence byte = 0x01
	// BoundFrameNoEvidence says the sender does not attest; its payload
	// is empty.
	BoundFrameNoEvidence byte = 0x02
	// BoundFrameReattest asks the peer for new evidence; its payload is
	// the requester's 32-byte nonce. Only streams dedicated to the
	// exchange carry it (QUIC), never a TCP connection's byte stream.
	BoundFrameReattest byte = 0x03
)

// Limits of the bound exchange.
const (
	// BoundFrameHeaderSize is the size of a frame header: a type byte
	// and a 3-byte big-endian payload length.
	BoundFrameHeaderSize = 4
	// MaxBoundFrameSize caps a frame's payload: the evidence of a
	// certificate (attest.MaxExtensionSize) plus room for the JSON.
	MaxBoundFrameSize = 96 << 10
	// DefaultBoundTimeout bounds the exchange when
	// BoundOptions.Timeout is zero.
	DefaultBoundTimeout = 10 * time.Second
	// DefaultMinReattestInterval is the least time between two HTTP
	// re-attestation requests answered on one connection when
	// BoundOptions.MinReattestInterval is zero.
	DefaultMinReattestInterval = 2 * time.Second
)

// BoundOptions configure one side of the bound exchange.
type BoundOptions struct {
	// Attester makes this side's evidence. Nil: this side does not
	// attest; it sends a no-evidence frame.
	Attester attest.Attester
	// Verifier appraises the peer's evidence. Nil: the peer is not
	// required to attest and whatever it sends is not appraised (its
	// claims are then nil). At least one of Attester and Verifier must be
	// set.
	Verifier attest.Verifier
	// Timeout bounds the whole exchange (attesting, sending, receiving and
	// verifying); 0 means DefaultBoundTimeout.
	Timeout time.Duration
	// MinReattestInterval is, on a server answering re-attestation
	// requests over HTTP (BoundReattestHandler), the least time between
	// two requests answered on one connection: each answer costs a report
	// (or a place in a batch), so a client may not ask at will. An earlier
	// request is refused with 429 Too Many Requests, which the client's
	// ReattestHTTP reports as check bound.reattest_rate. 0 means
	// DefaultMinReattestInterval; a negative value sets no limit.
	MinReattestInterval time.Duration
}

func (o *BoundOptions) minReattestInterval() time.Duration {
	if o.MinReattestInterval == 0 {
		return DefaultMinReattestInterval
	}
	return o.MinReattestInterval
}

func (o *BoundOptions) check(who string) error {
	if o.Attester == nil && o.Verifier == nil {
		return attest.Fail(attest.ErrConfig, "bound.options", "%s: neither an Attester nor a Verifier: nothing to attest or verify", who)
	}
	if o.Timeout < 0 {
		return attest.Fail(attest.ErrConfig, "bound.options", "%s: negative Timeout", who)
	}
	return nil
}

func (o *BoundOptions) timeout() time.Duration {
	if o.Timeout == 0 {
		return DefaultBoundTimeout
	}
	return o.Timeout
}

// boundExchange is one run of the bound exchange on a connection.
type boundExchange struct {
	opts *BoundOptions
	role attest.Role // this side's
	cs   tls.ConnectionState
	rw   io.ReadWriter
	// nonce is the verifier's nonce of a re-attestation; zero at first.
	nonce [attest.NonceSize]byte
}

func (x *boundExchange) peerRole() attest.Role {
	if x.role == attest.RoleServer {
		return attest.RoleClient
	}
	return attest.RoleServer
}

// checkBoundState refuses connections on which bound evidence means nothing.
func checkBoundState(cs tls.ConnectionState) error {
	if cs.Version != tls.VersionTLS13 {
		return attest.Fail(attest.ErrConfig, "tls.version", "bound mode needs TLS 1.3, negotiated 0x%04x", cs.Version)
	}
	if cs.DidResume {
		return attest.Fail(attest.ErrBinding, "bound.resumed", "bound mode refuses resumed sessions")
	}
	return nil
}

// boundBinding returns the binding of evidence sent by role on the
// connection of cs, with nonce.
func boundBinding(cs tls.ConnectionState, role attest.Role, leaf []byte, nonce [attest.NonceSize]byte) (attest.BoundBinding, error) {
	b := attest.BoundBinding{Role: role, Nonce: nonce}
	ekm, err := cs.ExportKeyingMaterial(attest.ExporterLabel(role), nil, attest.ExporterSize)
	if err != nil {
		return b, attest.Wrap(attest.ErrConfig, "bound.exporter", err)
	}
	copy(b.Exporter[:], ekm)
	if leaf != nil {
		b.LeafHash = sha256.Sum256(leaf)
	}
	return b, nil
}

func peerLeaf(cs tls.ConnectionState) []byte {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	return cs.PeerCertificates[0].Raw
}

// run sends this side's frame and reads, then checks, the peer's,
// concurrently, so that neither side waits on the other's send.
func (x *boundExchange) run(ctx context.Context, ownLeaf []byte) (*attest.Claims, error) {
	if err := checkBoundState(x.cs); err != nil {
		return nil, err
	}
	frame, err := x.ownFrame(ctx, ownLeaf)
	if err != nil {
		return nil, err
	}
	sent := make(chan error, 1)
	go func() { sent <- writeBoundFrame(x.rw, frame) }()
	claims, rerr := x.receive(ctx)
	if rerr != nil {
		return nil, rerr
	}
	if err := <-sent; err != nil {
		return nil, attest.Wrap(attest.ErrNotAttested, "bound.send", err)
	}
	return claims, nil
}

// ownFrame builds this side's frame: evidence bound to this connection,
// or a no-evidence frame.
func (x *boundExchange) ownFrame(ctx context.Context, ownLeaf []byte) ([]byte, error) {
	if x.opts.Attester == nil {
		return []byte{BoundFrameNoEvidence, 0, 0, 0}, nil
	}
	b, err := boundBinding(x.cs, x.role, ownLeaf, x.nonce)
	if err != nil {
		return nil, err
	}
	rd, err := b.ReportData()
	if err != nil {
		return nil, attest.Wrap(attest.ErrBinding, "binding", err)
	}
	ev, err := x.opts.Attester.Attest(ctx, rd)
	if err != nil {
		if attest.FailedCheck(err) != "" {
			return nil, err
		}
		return nil, attest.Wrap(attest.ErrUnsupported, "bound.attest", err)
	}
	if err := ev.SetBinding(x.role, attest.ModeBound); err != nil {
		return nil, attest.Wrap(attest.ErrMalformedEvidence, "bound.attest", err)
	}
	payload, err := ev.MarshalJSON()
	if err != nil {
		return nil, attest.Wrap(attest.ErrMalformedEvidence, "bound.attest", err)
	}
	return AppendBoundFrame(nil, BoundFrameEvidence, payload)
}

// receive reads the peer's frame and appraises it.
func (x *boundExchange) receive(ctx context.Context) (*attest.Claims, error) {
	typ, payload, err := ReadBoundFrame(x.rw)
	if err != nil {
		return nil, err
	}
	if typ == BoundFrameReattest {
		return nil, attest.Fail(attest.ErrMalformedEvidence, "bound.frame", "a re-attestation request where the first evidence was expected")
	}
	if typ == BoundFrameNoEvidence {
		if x.opts.Verifier != nil {
			return nil, attest.Fail(attest.ErrNotAttested, "bound.missing", "the peer sent no evidence")
		}
		return nil, nil
	}
	if x.opts.Verifier == nil {
		return nil, nil
	}
	return x.appraise(ctx, payload)
}

// appraise checks evidence received from the peer on this connection.
func (x *boundExchange) appraise(ctx context.Context, payload []byte) (*attest.Claims, error) {
	b, err := boundBinding(x.cs, x.peerRole(), peerLeaf(x.cs), x.nonce)
	if err != nil {
		return nil, err
	}
	return AppraiseBoundEvidence(ctx, x.opts.Verifier, payload, b)
}

// AppraiseBoundEvidence checks the payload of an evidence frame (a JSON CMW
// collection) against the binding its receiver computed itself: the
// binding record must name want.Role and mode bound, and the report must
// carry want's REPORT_DATA (or, with a batch proof, the batch REPORT_DATA
// of a root that includes it); then v appraises it. It is the check that
// BoundListener, BoundDialer and package atlsquic run, exposed for
// verifiers of recorded frames (interop vectors).
func AppraiseBoundEvidence(ctx context.Context, v attest.Verifier, payload []byte, want attest.BoundBinding) (*attest.Claims, error) {
	if v == nil {
		return nil, attest.Fail(attest.ErrConfig, "bound.options", "no Verifier")
	}
	ev, err := attest.ParseCollection(payload)
	if err != nil {
		return nil, err
	}
	params, err := ev.Binding()
	if err != nil {
		return nil, err
	}
	if params.Role != want.Role {
		return nil, attest.Fail(attest.ErrBinding, "binding.role", "evidence was made for a %v, expected a %v", params.Role, want.Role)
	}
	if params.Mode != attest.ModeBound {
		return nil, attest.Fail(attest.ErrBinding, "bound.mode", "%v-mode evidence where session-bound evidence is required", params.Mode)
	}
	rd, err := attest.ExpectedBoundReportData(ev, want)
	if err != nil {
		return nil, err
	}
	claims, err := v.Verify(ctx, ev, rd)
	if err != nil {
		return nil, err
	}
	if claims == nil {
		return nil, attest.Fail(attest.ErrVerification, "verifier", "the verifier returned no claims")
	}
	out := claims.Clone()
	out.Role, out.Mode = params.Role, attest.ModeBound
	d, err := ev.Digest()
	if err != nil {
		return nil, err
	}
	out.EvidenceDigest = d[:]
	return out, nil
}

// AppendBoundFrame appends a frame of type typ to dst. It fails with
// check bound.frame_size for a payload over MaxBoundFrameSize.
func AppendBoundFrame(dst []byte, typ byte, payload []byte) ([]byte, error) {
	if len(payload) > MaxBoundFrameSize {
		return nil, attest.Fail(attest.ErrMalformedEvidence, "bound.frame_size", "a %d-byte payload exceeds the %d-byte frame limit", len(payload), MaxBoundFrameSize)
	}
	n := len(payload)
	dst = append(dst, typ, byte(n>>16), byte(n>>8), byte(n))
	return append(dst, payload...), nil
}

func writeBoundFrame(w io.Writer, frame []byte) error {
	_, err := w.Write(frame)
	return err
}

// ReadBoundFrame reads one frame and returns its type and payload. Its errors name the check: bound.missing
// (the peer closed before sending a byte), bound.frame (an unknown type or a
// truncated frame), bound.frame_size (a length over MaxBoundFrameSize, seen
// in the header before any payload is read) and bound.timeout.
func ReadBoundFrame(r io.Reader) (byte, []byte, error) {
	var hdr [BoundFrameHeaderSize]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return 0, nil, attest.Fail(attest.ErrNotAttested, "bound.missing", "the peer closed the connection without sending evidence")
		}
		return 0, nil, readFrameError(err, "header")
	}
	typ := hdr[0]
	n := int(binary.BigEndian.Uint32(hdr[:]) & 0xffffff)
	switch typ {
	case BoundFrameEvidence:
	case BoundFrameReattest:
		if n != attest.NonceSize {
			return 0, nil, attest.Fail(attest.ErrMalformedEvidence, "bound.frame", "a re-attestation request with a %d-byte payload", n)
		}
	case BoundFrameNoEvidence:
		if n != 0 {
			return 0, nil, attest.Fail(attest.ErrMalformedEvidence, "bound.frame", "a no-evidence frame with a %d-byte payload", n)
		}
	default:
		return 0, nil, attest.Fail(attest.ErrMalformedEvidence, "bound.frame", "unknown frame type 0x%02x (application data before the evidence?)", typ)
	}
	if n > MaxBoundFrameSize {
		return 0, nil, attest.Fail(attest.ErrMalformedEvidence, "bound.frame_size", "the peer announced a %d-byte frame, over the %d-byte limit", n, MaxBoundFrameSize)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, readFrameError(err, "payload")
	}
	return typ, payload, nil
}

func readFrameError(err error, part string) error {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, context.DeadlineExceeded) {
		return attest.Wrap(attest.ErrNotAttested, "bound.timeout", fmt.Errorf("frame %s: %w", part, err))
	}
	return attest.Wrap(attest.ErrMalformedEvidence, "bound.frame", fmt.Errorf("truncated frame %s: %w", part, err))
}

// BoundSession is the bound protocol of one connection, for transports that
// run it on a stream of their own (package atlsquic); BoundListener and
// BoundDialer use it over TCP.
type BoundSession struct {
	// Options configure this side.
	Options *BoundOptions
	// Role is this side's role.
	Role attest.Role
	// State is the connection's TLS state, after the handshake.
	State tls.ConnectionState
	// OwnLeaf is the DER certificate this side presented, nil if none.
	OwnLeaf []byte
}

func (s *BoundSession) exchange(rw io.ReadWriter, nonce [attest.NonceSize]byte) *boundExchange {
	return &boundExchange{opts: s.Options, role: s.Role, cs: s.State, rw: rw, nonce: nonce}
}

// Exchange sends this side's frame on rw and reads and checks the peer's;
// it returns the peer's claims (nil when Options.Verifier is nil). The
// caller bounds it with a deadline on rw.
func (s *BoundSession) Exchange(ctx context.Context, rw io.ReadWriter) (*attest.Claims, error) {
	return s.exchange(rw, [attest.NonceSize]byte{}).run(ctx, s.OwnLeaf)
}

// Evidence returns this side's frame for a re-attestation request with
// nonce: evidence bound to the connection and the nonce, or a no-evidence
// frame without an Attester.
func (s *BoundSession) Evidence(ctx context.Context, nonce [attest.NonceSize]byte) ([]byte, error) {
	if err := checkBoundState(s.State); err != nil {
		return nil, err
	}
	return s.exchange(nil, nonce).ownFrame(ctx, s.OwnLeaf)
}

// Verify appraises the peer's answer (frame type and payload) to a
// re-attestation request carrying nonce.
func (s *BoundSession) Verify(ctx context.Context, typ byte, payload []byte, nonce [attest.NonceSize]byte) (*attest.Claims, error) {
	if err := checkBoundState(s.State); err != nil {
		return nil, err
	}
	x := s.exchange(nil, nonce)
	switch {
	case x.opts.Verifier == nil:
		return nil, attest.Fail(attest.ErrConfig, "bound.options", "re-attestation without a Verifier")
	case typ == BoundFrameNoEvidence:
		return nil, attest.Fail(attest.ErrNotAttested, "bound.missing", "the peer sent no evidence")
	case typ != BoundFrameEvidence:
		return nil, attest.Fail(attest.ErrMalformedEvidence, "bound.frame", "frame type 0x%02x where evidence was expected", typ)
	}
	return x.appraise(ctx, payload)
}
