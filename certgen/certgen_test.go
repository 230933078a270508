package certgen_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/certgen"
)

const (
	fakeType      = "tag:example.com,2025:fake/v1"
	fakeLabel     = "report"
	fakeMediaType = "application/vnd.example.fake-report"
	backdate      = time.Minute // certgen's unexported backdate
)

type ctxKey struct{}

// fakeAttester records the report data it is asked to bind and returns a
// small evidence whose one record is that report data.
type fakeAttester struct {
	mu      sync.Mutex
	got     [][attest.ReportDataSize]byte
	ctxVals []any
	err     error
	block   chan struct{} // if set, Attest waits for it to be closed
}

func (f *fakeAttester) Attest(ctx context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, rd)
	f.ctxVals = append(f.ctxVals, ctx.Value(ctxKey{}))
	if f.err != nil {
		return nil, f.err
	}
	return &attest.Evidence{Type: fakeType, Records: map[string]attest.Record{
		fakeLabel: {MediaType: fakeMediaType, Value: append([]byte(nil), rd[:]...)},
	}}, nil
}

func (f *fakeAttester) calls() [][attest.ReportDataSize]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][attest.ReportDataSize]byte(nil), f.got...)
}

func (f *fakeAttester) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// funcAttester adapts a function.
type funcAttester func(context.Context, [attest.ReportDataSize]byte) (*attest.Evidence, error)

func (f funcAttester) Attest(ctx context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	return f(ctx, rd)
}

// clock is an injectable, concurrency-safe time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// t0 has a sub-second part on purpose: certificates hold whole seconds.
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)

func testNonce() [attest.NonceSize]byte {
	var n [attest.NonceSize]byte
	for i := range n {
		n[i] = byte(0x80 + i)
	}
	return n
}

var keyTypes = []certgen.KeyType{certgen.ECDSAP256, certgen.ECDSAP384, certgen.Ed25519}

