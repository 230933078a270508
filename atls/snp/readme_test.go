package snp

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestREADMEPolicy keeps the policy example of the README valid.
func TestREADMEPolicy(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	text := string(b)
	i := strings.Index(text, "## Policy")
	require.GreaterOrEqual(t, i, 0, "README has a Policy section")
	text = text[i:]
	start := strings.Index(text, "```json\n")
	require.GreaterOrEqual(t, start, 0)
	text = text[start+len("```json\n"):]
	end := strings.Index(text, "```")
	require.Greater(t, end, 0)
	p, err := ParsePolicy([]byte(text[:end]))
	require.NoError(t, err)
	require.Len(t, p.Measurements, 2)
	require.False(t, p.AllowDebug)
	require.Len(t, p.TrustedIDKeyDigests, 1)
}
