package atls_test

import (
	"bytes"
	"crypto/tls"
	"log"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/internal/atlstest"
)

// An ordinary TLS client (curl, a health probe) of a default server: it
// sends no nonce, so it gets crypto/tls's internal_error alert (which
// GetConfigForClient cannot change); the server's side names the check
// and what to do, in net/http's error log without any Logger, and in the
// Logger when one is set.
func TestPlainClientOfDefaultServer(t *testing.T) {
	f := atlstest.Get(t)
	var slogBuf, errLog syncBuffer
	srv := atlstest.NewServer(t, atls.ServerOptions{Attester: f.ServerAttester, Logger: slog.New(slog.NewTextHandler(&slogBuf, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{TLSConfig: srv.TLSConfig(), Handler: http.NotFoundHandler(), ErrorLog: log.New(&errLog, "", 0)}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	defer hs.Close()

	_, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
	require.ErrorContains(t, err, "internal error")
	require.Eventually(t, func() bool {
		return bytes.Contains([]byte(errLog.String()), []byte("nonce.missing")) &&
			bytes.Contains([]byte(slogBuf.String()), []byte("check=nonce.missing"))
	}, 10*time.Second, 5*time.Millisecond, "http.Server log: %q; Logger: %q", errLog.String(), slogBuf.String())
	require.Contains(t, errLog.String(), "StaticFallback")
}