func TestIssue(t *testing.T) {
	for _, kt := range keyTypes {
		for _, role := range []attest.Role{attest.RoleServer, attest.RoleClient} {
			for _, mode := range []attest.Mode{attest.ModeStatic, attest.ModeNonce} {
				t.Run(kt.String()+"/"+role.String()+"/"+mode.String(), func(t *testing.T) {
					fa := &fakeAttester{}
					nonce := testNonce()
					ctx := context.WithValue(context.Background(), ctxKey{}, "ctx-marker")
					c, err := certgen.Issue(ctx, certgen.Request{
						Attester: fa,
						Role:     role,
						Mode:     mode,
						Nonce:    nonce, // ignored in static mode
						KeyType:  kt,
						Now:      func() time.Time { return t0 },
					})
					require.NoError(t, err)
					calls := fa.calls()
					require.Len(t, calls, 1)
					require.Equal(t, []any{"ctx-marker"}, fa.ctxVals, "the context reaches the attester")

					// The chain is one certificate, and Leaf is it.
					require.Len(t, c.Certificate, 1)
					require.NotNil(t, c.Leaf)
					leaf, err := x509.ParseCertificate(c.Certificate[0])
					require.NoError(t, err)
					require.Equal(t, leaf.Raw, c.Leaf.Raw)
					require.NoError(t, leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature),
						"self-signed")
					require.Equal(t, leaf.RawSubject, leaf.RawIssuer)

					// Key type, and the private key matches the certificate.
					signer, ok := c.PrivateKey.(crypto.Signer)
					require.True(t, ok)
					require.True(t, signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey))
					switch kt {
					case certgen.ECDSAP256, certgen.ECDSAP384:
						pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
						require.True(t, ok)
						want := elliptic.P256()
						if kt == certgen.ECDSAP384 {
							want = elliptic.P384()
						}
						require.Equal(t, want, pub.Curve)
					case certgen.Ed25519:
						_, ok := leaf.PublicKey.(ed25519.PublicKey)
						require.True(t, ok)
					}

					// Usage.
					wantEKU := x509.ExtKeyUsageServerAuth
					if role == attest.RoleClient {
						wantEKU = x509.ExtKeyUsageClientAuth
					}
					require.Equal(t, []x509.ExtKeyUsage{wantEKU}, leaf.ExtKeyUsage)
					require.Equal(t, x509.KeyUsageDigitalSignature, leaf.KeyUsage)
					require.True(t, leaf.BasicConstraintsValid)
					require.False(t, leaf.IsCA)
					require.Equal(t, "atls "+role.String(), leaf.Subject.CommonName)
					require.Equal(t, 1, leaf.SerialNumber.Sign())

					// Validity: default by mode, backdated by a minute,
					// whole seconds.
					validity := certgen.DefaultNonceValidity
					if mode == attest.ModeStatic {
						validity = certgen.DefaultStaticValidity
					}
					wantNB := t0.Add(-backdate).Truncate(time.Second)
					require.True(t, wantNB.Equal(leaf.NotBefore), "NotBefore %v, want %v", leaf.NotBefore, wantNB)
					require.Equal(t, validity+backdate, leaf.NotAfter.Sub(leaf.NotBefore))
					require.False(t, leaf.NotAfter.After(t0.Add(validity)))

					// Exactly one non-critical id-pe-cmw extension.
					var n int
					for _, e := range leaf.Extensions {
						if e.Id.Equal(attest.OIDCMW) {
							n++
							require.False(t, e.Critical)
						}
					}
					require.Equal(t, 1, n)
					require.Empty(t, leaf.UnhandledCriticalExtensions)

					// The evidence comes back, with the binding record.
					ev, err := attest.FromCertificate(leaf)
					require.NoError(t, err)
					require.Equal(t, fakeType, ev.Type)
					require.Len(t, ev.Records, 2)
					v, err := ev.Record(fakeLabel, fakeMediaType)
					require.NoError(t, err)
					require.Equal(t, calls[0][:], v)
					p, err := ev.Binding()
					require.NoError(t, err)
					require.Equal(t, attest.BindingParams{Version: attest.BindingParamsVersion, Role: role, Mode: mode}, p)

					// A verifier recomputes exactly what the attester
					// was given.
					b := attest.BindingForCertificate(leaf, role, mode, nonce)
					rd, err := b.ReportData()
					require.NoError(t, err)
					require.Equal(t, calls[0], rd)
					if mode == attest.ModeStatic {
						require.Equal(t, [attest.NonceSize]byte{}, b.Nonce)
					}

					// Any other role, mode or nonce gives other data.
					otherRole := attest.RoleClient
					if role == otherRole {
						otherRole = attest.RoleServer
					}
					ob := attest.BindingForCertificate(leaf, otherRole, mode, nonce)
					ord, err := ob.ReportData()
					require.NoError(t, err)
					require.NotEqual(t, rd, ord)
					if mode == attest.ModeNonce {
						other := nonce
						other[0] ^= 1
						ob = attest.BindingForCertificate(leaf, role, mode, other)
						ord, err = ob.ReportData()
						require.NoError(t, err)
						require.NotEqual(t, rd, ord)
						ob = attest.BindingForCertificate(leaf, role, attest.ModeStatic, nonce)
						ord, err = ob.ReportData()
						require.NoError(t, err)
						require.NotEqual(t, rd, ord)
					}
				})
			}
		}
	}
}

func TestIssueNamesAndFreshKeys(t *testing.T) {
	fa := &fakeAttester{}
	req := certgen.Request{
		Attester:   fa,
		Role:       attest.RoleServer,
		Mode:       attest.ModeNonce,
		Nonce:      testNonce(),
		CommonName: "svc.example",
		DNSNames:   []string{"svc.example", "alt.example"},
	}
	c1, err := certgen.Issue(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, "svc.example", c1.Leaf.Subject.CommonName)
	require.Equal(t, []string{"svc.example", "alt.example"}, c1.Leaf.DNSNames)

	// Default clock is the real one.
	now := time.Now()
	require.WithinDuration(t, now.Add(-backdate), c1.Leaf.NotBefore, 5*time.Second)

	// Every call makes a fresh key, serial and evidence.
	c2, err := certgen.Issue(context.Background(), req)
	require.NoError(t, err)
	require.NotEqual(t, c1.Leaf.RawSubjectPublicKeyInfo, c2.Leaf.RawSubjectPublicKeyInfo)
	require.NotEqual(t, c1.Leaf.SerialNumber, c2.Leaf.SerialNumber)
	calls := fa.calls()
	require.Len(t, calls, 2)
	require.NotEqual(t, calls[0], calls[1])
}

