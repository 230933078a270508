package atlsquic_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"testing"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/atlsquic"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/internal/atlstest"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// rogueQUIC serves handle on the attestation stream of each connection, as
// a hostile server would.
func rogueQUIC(t *testing.T, handle func(st *quic.Stream)) string {
	t.Helper()
	cert := atlstest.NewCA(t).Issue(t, "rogue", x509.ExtKeyUsageServerAuth)
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{boundProto},
		MinVersion: tls.VersionTLS13}, &quic.Config{HandshakeIdleTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				st, err := c.AcceptStream(context.Background())
				if err != nil {
					return
				}
				handle(st)
				<-c.Context().Done()
			}()
		}
	}()
	return ln.Addr().String()
}

func readFrame(st io.Reader) []byte {
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(st, hdr); err != nil {
		return nil
	}
	body := make([]byte, int(hdr[1])<<16|int(hdr[2])<<8|int(hdr[3]))
	if _, err := io.ReadFull(st, body); err != nil {
		return nil
	}
	return append(hdr, body...)
}

func TestBoundQUICAttacks(t *testing.T) {
	f := atlstest.Get(t)
	genuine := newQUICBound(t, atlsquic.BoundListenerOptions{Bound: atls.BoundOptions{Attester: f.ServerAttester}})
	// The genuine server's frame, taken from a connection of our own.
	grab := func() []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := quic.DialAddr(ctx, genuine.ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{boundProto}}, nil)
		require.NoError(t, err)
		defer c.CloseWithError(0, "")
		st, err := c.OpenStreamSync(ctx)
		require.NoError(t, err)
		_, err = st.Write([]byte{atls.BoundFrameNoEvidence, 0, 0, 0})
		require.NoError(t, err)
		fr := readFrame(st)
		require.NotNil(t, fr)
		return fr
	}
	relayed := grab()
	cases := []struct {
		name   string
		mutual bool
		handle func(st *quic.Stream)
		kind   error
		check  string
	}{
		{"relay of another connection's evidence", false, func(st *quic.Stream) { _, _ = st.Write(relayed) }, attest.ErrBinding, "snp.report_data"},
		{"reflection of the client's own evidence", true, func(st *quic.Stream) { _, _ = st.Write(readFrame(st)) }, attest.ErrBinding, "binding.role"},
		{"application data first", false, func(st *quic.Stream) { _, _ = st.Write([]byte("PRI * HTTP/2.0\r\n")) }, attest.ErrMalformedEvidence, "bound.frame"},
		{"oversized frame", false, func(st *quic.Stream) { _, _ = st.Write([]byte{atls.BoundFrameEvidence, 0xff, 0, 0}) }, attest.ErrMalformedEvidence, "bound.frame_size"},
		{"truncated frame", false, func(st *quic.Stream) { _, _ = st.Write(relayed[:100]); st.Close() }, attest.ErrMalformedEvidence, "bound.frame"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := rogueQUIC(t, tc.handle)
			o := atls.BoundOptions{Verifier: f.Verifier(t, f.ServerMeasurement), Timeout: 20 * time.Second}
			if tc.mutual {
				o = atls.BoundOptions{Verifier: f.Verifier(t, f.ClientMeasurement), Attester: f.ClientAttester, Timeout: 20 * time.Second}
			}
			c, err := dialQUICBound(t, addr, atlsquic.BoundDialOptions{Bound: o})
			require.Nil(t, c)
			atlstest.RequireCheck(t, err, tc.kind, tc.check)
		})
	}
}
