package atlsquic_test

import (
	"crypto/tls"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
)

// Authorize refuses inside the handshake, on both sides and over both
// transports, with its own check name (or "authorize" around a plain
// error); it never sees a peer that failed verification; the base
// VerifyConnection sees the verified claims through HandshakeClaims.
func TestAuthorize(t *testing.T) {
	f := atlstest.Get(t)
	otherImage := [48]byte{0xff}
	errTenant := errors.New("tenant not allowed")

	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Run("client-refuses-server", func(t *testing.T) {
				var calls atomic.Int32
				cli := atlstest.NewClient(t, atls.ClientOptions{
					Verifier: f.Verifier(t, f.ServerMeasurement),
					Authorize: func(c *atls.Claims, cs tls.ConnectionState) error {
						calls.Add(1)
						require.Equal(t, f.ServerMeasurement[:], []byte(c.SNP.Measurement))
						require.False(t, cs.HandshakeComplete)
						return errTenant
					},
				})
				srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
				o := tr.handshake(t, serverSide{srv: srv}, clientSide{cli: cli})
				atlstest.RequireCheck(t, o.Client, atls.ErrPolicy, "authorize")
				require.ErrorIs(t, o.Client, errTenant)
				require.Error(t, o.Server, "the server gets an alert")
				require.Equal(t, int32(1), calls.Load())
			})
			t.Run("server-refuses-client-with-own-check", func(t *testing.T) {
				var calls atomic.Int32
				srv := atlstest.NewServer(t, atls.ServerOptions{
					Attester:       f.ServerAttester,
					ClientVerifier: f.Verifier(t, f.ClientMeasurement),
					Authorize: func(c *atls.Claims, cs tls.ConnectionState) error {
						calls.Add(1)
						require.Equal(t, attest.RoleClient, c.Role)
						return attest.Fail(attest.ErrPolicy, "authorize.tenant", "client measurement %x is not a tenant", c.SNP.Measurement)
					},
				})
				cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Attester: f.ClientAttester})
				o := tr.handshake(t, serverSide{srv: srv}, clientSide{cli: cli})
				atlstest.RequireCheck(t, o.Server, atls.ErrPolicy, "authorize.tenant")
				require.Error(t, o.Client, "the client gets an alert")
				require.Equal(t, int32(1), calls.Load())
			})
			t.Run("not-called-for-unverified-peers", func(t *testing.T) {
				var calls atomic.Int32
				cli := atlstest.NewClient(t, atls.ClientOptions{
					Verifier: f.Verifier(t, otherImage),
					Authorize: func(*atls.Claims, tls.ConnectionState) error {
						calls.Add(1)
						return nil
					},
				})
				srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})
				o := tr.handshake(t, serverSide{srv: srv}, clientSide{cli: cli})
				require.ErrorIs(t, o.Client, atls.ErrPolicy)
				require.NotEqual(t, "authorize", attest.FailedCheck(o.Client))
				require.Zero(t, calls.Load())
			})
			t.Run("accepts-and-base-verify-sees-claims", func(t *testing.T) {
				var cli *atls.Client
				var srv *atls.Server
				var authorized, clientSaw, serverSaw atomic.Int32
				cli = atlstest.NewClient(t, atls.ClientOptions{
					Verifier: f.Verifier(t, f.ServerMeasurement),
					Attester: f.ClientAttester,
					Authorize: func(*atls.Claims, tls.ConnectionState) error {
						authorized.Add(1)
						return nil
					},
				})
				srv = atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, ClientVerifier: f.Verifier(t, f.ClientMeasurement)})
				cbase := &tls.Config{VerifyConnection: func(cs tls.ConnectionState) error {
					c, ok := cli.HandshakeClaims(cs)
					if !ok || string(c.SNP.Measurement) != string(f.ServerMeasurement[:]) {
						return errors.New("no claims in VerifyConnection")
					}
					clientSaw.Add(1)
					return nil
				}}
				sbase := &tls.Config{VerifyConnection: func(cs tls.ConnectionState) error {
					c, ok := srv.HandshakeClaims(cs)
					if !ok || string(c.SNP.Measurement) != string(f.ClientMeasurement[:]) {
						return errors.New("no claims in VerifyConnection")
					}
					serverSaw.Add(1)
					return nil
				}}
				o := tr.handshake(t, serverSide{srv: srv, base: sbase}, clientSide{cli: cli, base: cbase})
				require.NoError(t, o.Client)
				require.NoError(t, o.Server)
				require.Equal(t, int32(1), authorized.Load())
				require.Equal(t, int32(1), clientSaw.Load())
				require.Equal(t, int32(1), serverSaw.Load())
				// Outside the handshake HandshakeClaims says nothing;
				// PeerClaims takes over.
				_, ok := cli.HandshakeClaims(o.ClientCS)
				require.False(t, ok)
				_, ok = srv.HandshakeClaims(o.ServerCS)
				require.False(t, ok)
				_, ok = cli.PeerClaims(o.ClientCS)
				require.True(t, ok)
			})
		})
	}
}

// An Authorize function that changes the claims it is given changes only
// its own copy: the cached appraisal of a static certificate, which later
// handshakes reuse, keeps the verified values.
func TestAuthorizeGetsACopy(t *testing.T) {
	f := atlstest.Get(t)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			var seen [][]byte
			cli := atlstest.NewClient(t, atls.ClientOptions{
				Verifier:     f.Verifier(t, f.ServerMeasurement),
				AcceptStatic: true,
				Authorize: func(c *atls.Claims, cs tls.ConnectionState) error {
					seen = append(seen, append([]byte(nil), c.SNP.Measurement...))
					c.SNP.Measurement[0] ^= 0xff
					c.Mode = attest.ModeNonce
					return nil
				},
			})
			srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Freshness: atls.FreshnessStatic})
			for range 2 {
				o := tr.handshake(t, serverSide{srv: srv}, clientSide{cli: cli})
				require.NoError(t, o.Client)
				require.NoError(t, o.Server)
			}
			require.Len(t, seen, 2)
			for _, m := range seen {
				require.Equal(t, f.ServerMeasurement[:], m, "the second handshake, served from the cache, sees the verified measurement")
			}
		})
	}
}