func TestIssueValidity(t *testing.T) {
	for name, tc := range map[string]struct {
		mode     attest.Mode
		validity time.Duration
		want     time.Duration // NotAfter - NotBefore; 0 means an error
	}{
		"nonce default":      {attest.ModeNonce, 0, certgen.DefaultNonceValidity + backdate},
		"static default":     {attest.ModeStatic, 0, certgen.DefaultStaticValidity + backdate},
		"nonce explicit":     {attest.ModeNonce, 3 * time.Minute, 3*time.Minute + backdate},
		"static explicit":    {attest.ModeStatic, 24 * time.Hour, 24*time.Hour + backdate},
		"one second":         {attest.ModeNonce, time.Second, time.Second + backdate},
		"max":                {attest.ModeStatic, certgen.MaxValidity, certgen.MaxValidity + backdate},
		"max plus a second":  {attest.ModeStatic, certgen.MaxValidity + time.Second, 0},
		"max plus a nano":    {attest.ModeNonce, certgen.MaxValidity + 1, 0},
		"a year":             {attest.ModeStatic, 365 * 24 * time.Hour, 0},
		"negative":           {attest.ModeNonce, -time.Minute, 0},
		"negative nano":      {attest.ModeStatic, -1, 0},
		"subsecond rounding": {attest.ModeNonce, 1500 * time.Millisecond, 1500*time.Millisecond + backdate},
	} {
		t.Run(name, func(t *testing.T) {
			fa := &fakeAttester{}
			c, err := certgen.Issue(context.Background(), certgen.Request{
				Attester: fa, Role: attest.RoleServer, Mode: tc.mode, Nonce: testNonce(),
				Validity: tc.validity, Now: func() time.Time { return t0 },
			})
			if tc.want == 0 {
				require.Error(t, err)
				require.Empty(t, fa.calls(), "no attestation for a rejected request")
				return
			}
			require.NoError(t, err)
			got := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
			// Certificates hold whole seconds.
			require.Equal(t, tc.want.Truncate(time.Second), got)
			rd, err := func() ([attest.ReportDataSize]byte, error) {
				b := attest.BindingForCertificate(c.Leaf, attest.RoleServer, tc.mode, testNonce())
				return b.ReportData()
			}()
			require.NoError(t, err)
			require.Equal(t, fa.calls()[0], rd)
		})
	}
}

