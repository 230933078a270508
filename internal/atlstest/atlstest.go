// Package atlstest holds helpers shared by the tests of package atls and
// its subpackages: one simulated AMD chain per test binary, a verifier that
// counts its calls, an ordinary test CA, forged certificates and loopback
// handshakes.
//
// It is for tests only. It imports testing and testify, and only _test.go
// files may import it.
package atlstest

import (
	"context"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// Fixture is one simulated AMD chain with a server and a client VM.
type Fixture struct {
	Chain             *snp.SimChain
	ServerAttester    *snp.SimAttester
	ClientAttester    *snp.SimAttester
	ServerMeasurement [48]byte
	ClientMeasurement [48]byte
}

var (
	fixOnce sync.Once
	fix     *Fixture
	fixErr  error
)

// Get returns the fixture of this test binary, made on first use: one
// chain per binary, because generating its RSA-4096 keys takes seconds.
func Get(t testing.TB) *Fixture {
	t.Helper()
	fixOnce.Do(func() {
		f := &Fixture{
			ServerMeasurement: sha512.Sum384([]byte("server image")),
			ClientMeasurement: sha512.Sum384([]byte("client image")),
		}
		if f.Chain, fixErr = snp.NewSimChain("Milan"); fixErr != nil {
			return
		}
		if f.ServerAttester, fixErr = snp.NewSimAttester(f.Chain, snp.SimOptions{Measurement: f.ServerMeasurement}); fixErr != nil {
			return
		}
		f.ClientAttester, fixErr = snp.NewSimAttester(f.Chain, snp.SimOptions{Measurement: f.ClientMeasurement})
		fix = f
	})
	require.NoError(t, fixErr)
	return fix
}

// Verifier returns a verifier trusting the fixture's simulated root and
// pinning measurement m.
func (f *Fixture) Verifier(t testing.TB, m [48]byte) *CountingVerifier {
	t.Helper()
	v, err := snp.NewVerifier(snp.VerifierOptions{Roots: f.Chain.Roots(), Policy: PinMeasurement(t, m)})
	require.NoError(t, err)
	return &CountingVerifier{v: v}
}

// CountingVerifier counts the appraisals that reach the platform verifier
// and can run a hook before each.
type CountingVerifier struct {
	v      attest.Verifier
	Calls  atomic.Int64
	Before func()
}

// Verify counts the call, runs Before if set, and appraises with the
// platform verifier.
func (c *CountingVerifier) Verify(ctx context.Context, ev *attest.Evidence, rd [64]byte) (*attest.Claims, error) {
	c.Calls.Add(1)
	if c.Before != nil {
		c.Before()
	}
	return c.v.Verify(ctx, ev, rd)
}

// PinMeasurement is the smallest sound policy: secure defaults, one
// accepted measurement.
func PinMeasurement(t testing.TB, m [48]byte) *snp.Policy {
	p := snp.NewPolicy()
	p.Measurements = []attest.HexBytes{m[:]}
	require.NoError(t, p.Validate())
	return p
}

// NewServer is atls.NewServer that fails the test on error.
func NewServer(t testing.TB, o atls.ServerOptions) *atls.Server {
	t.Helper()
	s, err := atls.NewServer(o)
	require.NoError(t, err)
	return s
}

// NewClient is atls.NewClient that fails the test on error.
func NewClient(t testing.TB, o atls.ClientOptions) *atls.Client {
	t.Helper()
	c, err := atls.NewClient(o)
	require.NoError(t, err)
	return c
}

// RequireCheck requires err to be of kind and to name the failed check.
func RequireCheck(t testing.TB, err error, kind error, check string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, kind, "error: %v", err)
	var ce *attest.CheckError
	require.True(t, errors.As(err, &ce), "no CheckError in %v", err)
	require.Equal(t, check, ce.Check, "error: %v", err)
}

// RequireBindingMode requires leaf to carry evidence whose binding has
// the given freshness mode.
func RequireBindingMode(t testing.TB, leaf *x509.Certificate, mode attest.Mode) {
	t.Helper()
	ev, err := attest.FromCertificate(leaf)
	require.NoError(t, err)
	p, err := ev.Binding()
	require.NoError(t, err)
	require.Equal(t, mode, p.Mode)
}
