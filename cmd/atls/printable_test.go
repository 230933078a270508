package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// hostile is what a peer puts in the names it controls (issue 13, finding
// 7, terminal escapes): a screen clear and cursor home, a carriage return
// that rewrites the line, a bidi override that reverses what follows, and
// an 8-bit CSI.
const hostile = "evil\x1b[2J\x1b[H\rNOTE: VERIFIED \u202ereversed\u202c\u009b31m"

// requireInert requires s to hold nothing a terminal acts on other than
// line feeds: no control character (C0, DEL, C1), no format character
// (bidi overrides and isolates, zero-width), no line or paragraph
// separator, no invalid UTF-8. It is written independently of printable,
// which it checks.
func requireInert(t *testing.T, what, s string) {
	t.Helper()
	require.True(t, utf8.ValidString(s), "%s: invalid UTF-8: %q", what, s)
	for i, r := range s {
		bad := (unicode.IsControl(r) && r != '\n') || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
		require.False(t, bad, "%s: raw %U at byte %d: %q", what, r, i, s)
	}
}

func TestPrintable(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"atls server", "atls server"},
		{"héllo wörld, 世界 ✓ 🙂 e\u0301", "héllo wörld, 世界 ✓ 🙂 e\u0301"}, // printable Unicode is kept
		{"\u00a0no-break", "\u00a0no-break"},
		{"a\x1b[2Jb", `a\x1b[2Jb`},
		{"a\rb\nc\td\be\x00f\x7f", `a\rb\nc\td\be\x00f\x7f`},
		{"\u009b31m", `\u009b31m`},                                             // C1 CSI
		{"\u0085next line", `\u0085next line`},                                 // C1 NEL
		{"abc\u202edcba\u202c", `abc\u202edcba\u202c`},                         // bidi override, pop
		{"\u2066x\u2069\u200e\u200f\u061c", `\u2066x\u2069\u200e\u200f\u061c`}, // isolates, marks
		{"zero\u200bwidth\ufeff", `zero\u200bwidth\ufeff`},
		{"line\u2028para\u2029", `line\u2028para\u2029`},
		{"tag\U000e0041", `tag\U000e0041`},
		{"private\ue000", `private\ue000`},
		{"bad\xffutf8\xc3", `bad\xffutf8\xc3`},
		{"\ufffd is a real character", "\ufffd is a real character"},
	} {
		got := printable(c.in)
		require.Equal(t, c.want, got, "printable(%q)", c.in)
		requireInert(t, "printable", strings.ReplaceAll(got, "\n", ""))
	}

	// Every code point: the result is inert, and graphic ones are kept.
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue // not encodable in UTF-8
		}
		in := string(r)
		got := printable(in)
		requireInertFast(t, got)
		if unicode.IsGraphic(r) {
			require.Equal(t, in, got, "%U", r)
		}
	}
}

// requireInertFast is requireInert for the loop over every code point.
func requireInertFast(t *testing.T, s string) {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			t.Fatalf("printable left %U in %q", r, s)
		}
	}
}

// TestJSONEscapes pins what encoding/json does with hostile strings, and
// that writeJSON escapes what it does not.
func TestJSONEscapes(t *testing.T) {
	// encoding/json escapes the C0 controls (ESC as \u001b) and U+2028,
	// but writes DEL, the C1 controls and the bidi characters raw.
	b, err := json.Marshal(hostile + "\x7f\u2028\u2066")
	require.NoError(t, err)
	require.Contains(t, string(b), `\u001b[2J`)
	require.Contains(t, string(b), `\u2028`)
	require.NotContains(t, string(b), "\x1b")
	for _, raw := range []string{"\u202e", "\u009b", "\x7f", "\u2066"} {
		require.Contains(t, string(b), raw, "encoding/json now escapes %q: escapeJSON may be simpler", raw)
	}

	type doc struct {
		Names []string       `json:"names"`
		Map   map[string]int `json:"map"`
	}
	in := doc{Names: []string{hostile, "ok", "tag\U000e0041", "日本"}, Map: map[string]int{"\u202ekey": 1}}
	var out strings.Builder
	require.NoError(t, writeJSON(&out, in))
	requireInert(t, "writeJSON", out.String())
	require.Contains(t, out.String(), `\u202e`)
	require.Contains(t, out.String(), `\udb40\udc41`) // U+E0041 as a surrogate pair
	require.Contains(t, out.String(), "日本")
	var back doc
	require.NoError(t, json.Unmarshal([]byte(out.String()), &back))
	require.Equal(t, in, back, "the escaped JSON decodes to the same value")

	// Nothing to escape: the bytes are returned as they are.
	plain := []byte(`{"a": "b"}`)
	require.Equal(t, plain, escapeJSON(plain))
}

// TestErrorLineEscaped: every command reports failures through finish,
// and errors quote what peers sent (an HTTP status line, a certificate
// subject, a TLS alert).
func TestErrorLineEscaped(t *testing.T) {
	var out strings.Builder
	e := &env{stderr: &out}
	code := finish(e, getSpec, &cliError{code: exitVerify, err: errors.New("peer said: " + hostile + "\r\nsecond line")})
	require.Equal(t, exitVerify, code)
	requireInert(t, "finish", out.String())
	require.Equal(t, 1, strings.Count(out.String(), "\n"), "one line: %q", out.String())
	require.Contains(t, out.String(), `evil\x1b[2J\x1b[H\rNOTE: VERIFIED \u202ereversed\u202c\u009b31m; second line`)
}