func TestIssueErrors(t *testing.T) {
	attErr := errors.New("device unavailable")
	for name, tc := range map[string]struct {
		req        certgen.Request
		wantIs     error
		wantAttest bool // the attester is reached
	}{
		"no attester": {req: certgen.Request{Role: attest.RoleServer, Mode: attest.ModeNonce, Nonce: testNonce()}},
		"attester error": {
			req:        certgen.Request{Attester: &fakeAttester{err: attErr}, Role: attest.RoleServer, Mode: attest.ModeNonce, Nonce: testNonce()},
			wantIs:     attErr,
			wantAttest: true,
		},
		"attester check error": {
			req: certgen.Request{Attester: &fakeAttester{err: attest.Fail(attest.ErrUnsupported, "snp.device", "no device")},
				Role: attest.RoleClient, Mode: attest.ModeStatic},
			wantIs:     attest.ErrUnsupported,
			wantAttest: true,
		},
		"nonce mode zero nonce": {req: certgen.Request{Attester: &fakeAttester{}, Role: attest.RoleServer, Mode: attest.ModeNonce}},
		"zero role":             {req: certgen.Request{Attester: &fakeAttester{}, Mode: attest.ModeStatic}},
		"bad role":              {req: certgen.Request{Attester: &fakeAttester{}, Role: 'X', Mode: attest.ModeStatic}},
		"batch mode zero nonce": {req: certgen.Request{Attester: &fakeAttester{}, Role: attest.RoleServer, Mode: attest.ModeBatch}},
		"unknown mode":          {req: certgen.Request{Attester: &fakeAttester{}, Role: attest.RoleServer, Mode: 9, Nonce: testNonce()}},
		"unknown key type":      {req: certgen.Request{Attester: &fakeAttester{}, Role: attest.RoleServer, Mode: attest.ModeStatic, KeyType: 7}},
		"negative key type":     {req: certgen.Request{Attester: &fakeAttester{}, Role: attest.RoleServer, Mode: attest.ModeStatic, KeyType: -1}},
		"batch mode without a proof": {
			req:        certgen.Request{Attester: &fakeAttester{}, Role: attest.RoleServer, Mode: attest.ModeBatch, Nonce: testNonce()},
			wantIs:     attest.ErrMalformedEvidence,
			wantAttest: true,
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := certgen.Issue(context.Background(), tc.req)
			require.Error(t, err)
			require.Nil(t, c)
			require.Contains(t, err.Error(), "certgen")
			if tc.wantIs != nil {
				require.ErrorIs(t, err, tc.wantIs)
			}
			if fa, ok := tc.req.Attester.(*fakeAttester); ok {
				require.Equal(t, tc.wantAttest, len(fa.calls()) > 0)
			}
		})
	}

	// Evidence the attester returns must be encodable.
	const mt = "application/x-test"
	for name, tc := range map[string]struct {
		ev    *attest.Evidence
		check string
	}{
		"empty type":            {&attest.Evidence{Records: map[string]attest.Record{"a": {MediaType: mt, Value: []byte{1}}}}, "evidence.collection"},
		"type with space":       {&attest.Evidence{Type: "t u", Records: map[string]attest.Record{"a": {MediaType: mt, Value: []byte{1}}}}, "evidence.collection"},
		"bad label":             {&attest.Evidence{Type: "t", Records: map[string]attest.Record{"A": {MediaType: mt, Value: []byte{1}}}}, "evidence.record"},
		"media type no slash":   {&attest.Evidence{Type: "t", Records: map[string]attest.Record{"a": {MediaType: "m", Value: []byte{1}}}}, "evidence.record"},
		"media type parameters": {&attest.Evidence{Type: "t", Records: map[string]attest.Record{"a": {MediaType: "text/plain; charset=utf-8", Value: []byte{1}}}}, "evidence.record"},
		"empty value":           {&attest.Evidence{Type: "t", Records: map[string]attest.Record{"a": {MediaType: mt}}}, "evidence.record"},
	} {
		c, err := certgen.Issue(context.Background(), certgen.Request{
			Attester: funcAttester(func(context.Context, [64]byte) (*attest.Evidence, error) { return tc.ev, nil }),
			Role:     attest.RoleServer, Mode: attest.ModeStatic,
		})
		require.Nil(t, c, name)
		require.ErrorIs(t, err, attest.ErrMalformedEvidence, name)
		require.Equal(t, tc.check, attest.FailedCheck(err), name)
		require.Contains(t, err.Error(), "certgen", name)
	}

	// Evidence with only the binding record (no records of its own) is
	// accepted: the binding record is added before encoding.
	c, err := certgen.Issue(context.Background(), certgen.Request{
		Attester: funcAttester(func(context.Context, [64]byte) (*attest.Evidence, error) { return &attest.Evidence{Type: "t"}, nil }),
		Role:     attest.RoleServer, Mode: attest.ModeStatic,
	})
	require.NoError(t, err)
	ev, err := attest.FromCertificate(c.Leaf)
	require.NoError(t, err)
	require.Len(t, ev.Records, 1)
}

