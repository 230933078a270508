package atls

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"time"

	"github.com/confidential-go/atls/atls/attest"
)

// Re-attestation over HTTP (interop/SPEC.md section 9.5): the client asks,
// on a bound connection, for new evidence bound to that connection's
// exporter and a fresh nonce of its own, at a well-known path; the server
// answers with an evidence frame made for that connection. Only the
// client re-attests the server this way (an HTTP server sends no
// requests).

// ReattestPath is the path of re-attestation requests:
// GET ReattestPath?nonce=<64 hex digits>, answered with one frame
// (ReattestMediaType).
const ReattestPath = "/.well-known/atls/reattest"

// ReattestMediaType is the media type of a re-attestation answer: one
// frame of SPEC.md section 9.3.
const ReattestMediaType = "application/vnd.atls.bound-frame"

// BoundReattestHandler answers re-attestation requests at ReattestPath on
// connections accepted by a BoundListener or NewBoundHTTPListener (with
// BoundConnContext as the server's ConnContext), and passes every other
// request to next. A request on any other connection gets 421 Misdirected
// Request; one that comes sooner than the server's
// BoundOptions.MinReattestInterval after the last one answered on the
// same connection gets 429 Too Many Requests with a Retry-After header
// (check bound.reattest_rate), and no report is made for it.
func BoundReattestHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != ReattestPath {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		bc, _ := r.Context().Value(boundConnKey{}).(*BoundConn)
		if bc == nil || bc.sess == nil {
			http.Error(w, "not a bound connection", http.StatusMisdirectedRequest)
			return
		}
		var nonce [attest.NonceSize]byte
		if b, err := hex.DecodeString(r.URL.Query().Get("nonce")); err != nil || len(b) != attest.NonceSize {
			http.Error(w, "nonce: want 64 hex digits", http.StatusBadRequest)
			return
		} else {
			copy(nonce[:], b)
		}
		if ok, wait := bc.allowReattest(time.Now()); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
			http.Error(w, "bound.reattest_rate: too many re-attestation requests on this connection", http.StatusTooManyRequests)
			return
		}
		frame, err := bc.sess.Evidence(r.Context(), nonce)
		if err != nil {
			http.Error(w, "no evidence: "+attest.FailedCheck(err), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", ReattestMediaType)
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(frame)
	})
}

// ReattestHTTP re-attests the server of one bound connection of hc: it
// sends GET base+ReattestPath with a fresh nonce, and checks the answer
// against the exporter of the connection the request went out on (which
// must be bound: hc's transport from BoundDialer.Transport) and the
// nonce. On failure it closes that connection, so that no further request
// uses it, and returns the error naming the check (a refusal because
// requests come too often, bound.reattest_rate, included: a client cannot
// tell a rate limit from a server avoiding re-attestation); on success it
// returns the server's new claims. base is the server's origin, "https://host:port".
//
// The transport chooses the connection: with several open connections to
// the server, each call re-attests one of them.
func ReattestHTTP(ctx context.Context, hc *http.Client, base string) (*attest.Claims, error) {
	var nonce [attest.NonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, attest.Wrap(attest.ErrConfig, "bound.reattest", err)
	}
	var bc *BoundConn
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { bc = asBoundConn(info.Conn) }}
	url := strings.TrimSuffix(base, "/") + ReattestPath + "?nonce=" + hex.EncodeToString(nonce[:])
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
	if err != nil {
		return nil, attest.Wrap(attest.ErrConfig, "bound.options", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, attest.Wrap(attest.ErrNotAttested, "bound.reattest", err)
	}
	defer resp.Body.Close()
	claims, err := checkReattestResponse(ctx, bc, resp, nonce)
	if err != nil {
		if bc != nil {
			bc.Close()
		}
		return nil, err
	}
	bc.mu.Lock()
	bc.claims = claims
	bc.mu.Unlock()
	return claims.Clone(), nil
}

func checkReattestResponse(ctx context.Context, bc *BoundConn, resp *http.Response, nonce [attest.NonceSize]byte) (*attest.Claims, error) {
	if bc == nil || bc.sess == nil {
		return nil, attest.Fail(attest.ErrConfig, "bound.options", "the request did not go out on a bound connection (use BoundDialer.Transport)")
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return nil, attest.Fail(attest.ErrBusy, "bound.reattest_rate", "the server refuses re-attestation requests this often on one connection (Retry-After %q)", resp.Header.Get("Retry-After"))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, attest.Fail(attest.ErrNotAttested, "bound.missing", "the server answered %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != ReattestMediaType {
		return nil, attest.Fail(attest.ErrMalformedEvidence, "bound.frame", "answer of type %q, want %q", ct, ReattestMediaType)
	}
	body := io.LimitReader(resp.Body, BoundFrameHeaderSize+MaxBoundFrameSize+1)
	typ, payload, err := ReadBoundFrame(body)
	if err != nil {
		return nil, err
	}
	if n, _ := body.Read(make([]byte, 1)); n != 0 {
		return nil, attest.Fail(attest.ErrMalformedEvidence, "bound.frame", "data after the frame")
	}
	return bc.sess.Verify(ctx, typ, payload, nonce)
}

// HTTPReattester re-attests the server of an HTTP client's bound
// connections periodically.
type HTTPReattester struct {
	// Client's transport must come from BoundDialer.Transport.
	Client *http.Client
	// Base is the server's origin, "https://host:port".
	Base string
	// Interval is the time between re-attestations; it must be positive,
	// and not shorter than the server's BoundOptions.MinReattestInterval
	// (by default DefaultMinReattestInterval), or the server refuses
	// requests and the connection is closed.
	Interval time.Duration
	// OnFailure, when set, hears each failed re-attestation (the
	// connection is already closed). Nil: failures are only returned by
	// Run when ctx ends.
	OnFailure func(err error)
}

// Run re-attests every Interval until ctx ends, and returns the last
// failure, if any, joined with ctx's error.
func (h *HTTPReattester) Run(ctx context.Context) error {
	if h.Interval <= 0 || h.Client == nil {
		return attest.Fail(attest.ErrConfig, "bound.options", "HTTPReattester needs a Client and a positive Interval")
	}
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			return errors.Join(last, ctx.Err())
		case <-t.C:
			if _, err := ReattestHTTP(ctx, h.Client, h.Base); err != nil && ctx.Err() == nil {
				last = fmt.Errorf("re-attestation of %s: %w", h.Base, err)
				if h.OnFailure != nil {
					h.OnFailure(err)
				}
			}
		}
	}
}
