//go:build linux

package atls

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// peerGone reports, without blocking, whether the peer of c has already
// closed (FIN) or reset its side of the connection. During a TLS 1.3
// handshake a client that has sent its ClientHello sends nothing more until
// the server answers, so a pending end of stream or reset means nobody is
// waiting for the certificate. It returns nil when c is alive, when
// nothing can be told (not a socket), or when bytes are pending.
func peerGone(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var gone error
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, e := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(e, syscall.EAGAIN), errors.Is(e, syscall.EINTR):
			// Alive, nothing pending.
		case e != nil:
			gone = e
		case n == 0:
			gone = io.EOF
		}
		return true // never wait for readiness
	})
	if err != nil && gone == nil {
		// The descriptor is closed on our side: nobody to serve either.
		return err
	}
	return gone
}