// TestIssueNilEvidence: an Attester that returns (nil, nil) breaks its
// contract; Issue reports an error rather than panic.
func TestIssueNilEvidence(t *testing.T) {
	var calls int
	c, err := certgen.Issue(context.Background(), certgen.Request{
		Attester: funcAttester(func(context.Context, [64]byte) (*attest.Evidence, error) {
			calls++
			return nil, nil
		}),
		Role: attest.RoleServer, Mode: attest.ModeStatic,
	})
	require.Error(t, err)
	require.Nil(t, c)
	require.Contains(t, err.Error(), "certgen")
	require.Equal(t, 1, calls)
}

// TestIssueDoesNotModifyEvidence: the evidence belongs to the attester,
// which may return the same value every time; Issue adds the binding
// record to a copy.
func TestIssueDoesNotModifyEvidence(t *testing.T) {
	const mt = "application/x-test"
	shared := &attest.Evidence{Type: fakeType, Records: map[string]attest.Record{
		"a": {MediaType: mt, Value: []byte{1, 2, 3}},
	}}
	snapshot := func(ev *attest.Evidence) *attest.Evidence {
		recs := map[string]attest.Record{}
		for l, r := range ev.Records {
			recs[l] = attest.Record{MediaType: r.MediaType, Value: append([]byte(nil), r.Value...)}
		}
		return &attest.Evidence{Type: ev.Type, Records: recs}
	}
	before := snapshot(shared)
	att := funcAttester(func(context.Context, [64]byte) (*attest.Evidence, error) { return shared, nil })

	// Concurrent issuance from the one shared value: no data race (run
	// with -race), and each certificate carries its own binding.
	roles := []attest.Role{attest.RoleServer, attest.RoleClient}
	modes := []attest.Mode{attest.ModeStatic, attest.ModeNonce}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	certs := make([]*tls.Certificate, 8)
	for i := range 8 {
		wg.Go(func() {
			certs[i], errs[i] = certgen.Issue(context.Background(), certgen.Request{
				Attester: att, Role: roles[i%2], Mode: modes[i/2%2], Nonce: testNonce(),
				KeyType: certgen.Ed25519,
			})
		})
	}
	wg.Wait()
	for i := range 8 {
		require.NoError(t, errs[i])
		ev, err := attest.FromCertificate(certs[i].Leaf)
		require.NoError(t, err)
		require.Len(t, ev.Records, 2)
		p, err := ev.Binding()
		require.NoError(t, err)
		require.Equal(t, attest.BindingParams{Version: attest.BindingParamsVersion, Role: roles[i%2], Mode: modes[i/2%2]}, p)
		v, err := ev.Record("a", mt)
		require.NoError(t, err)
		require.Equal(t, []byte{1, 2, 3}, v)
	}
	require.Equal(t, before, shared, "the attester's evidence is unchanged")
	_, present := shared.Records[attest.BindingRecordLabel]
	require.False(t, present)

	// A binding record the attester put in is replaced in the
	// certificate, and left alone in the attester's evidence.
	shared.Records[attest.BindingRecordLabel] = attest.Record{MediaType: attest.BindingMediaType, Value: []byte(`{"version":1,"role":"client","mode":"nonce"}`)}
	before = snapshot(shared)
	c, err := certgen.Issue(context.Background(), certgen.Request{Attester: att, Role: attest.RoleServer, Mode: attest.ModeStatic})
	require.NoError(t, err)
	ev, err := attest.FromCertificate(c.Leaf)
	require.NoError(t, err)
	p, err := ev.Binding()
	require.NoError(t, err)
	require.Equal(t, attest.BindingParams{Version: attest.BindingParamsVersion, Role: attest.RoleServer, Mode: attest.ModeStatic}, p)
	require.Equal(t, before, shared)

	// Evidence with nil Records: the copy gets the map, the original not.
	empty := &attest.Evidence{Type: "t"}
	_, err = certgen.Issue(context.Background(), certgen.Request{
		Attester: funcAttester(func(context.Context, [64]byte) (*attest.Evidence, error) { return empty, nil }),
		Role:     attest.RoleClient, Mode: attest.ModeStatic,
	})
	require.NoError(t, err)
	require.Nil(t, empty.Records)
}

