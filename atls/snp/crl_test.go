package snp

import (
	"context"
	"encoding/json"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
)

// crlVerifier is a verifier of the Milan test chain holding own (nil for
// none) at the clock's time.
func crlVerifier(t *testing.T, milan *SimChain, p *Policy, own []byte, clock *atomic.Int64) *Verifier {
	t.Helper()
	opts := VerifierOptions{Roots: milan.Roots(), Policy: p, Now: func() time.Time { return time.Unix(0, clock.Load()) }}
	if own != nil {
		opts.CRLs = map[string][]byte{"Milan": own}
	}
	v, err := NewVerifier(opts)
	require.NoError(t, err)
	return v
}

// The freshest current CRL signed by the pinned ARK decides, whoever
// supplied it; lapsed CRLs never do.
func TestCRLFreshestWins(t *testing.T) {
	ctx := context.Background()
	milan, a, r := crlSetup(t)
	day := 24 * time.Hour
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	ask := milan.ASK.SerialNumber
	crl := func(issued, next time.Duration, revoked ...*big.Int) []byte {
		return vtCRL(t, milan, now.Add(issued), now.Add(next), revoked...)
	}
	verify := func(own, sent []byte) error {
		_, err := crlVerifier(t, milan, vtPolicy(), own, &clock).VerifyReport(ctx, r, a.VCEK(), sent, vtReportData)
		return err
	}

	for _, c := range []struct {
		name      string
		own, sent []byte
		kind      error
		check     string
	}{
		{name: "fresh attester CRL", sent: crl(-day, day)},
		{name: "stale attester CRL", sent: crl(-3*day, -day), kind: attest.ErrVerification, check: "snp.crl.stale"},
		{name: "attester CRL from the future", sent: crl(day, 2*day), kind: attest.ErrVerification, check: "snp.crl.stale"},
		{name: "revoked ASK, attester CRL", sent: crl(-day, day, ask), kind: attest.ErrVerification, check: "snp.revocation"},
		// An older (still current) CRL from the peer cannot displace the
		// verifier's newer one that revokes.
		{name: "older attester CRL, newer revoking verifier CRL", own: crl(-day, day, ask), sent: crl(-5*day, day), kind: attest.ErrVerification, check: "snp.revocation"},
		// A newer CRL from the peer decides over the verifier's older one.
		{name: "newer revoking attester CRL", own: crl(-5*day, day), sent: crl(-day, day, ask), kind: attest.ErrVerification, check: "snp.revocation"},
		{name: "newer clean attester CRL", own: crl(-5*day, day), sent: crl(-day, day)},
		// A lapsed verifier CRL gives way to a current one from the peer,
		// but is no revocation check on its own.
		{name: "stale verifier CRL, fresh attester CRL", own: crl(-5*day, -day, ask), sent: crl(-day, day)},
		{name: "stale verifier CRL, revoking fresh attester CRL", own: crl(-5*day, -day), sent: crl(-day, day, ask), kind: attest.ErrVerification, check: "snp.revocation"},
		{name: "stale verifier CRL alone", own: crl(-5*day, -day), kind: attest.ErrVerification, check: "snp.crl.stale"},
		{name: "stale verifier CRL, stale attester CRL", own: crl(-5*day, -day), sent: crl(-3*day, -2*day), kind: attest.ErrVerification, check: "snp.crl.stale"},
		// A stale CRL from the peer is ignored when the verifier's is current.
		{name: "fresh verifier CRL, stale attester CRL", own: crl(-day, day), sent: crl(-3*day, -2*day)},
		// A forged CRL fails whoever else has a good one.
		{name: "fresh verifier CRL, forged attester CRL", own: crl(-day, day), sent: vtCRL(t, testSimChain(t, "Milan-other"), now.Add(-day), now.Add(day)), kind: attest.ErrVerification, check: "snp.crl"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := verify(c.own, c.sent)
			if c.check == "" {
				require.NoError(t, err)
				return
			}
			requireCheck(t, err, c.kind, c.check)
		})
	}
}

// The verdict lapses with the deciding CRL, and a cached chain result is
// not used past it.
func TestCRLLapsesInCache(t *testing.T) {
	ctx := context.Background()
	milan, a, r := crlSetup(t)
	day := 24 * time.Hour
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	v := crlVerifier(t, milan, vtPolicy(), nil, &clock)
	sent := vtCRL(t, milan, now.Add(-day), now.Add(day))

	c, err := v.VerifyReport(ctx, r, a.VCEK(), sent, vtReportData)
	require.NoError(t, err)
	require.WithinDuration(t, now.Add(day), c.ValidUntil, 2*time.Second, "ValidUntil is not the CRL's next update")
	require.Equal(t, 1, v.cache.Len())

	// The same evidence after the CRL's next update: refused, not served
	// from the cache.
	clock.Store(now.Add(2 * day).UnixNano())
	_, err = v.VerifyReport(ctx, r, a.VCEK(), sent, vtReportData)
	requireCheck(t, err, attest.ErrVerification, "snp.crl.stale")
}

// Policy.MaximumCRLAge bounds the age of the deciding CRL and requires a
// CRL.
func TestCRLMaximumAge(t *testing.T) {
	ctx := context.Background()
	milan, a, r := crlSetup(t)
	day := 24 * time.Hour
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	week := vtPolicy()
	week.MaximumCRLAge = Duration(7 * day)
	verify := func(p *Policy, own, sent []byte) (*attest.Claims, error) {
		return crlVerifier(t, milan, p, own, &clock).VerifyReport(ctx, r, a.VCEK(), sent, vtReportData)
	}
	old := vtCRL(t, milan, now.Add(-10*day), now.Add(20*day))
	young := vtCRL(t, milan, now.Add(-2*day), now.Add(20*day))

	_, err := verify(week, nil, old)
	requireCheck(t, err, attest.ErrPolicy, "policy.crl.age")
	_, err = verify(week, old, nil)
	requireCheck(t, err, attest.ErrPolicy, "policy.crl.age")
	_, err = verify(week, nil, nil)
	requireCheck(t, err, attest.ErrPolicy, "policy.crl")
	// The younger CRL decides, from either side.
	c, err := verify(week, old, young)
	require.NoError(t, err)
	// The verdict lapses when the CRL gets too old, before its next update.
	require.WithinDuration(t, now.Add(5*day), c.ValidUntil, 2*time.Second)
	_, err = verify(week, young, old)
	require.NoError(t, err)
	// Without the bound, the old CRL is fine.
	_, err = verify(vtPolicy(), nil, old)
	require.NoError(t, err)
}

func TestPolicyMaximumCRLAgeJSON(t *testing.T) {
	measurement := `"measurements": ["` + attest.HexBytes(vtMeasurement[:]).String() + `"]`
	p, err := ParsePolicy([]byte(`{` + measurement + `, "maximum_crl_age": "168h"}`))
	require.NoError(t, err)
	require.Equal(t, Duration(168*time.Hour), p.MaximumCRLAge)
	out, err := json.Marshal(p)
	require.NoError(t, err)
	require.Contains(t, string(out), `"maximum_crl_age":"168h0m0s"`)

	_, err = ParsePolicy([]byte(`{` + measurement + `, "maximum_crl_age": "a week"}`))
	requireCheck(t, err, attest.ErrConfig, "policy.parse")
	_, err = ParsePolicy([]byte(`{` + measurement + `, "maximum_crl_age": "-1h"}`))
	requireCheck(t, err, attest.ErrConfig, "policy.config")
}
