package attest

import "fmt"

// Format implements fmt.Formatter, so that every verb prints the bytes
// once: %x and %X print the bytes in hex (as for a []byte, flags
// included: % x spaces them), %s, %q and %v print the lowercase hex
// string (String), and the other verbs, %#v included, print the bytes as
// a []byte would.
func (h HexBytes) Format(f fmt.State, verb rune) {
	switch {
	case verb == 's' || verb == 'q' || (verb == 'v' && !f.Flag('#')):
		fmt.Fprintf(f, fmt.FormatString(f, verb), h.String())
	default:
		fmt.Fprintf(f, fmt.FormatString(f, verb), []byte(h))
	}
}
