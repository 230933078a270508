package main

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/quic-go/quic-go"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
)

// cliError carries the exit code of a failure.
type cliError struct {
	code int
	err  error
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

// usageErr is a usage error (exit 2) that the command prints with its
// synopsis.
type usageErr struct{ msg string }

func (e *usageErr) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageErr{msg: fmt.Sprintf(format, args...)}
}

// configError marks an unusable configuration (a policy or roots file):
// exit 2.
func configError(err error) error {
	if err == nil {
		return nil
	}
	return &cliError{code: exitUsage, err: err}
}

// verifyError classifies the failure of an appraisal: exit 3, 4 or 5 by
// its kind. Other errors (network, I/O) keep exit 1.
func verifyError(err error) error {
	if err == nil {
		return nil
	}
	return &cliError{code: verifyExitCode(err), err: err}
}

// verifyExitCode maps the kind of the first check error in err's chain
// (or, failing that, any sentinel in the chain) to an exit code.
func verifyExitCode(err error) int {
	kind := error(nil)
	var ce *attest.CheckError
	if errors.As(err, &ce) {
		kind = ce.Kind
	}
	is := func(target error) bool {
		if kind != nil {
			return kind == target
		}
		return errors.Is(err, target)
	}
	switch {
	case is(atls.ErrNotAttested):
		return exitNotAttested
	case is(atls.ErrPolicy):
		return exitPolicy
	case is(atls.ErrVerification), is(atls.ErrBinding), is(atls.ErrMalformedEvidence), is(atls.ErrUnsupported):
		return exitVerify
	case is(atls.ErrConfig):
		return exitUsage
	}
	return exitFailure
}

// finish prints err for command name (on one line) and returns its exit
// code; nil is exitOK.
func finish(e *env, spec *cmdSpec, err error) int {
	if err == nil {
		return exitOK
	}
	var ue *usageErr
	if errors.As(err, &ue) {
		return usageFail(e, spec, "%s", ue.msg)
	}
	fmt.Fprintf(e.stderr, "atls %s: %s\n", spec.name, oneLine(err))
	var ce *cliError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitFailure
}

// oneLine formats err on a single line, without the library's "atls: "
// prefix (the command names itself). Errors may quote what a peer sent,
// so the line goes through printable.
func oneLine(err error) string {
	s := strings.TrimPrefix(err.Error(), "atls: ")
	s = strings.ReplaceAll(s, ": atls: ", ": ")
	s = strings.ReplaceAll(s, "\r\n", "; ")
	return printable(strings.ReplaceAll(s, "\n", "; "))
}

// withHint adds advice for common failures to an appraisal error.
func withHint(err error, rootsGiven bool) error {
	if err == nil {
		return nil
	}
	hint := ""
	switch attest.FailedCheck(err) {
	case "snp.vcek.chain":
		if !rootsGiven {
			hint = "the evidence does not chain to AMD's roots; if the peer is simulated, trust the simulator explicitly with --roots (atls roots export --simulate > sim-roots.pem)"
		}
	case "binding.freshness":
		hint = "the certificate is static-mode evidence: add --accept-static (and --max-age) to accept it"
	case "binding.nonce":
		hint = "the certificate is bound to a nonce: pass the nonce it was made for with --nonce"
	case "binding.role":
		hint = "check --role"
	}
	if hint == "" {
		return err
	}
	return &hintError{err: err, hint: hint}
}

type hintError struct {
	err  error
	hint string
}

func (h *hintError) Error() string { return h.err.Error() + " (hint: " + h.hint + ")" }
func (h *hintError) Unwrap() error { return h.err }

// handshakeError explains a handshake that the peer refused.
func handshakeError(err error, attesting bool) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return refusedError("the server refused the TLS handshake", oe, attesting)
	}
	return err
}

func refusedError(what string, err error, attesting bool) error {
	msg := what + " (%v)"
	if attesting {
		msg += "; it may not accept this client's evidence: check the server's policy and log"
	} else {
		msg += "; if it requires attested clients, use --attest"
	}
	return fmt.Errorf(msg, err)
}

// quicError explains the failure of an HTTP/3 request: a handshake that
// the server refused (a TLS alert in a QUIC CONNECTION_CLOSE), or no
// QUIC server at all.
func quicError(err error, attesting bool, host string) error {
	var te *quic.TransportError
	if errors.As(err, &te) && te.Remote && te.ErrorCode.IsCryptoError() {
		return refusedError("the server refused the QUIC handshake", te, attesting)
	}
	var ite *quic.IdleTimeoutError
	var hte *quic.HandshakeTimeoutError
	if errors.As(err, &ite) || errors.As(err, &hte) {
		return &hintError{err: err, hint: "nothing answered over QUIC: is an HTTP/3 server listening on UDP " + host +
			", such as 'atls serve --quic'? Without --quic, get uses HTTPS over TCP"}
	}
	return err
}
