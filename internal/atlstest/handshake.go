package atlstest

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Outcome is what both ends of one handshake saw.
type Outcome struct {
	Client, Server     error
	ClientCS, ServerCS tls.ConnectionState
}

// Handshake runs one TLS handshake over loopback TCP with the given
// configurations, used as they are. After its handshake the server writes
// one byte, which the client reads: so the client learns the server's
// verdict on its certificate (and reads the session tickets, if any).
func Handshake(t testing.TB, serverCfg, clientCfg *tls.Config) Outcome {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var res Outcome
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			res.Server = err
			return
		}
		defer c.Close()
		sc := tls.Server(c, serverCfg)
		_ = sc.SetDeadline(time.Now().Add(20 * time.Second))
		res.Server = sc.Handshake()
		res.ServerCS = sc.ConnectionState()
		if res.Server == nil {
			_, _ = sc.Write([]byte("x"))
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	cc := tls.Client(c, clientCfg)
	_ = cc.SetDeadline(time.Now().Add(20 * time.Second))
	res.Client = cc.Handshake()
	if res.Client == nil {
		_, res.Client = io.ReadFull(cc, make([]byte, 1))
	}
	res.ClientCS = cc.ConnectionState()
	cc.Close()
	<-done
	return res
}
