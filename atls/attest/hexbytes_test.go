package attest

import (
	"fmt"
	"testing"
)

// Before Format, %x hex-encoded the String method's hex a second time.
func TestHexBytesFormat(t *testing.T) {
	h := HexBytes{0x4d, 0x45, 0xab}
	claims := struct{ M HexBytes }{h}
	for _, c := range []struct{ format, want string }{
		{"%x", "4d45ab"},
		{"%X", "4D45AB"},
		{"% x", "4d 45 ab"},
		{"%s", "4d45ab"},
		{"%v", "4d45ab"},
		{"%q", `"4d45ab"`},
		{"%10s", "    4d45ab"},
		{"%d", "[77 69 171]"},
		{"%#v", "[]byte{0x4d, 0x45, 0xab}"},
	} {
		if got := fmt.Sprintf(c.format, h); got != c.want {
			t.Errorf("Sprintf(%q) = %q, want %q", c.format, got, c.want)
		}
	}
	if got := fmt.Sprintf("%+v", claims); got != "{M:4d45ab}" {
		t.Errorf("in a struct: %q", got)
	}
	if got := fmt.Sprintf("%x", HexBytes(nil)); got != "" {
		t.Errorf("nil: %q", got)
	}
}
