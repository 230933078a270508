package atls

import (
	"context"
	"time"

	"github.com/confidential-go/atls/atls/attest"
)

// Trace is a set of callbacks a Server or Client calls as it attests and
// verifies, for metrics and tracing (see examples/metrics). Set it in
// ServerOptions.Trace or ClientOptions.Trace; any field may be nil, and a
// nil field costs nothing (not even a clock reading).
//
// The callbacks are called synchronously, from the goroutine of the
// handshake that caused them and possibly from many at once: they must be
// safe for concurrent use, return quickly and never block (increment a
// counter, observe a histogram), or they delay the handshakes. They cannot
// change any decision.
type Trace struct {
	// AttestStart is called before this side asks its Attester for a
	// report. A batching server asks once per batch.
	AttestStart func(AttestStartInfo)
	// AttestDone is called when that report is made or has failed.
	AttestDone func(AttestDoneInfo)
	// VerifyDone is called when this side has appraised a peer's
	// evidence, accepted or refused, including the Authorize function.
	// Every call of the configuration's VerifyConnection counts, a peer
	// refused before its evidence is read included (with the check that
	// refused it); a handshake crypto/tls ends before VerifyConnection (a
	// client sending no certificate to a server that requires one) is
	// not reported.
	VerifyDone func(VerifyDoneInfo)
	// CacheLookup is called on each lookup in the verification caches.
	CacheLookup func(CacheLookupInfo)
}

// AttestStartInfo describes an attestation about to start.
type AttestStartInfo struct {
	// Role is this side's role; Mode the freshness of the evidence being
	// made (ModeBatch for a batching server's shared report).
	Role attest.Role
	Mode attest.Mode
}

// AttestDoneInfo describes a finished attestation.
type AttestDoneInfo struct {
	Role    attest.Role
	Mode    attest.Mode
	Latency time.Duration // how long the Attester took
	Err     error         // nil on success
}

// VerifyDoneInfo describes the appraisal of one peer in one handshake.
type VerifyDoneInfo struct {
	// Role is the peer's role: RoleServer on a Client, RoleClient on a
	// Server.
	Role attest.Role
	// Mode is the freshness of the peer's evidence; it is set only when
	// Err is nil.
	Mode attest.Mode
	// Latency is the time spent appraising, Authorize included.
	Latency time.Duration
	// Check names the check that refused the peer ("" when accepted; see
	// docs/CHECKS.md), Err is the refusal (nil when accepted).
	Check string
	Err   error
}

// CacheLevel names one of the verification caches of a Server or Client.
type CacheLevel string

const (
	// CacheCertificate holds verdicts on static-mode certificates, by
	// certificate: a hit skips every check.
	CacheCertificate CacheLevel = "certificate"
	// CacheEvidence holds the verifier's appraisals, by evidence and
	// expected REPORT_DATA (static and batched evidence).
	CacheEvidence CacheLevel = "evidence"
)

// CacheLookupInfo describes one lookup in a verification cache.
type CacheLookupInfo struct {
	Level CacheLevel
	Hit   bool
}

// cacheLookup reports a lookup in the cache level.
func (t *Trace) cacheLookup(level CacheLevel, hit bool) {
	if t != nil && t.CacheLookup != nil {
		t.CacheLookup(CacheLookupInfo{Level: level, Hit: hit})
	}
}

// verifyStart returns the time an appraisal starts, when VerifyDone
// wants it.
func (t *Trace) verifyStart() time.Time {
	if t == nil || t.VerifyDone == nil {
		return time.Time{}
	}
	return time.Now()
}

// verifyDone reports an appraisal that started at start.
func (t *Trace) verifyDone(role attest.Role, claims *attest.Claims, start time.Time, err error) {
	if t == nil || t.VerifyDone == nil {
		return
	}
	info := VerifyDoneInfo{Role: role, Latency: time.Since(start), Err: err}
	if err != nil {
		info.Check = attest.FailedCheck(err)
	} else if claims != nil {
		info.Mode = claims.Mode
	}
	t.VerifyDone(info)
}

// tracedAttester reports each attestation of a to a Trace.
type tracedAttester struct {
	a    attest.Attester
	t    *Trace
	role attest.Role
	mode attest.Mode
}

// traceAttester returns a with its attestations reported to t, or a
// itself when t has nothing to report them to.
func traceAttester(a attest.Attester, t *Trace, role attest.Role, mode attest.Mode) attest.Attester {
	if a == nil || t == nil || (t.AttestStart == nil && t.AttestDone == nil) {
		return a
	}
	return &tracedAttester{a: a, t: t, role: role, mode: mode}
}

// Attest implements attest.Attester.
func (ta *tracedAttester) Attest(ctx context.Context, reportData [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	if ta.t.AttestStart != nil {
		ta.t.AttestStart(AttestStartInfo{Role: ta.role, Mode: ta.mode})
	}
	start := time.Now()
	ev, err := ta.a.Attest(ctx, reportData)
	if ta.t.AttestDone != nil {
		ta.t.AttestDone(AttestDoneInfo{Role: ta.role, Mode: ta.mode, Latency: time.Since(start), Err: err})
	}
	return ev, err
}
