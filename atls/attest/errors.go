package attest

import (
	"errors"
	"fmt"
)

// Sentinel errors classify every failure. Test with errors.Is; get the
// failed check's name with errors.As and *CheckError.
var (
	// ErrNotAttested: the peer presented no evidence at all.
	ErrNotAttested = errors.New("peer is not attested")
	// ErrMalformedEvidence: evidence is present but cannot be decoded
	// (bad extension, oversized, unknown version or label, wrong length).
	ErrMalformedEvidence = errors.New("malformed evidence")
	// ErrVerification: the evidence is not authentic: the hardware
	// certificate chain, the report signature or the root of trust.
	ErrVerification = errors.New("evidence verification failed")
	// ErrBinding: the evidence is authentic but not bound to this
	// connection: wrong key, nonce, role, mode or validity.
	ErrBinding = errors.New("evidence binding failed")
	// ErrPolicy: the evidence is authentic and bound, but the reported
	// state is not acceptable under the verifier's policy.
	ErrPolicy = errors.New("policy check failed")
	// ErrConfig: the local configuration is unusable (for example an
	// empty policy, or no roots of trust).
	ErrConfig = errors.New("invalid configuration")
	// ErrUnsupported: the platform or product is not supported here (for
	// example no SEV-SNP device, or a product the verifier cannot parse).
	ErrUnsupported = errors.New("unsupported")
	// ErrBusy: the attester (or a queue in front of it) is saturated and
	// refused the request rather than wait without bound. The request may
	// succeed later; a server may serve static evidence instead.
	ErrBusy = errors.New("attester busy")
)

// CheckError names the check that failed. Kind is one of the sentinel
// errors above; Err, when set, is the underlying cause.
type CheckError struct {
	Kind  error
	Check string
	Err   error
}

func (e *CheckError) Error() string {
	kind := "error"
	if e.Kind != nil {
		kind = e.Kind.Error()
	}
	if e.Err == nil {
		return fmt.Sprintf("atls: %s: check %q", kind, e.Check)
	}
	return fmt.Sprintf("atls: %s: check %q: %v", kind, e.Check, e.Err)
}

// Unwrap lets errors.Is match both the kind and the cause.
func (e *CheckError) Unwrap() []error {
	out := make([]error, 0, 2)
	if e.Kind != nil {
		out = append(out, e.Kind)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

// Fail returns a *CheckError of the given kind for check, with a formatted
// cause.
func Fail(kind error, check, format string, args ...any) error {
	return &CheckError{Kind: kind, Check: check, Err: fmt.Errorf(format, args...)}
}

// Wrap returns a *CheckError of the given kind for check around err. A nil
// err yields nil.
func Wrap(kind error, check string, err error) error {
	if err == nil {
		return nil
	}
	return &CheckError{Kind: kind, Check: check, Err: err}
}

// FailedCheck returns the name of the first check named in err's chain, or
// "" if there is none.
func FailedCheck(err error) string {
	var ce *CheckError
	if errors.As(err, &ce) {
		return ce.Check
	}
	return ""
}