func TestStaticIssuesModeStatic(t *testing.T) {
	_, err := certgen.NewStatic(certgen.Request{Role: attest.RoleServer})
	require.Error(t, err)

	fa := &fakeAttester{}
	s, err := certgen.NewStatic(certgen.Request{
		Attester: fa, Role: attest.RoleServer,
		Mode: attest.ModeNonce, Nonce: testNonce(), // both overridden
		KeyType: certgen.Ed25519,
		Now:     func() time.Time { return t0 },
	})
	require.NoError(t, err)
	c, err := s.Certificate(context.Background())
	require.NoError(t, err)
	ev, err := attest.FromCertificate(c.Leaf)
	require.NoError(t, err)
	p, err := ev.Binding()
	require.NoError(t, err)
	require.Equal(t, attest.ModeStatic, p.Mode)
	require.Equal(t, certgen.DefaultStaticValidity+backdate, c.Leaf.NotAfter.Sub(c.Leaf.NotBefore))
	b := attest.BindingForCertificate(c.Leaf, attest.RoleServer, attest.ModeStatic, [attest.NonceSize]byte{})
	rd, err := b.ReportData()
	require.NoError(t, err)
	require.Equal(t, fa.calls()[0], rd)
	_, isEd := c.Leaf.PublicKey.(ed25519.PublicKey)
	require.True(t, isEd)

	// Issue errors surface from Certificate.
	bad, err := certgen.NewStatic(certgen.Request{Attester: fa, Role: 0})
	require.NoError(t, err)
	_, err = bad.Certificate(context.Background())
	require.Error(t, err)
}

func TestStaticRotation(t *testing.T) {
	clk := &clock{now: t0}
	fa := &fakeAttester{}
	s, err := certgen.NewStatic(certgen.Request{Attester: fa, Role: attest.RoleServer, Now: clk.Now})
	require.NoError(t, err)
	ctx := context.Background()

	c1, err := s.Certificate(ctx)
	require.NoError(t, err)
	require.Len(t, fa.calls(), 1)

	// Rotation is due when two thirds of the certificate's lifetime
	// (validity plus backdate) have passed since NotBefore.
	life := c1.Leaf.NotAfter.Sub(c1.Leaf.NotBefore)
	rotateAt := c1.Leaf.NotBefore.Add(life * 2 / 3)
	require.True(t, rotateAt.After(t0.Add(39*time.Minute)) && rotateAt.Before(t0.Add(41*time.Minute)), "rotate at %v", rotateAt)

	for _, at := range []time.Time{t0, t0.Add(time.Second), t0.Add(30 * time.Minute), rotateAt.Add(-time.Nanosecond)} {
		clk.Set(at)
		c, err := s.Certificate(ctx)
		require.NoError(t, err)
		require.Same(t, c1, c, "at %v", at)
	}
	require.Len(t, fa.calls(), 1)

	clk.Set(rotateAt)
	c2, err := s.Certificate(ctx)
	require.NoError(t, err)
	require.NotSame(t, c1, c2)
	require.Len(t, fa.calls(), 2)
	require.NotEqual(t, c1.Leaf.RawSubjectPublicKeyInfo, c2.Leaf.RawSubjectPublicKeyInfo)
	require.True(t, c2.Leaf.NotBefore.Equal(rotateAt.Add(-backdate).Truncate(time.Second)))
	rd, err := func() ([attest.ReportDataSize]byte, error) {
		b := attest.BindingForCertificate(c2.Leaf, attest.RoleServer, attest.ModeStatic, [attest.NonceSize]byte{})
		return b.ReportData()
	}()
	require.NoError(t, err)
	require.Equal(t, fa.calls()[1], rd)

	// The new one is kept until its own rotation time.
	clk.Set(rotateAt.Add(10 * time.Minute))
	c3, err := s.Certificate(ctx)
	require.NoError(t, err)
	require.Same(t, c2, c3)

	// A failing rotation reports the error, and the next call retries.
	clk.Set(rotateAt.Add(2 * time.Hour))
	fa.setErr(errors.New("boom"))
	_, err = s.Certificate(ctx)
	require.Error(t, err)
	fa.setErr(nil)
	c4, err := s.Certificate(ctx)
	require.NoError(t, err)
	require.NotSame(t, c2, c4)
	require.Len(t, fa.calls(), 4)

	// Jumping far past expiry also rotates.
	clk.Set(rotateAt.Add(48 * time.Hour))
	c5, err := s.Certificate(ctx)
	require.NoError(t, err)
	require.NotSame(t, c4, c5)
}

