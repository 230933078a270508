package main

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Peer-controlled text (certificate names, CRL issuers, HTTP status
// lines, redirect targets, error messages that quote any of these) is
// not covered by the evidence, and a terminal acts on some of the
// characters it may hold: ESC and the C1 controls start escape
// sequences (clear the screen, move the cursor, retitle the window),
// carriage returns and backspaces overwrite what was printed, and bidi
// and other format characters reorder or hide text. Every human-readable
// string a command prints that a peer can influence goes through
// printable; JSON goes through escapeJSON.

// unsafeRune reports whether r must not reach a terminal as is: every
// rune that is not graphic (control characters C0 and C1 and DEL,
// format characters such as the bidi overrides and isolates, zero-width
// characters, line and paragraph separators, private-use, surrogate and
// unassigned code points). Ordinary printable Unicode, including the
// space, is kept.
func unsafeRune(r rune) bool {
	return !unicode.IsGraphic(r)
}

// printable returns s with every unsafe rune, and every byte that is not
// valid UTF-8, replaced by a visible Go-style escape: \n, \r, \t... or
// \x1b for bytes and ASCII controls, \u202e or \U000e0001 for other
// runes. Strings without
// such characters are returned unchanged.
func printable(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r == utf8.RuneError || unsafeRune(r) })
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for s = s[i:]; s != ""; {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r < utf8.RuneSelf && unsafeRune(r):
			if i := strings.IndexRune("\a\b\f\n\r\t\v", r); i >= 0 {
				b.WriteString(`\` + "abfnrtv"[i:i+1])
			} else {
				fmt.Fprintf(&b, `\x%02x`, r)
			}
		case r > 0xffff && unsafeRune(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// escapeJSON rewrites the unsafe runes that encoding/json leaves raw
// (DEL, the C1 controls, bidi and other format characters; it escapes
// the C0 controls, U+2028 and U+2029 itself) as \u escapes, so that JSON
// printed to a terminal is as inert as the tables. The result decodes to
// the same value: outside strings, JSON has only ASCII punctuation and
// whitespace, which are kept.
func escapeJSON(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		keep := r == '\n' || r == '\t' || r == '\r' || !unsafeRune(r)
		if r == utf8.RuneError && size == 1 {
			keep = false // encoding/json never writes invalid UTF-8; be safe anyway
			r = unicode.ReplacementChar
		}
		if keep {
			if out != nil {
				out = append(out, b[i:i+size]...)
			}
			i += size
			continue
		}
		if out == nil {
			out = append(make([]byte, 0, len(b)+32), b[:i]...)
		}
		if r > 0xffff {
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		} else {
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += size
	}
	if out == nil {
		return b
	}
	return out
}
