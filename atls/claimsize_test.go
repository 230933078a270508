package atls_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/internal/atlstest"
)

// ClientOptions.ClaimsSize bounds the claims a Client keeps: the least
// recently read are evicted first, and a negative size keeps none.
func TestClientClaimsSize(t *testing.T) {
	f := atlstest.Get(t)
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester})

	t.Run("one", func(t *testing.T) {
		cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), ClaimsSize: 1})
		first := atlstest.Handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
		require.NoError(t, first.Client)
		_, ok := cli.PeerClaims(first.ClientCS)
		require.True(t, ok)
		second := atlstest.Handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
		require.NoError(t, second.Client)
		_, ok = cli.PeerClaims(second.ClientCS)
		require.True(t, ok)
		_, ok = cli.PeerClaims(first.ClientCS)
		require.False(t, ok, "evicted by the second connection")
	})
	t.Run("none", func(t *testing.T) {
		cli := atlstest.NewClient(t, atls.ClientOptions{Verifier: f.Verifier(t, f.ServerMeasurement), ClaimsSize: -1})
		res := atlstest.Handshake(t, srv.TLSConfig(), clientConfig(t, cli, nil))
		require.NoError(t, res.Client, "verification does not depend on keeping claims")
		_, ok := cli.PeerClaims(res.ClientCS)
		require.False(t, ok)
	})
}