func TestStaticConcurrent(t *testing.T) {
	clk := &clock{now: t0}
	fa := &fakeAttester{block: make(chan struct{})}
	s, err := certgen.NewStatic(certgen.Request{Attester: fa, Role: attest.RoleClient, Now: clk.Now})
	require.NoError(t, err)

	const n = 32
	run := func() []*tls.Certificate {
		out := make([]*tls.Certificate, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { out[i], errs[i] = s.Certificate(context.Background()) })
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		return out
	}

	// All callers wait on one slow issuance and share its result.
	go func() { time.Sleep(20 * time.Millisecond); close(fa.block) }()
	first := run()
	for _, c := range first {
		require.Same(t, first[0], c)
	}
	require.Len(t, fa.calls(), 1)

	// Concurrent callers across a rotation also share one issuance.
	clk.Set(t0.Add(time.Hour))
	second := run()
	for _, c := range second {
		require.Same(t, second[0], c)
	}
	require.NotSame(t, first[0], second[0])
	require.Len(t, fa.calls(), 2)
}

func TestEncodePEM(t *testing.T) {
	for _, kt := range keyTypes {
		t.Run(kt.String(), func(t *testing.T) {
			c, err := certgen.Issue(context.Background(), certgen.Request{
				Attester: &fakeAttester{}, Role: attest.RoleServer, Mode: attest.ModeStatic, KeyType: kt,
			})
			require.NoError(t, err)
			certPEM, keyPEM, err := certgen.EncodePEM(c)
			require.NoError(t, err)

			blk, rest := pem.Decode(certPEM)
			require.NotNil(t, blk)
			require.Equal(t, "CERTIFICATE", blk.Type)
			require.Equal(t, c.Certificate[0], blk.Bytes)
			require.Empty(t, rest)
			blk, rest = pem.Decode(keyPEM)
			require.NotNil(t, blk)
			require.Equal(t, "PRIVATE KEY", blk.Type)
			require.Empty(t, rest)
			_, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
			require.NoError(t, err)

			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			require.NoError(t, err)
			require.Equal(t, c.Certificate, pair.Certificate)
			require.NotNil(t, pair.Leaf)
			require.Equal(t, c.Leaf.Raw, pair.Leaf.Raw)

			// The re-read certificate still carries the evidence.
			ev, err := attest.FromCertificate(pair.Leaf)
			require.NoError(t, err)
			p, err := ev.Binding()
			require.NoError(t, err)
			require.Equal(t, attest.ModeStatic, p.Mode)
		})
	}

	// A chain is written in order.
	a, err := certgen.Issue(context.Background(), certgen.Request{Attester: &fakeAttester{}, Role: attest.RoleClient, Mode: attest.ModeStatic})
	require.NoError(t, err)
	b, err := certgen.Issue(context.Background(), certgen.Request{Attester: &fakeAttester{}, Role: attest.RoleClient, Mode: attest.ModeStatic})
	require.NoError(t, err)
	chain := &tls.Certificate{Certificate: [][]byte{a.Certificate[0], b.Certificate[0]}, PrivateKey: a.PrivateKey}
	certPEM, _, err := certgen.EncodePEM(chain)
	require.NoError(t, err)
	blk, rest := pem.Decode(certPEM)
	require.Equal(t, a.Certificate[0], blk.Bytes)
	blk, rest = pem.Decode(rest)
	require.Equal(t, b.Certificate[0], blk.Bytes)
	require.Empty(t, rest)

	// A key that PKCS #8 cannot hold is an error.
	_, _, err = certgen.EncodePEM(&tls.Certificate{Certificate: a.Certificate, PrivateKey: "not a key"})
	require.Error(t, err)
	_, _, err = certgen.EncodePEM(&tls.Certificate{Certificate: a.Certificate})
	require.Error(t, err)
}

