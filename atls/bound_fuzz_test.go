package atls_test

import (
	"bytes"
	"testing"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
)

// FuzzReadBoundFrame: any input is one valid frame or an error naming a
// bound.* check; a frame read back re-encodes to the bytes consumed.
func FuzzReadBoundFrame(f *testing.F) {
	f.Add([]byte{atls.BoundFrameNoEvidence, 0, 0, 0})
	f.Add([]byte{atls.BoundFrameEvidence, 0, 0, 2, '{', '}'})
	f.Add(append([]byte{atls.BoundFrameReattest, 0, 0, 32}, make([]byte, 32)...))
	f.Add([]byte{atls.BoundFrameEvidence, 0xff, 0xff, 0xff})
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		typ, payload, err := atls.ReadBoundFrame(bytes.NewReader(in))
		if err != nil {
			if c := attest.FailedCheck(err); len(c) < 6 || c[:6] != "bound." {
				t.Fatalf("error without a bound.* check: %v", err)
			}
			return
		}
		if len(payload) > atls.MaxBoundFrameSize {
			t.Fatalf("%d-byte payload accepted", len(payload))
		}
		again, err := atls.AppendBoundFrame(nil, typ, payload)
		if err != nil || !bytes.Equal(again, in[:len(again)]) {
			t.Fatalf("frame does not re-encode: %v", err)
		}
	})
}