func TestKeyType(t *testing.T) {
	for _, kt := range keyTypes {
		got, err := certgen.ParseKeyType(kt.String())
		require.NoError(t, err)
		require.Equal(t, kt, got)
	}
	require.Equal(t, "ecdsa-p256", certgen.ECDSAP256.String())
	require.Equal(t, "ecdsa-p384", certgen.ECDSAP384.String())
	require.Equal(t, "ed25519", certgen.Ed25519.String())
	require.Equal(t, "KeyType(9)", certgen.KeyType(9).String())
	require.Equal(t, certgen.ECDSAP256, certgen.KeyType(0), "the zero value is the default")
	for _, s := range []string{"", "ECDSA-P256", "rsa", "p256", "KeyType(9)", "ed448"} {
		_, err := certgen.ParseKeyType(s)
		require.Error(t, err, s)
	}
}

func TestIssueBatch(t *testing.T) {
	fa := &fakeAttester{}
	b, err := attest.NewBatcher(fa, attest.BatcherOptions{})
	require.NoError(t, err)
	const n = 6
	nonces := make([][attest.NonceSize]byte, n)
	certs := make([]*tls.Certificate, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		nonces[i] = testNonce()
		nonces[i][0] = byte(i + 1)
		wg.Go(func() {
			certs[i], errs[i] = certgen.Issue(t.Context(), certgen.Request{Attester: b, Role: attest.RoleServer, Mode: attest.ModeBatch, Nonce: nonces[i]})
		})
	}
	wg.Wait()
	require.Equal(t, uint64(len(fa.calls())), b.Reports())
	for i, c := range certs {
		require.NoError(t, errs[i])
		ev, err := attest.FromCertificate(c.Leaf)
		require.NoError(t, err)
		p, err := ev.Binding()
		require.NoError(t, err)
		require.Equal(t, attest.ModeBatch, p.Mode)
		report, err := ev.Record(fakeLabel, fakeMediaType)
		require.NoError(t, err)
		// The report commits to the certificate through its own proof,
		// for its own nonce only.
		want, err := attest.ExpectedReportData(ev, attest.BindingForCertificate(c.Leaf, attest.RoleServer, attest.ModeBatch, nonces[i]))
		require.NoError(t, err)
		require.Equal(t, want[:], report)
		other, err := attest.ExpectedReportData(ev, attest.BindingForCertificate(c.Leaf, attest.RoleServer, attest.ModeBatch, nonces[(i+1)%n]))
		require.NoError(t, err)
		require.NotEqual(t, other[:], report)
		// A nonce-mode binding of the same certificate is refused.
		_, err = attest.ExpectedReportData(ev, attest.BindingForCertificate(c.Leaf, attest.RoleServer, attest.ModeNonce, nonces[i]))
		require.ErrorIs(t, err, attest.ErrMalformedEvidence)
		require.Equal(t, "batch.proof", attest.FailedCheck(err))
	}

	// A batcher's evidence in nonce mode would carry an unexpected proof.
	c, err := certgen.Issue(t.Context(), certgen.Request{Attester: b, Role: attest.RoleClient, Mode: attest.ModeNonce, Nonce: testNonce()})
	require.Nil(t, c)
	require.ErrorIs(t, err, attest.ErrMalformedEvidence)
	require.Equal(t, "batch.proof", attest.FailedCheck(err))
}
