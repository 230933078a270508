package interop

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// checkLiteral matches the string literals that name checks.
// "authorize" is the one check named by a bare word.
var checkLiteral = regexp.MustCompile(`"((?:batch|binding|bound|certificate|client|evidence|grpc|idblock|measure|nonce|policy|quic|seal|server|snp|tls|transport|verify)\.[a-z0-9_.]+|authorize)"`)

// TestCheckNamesDocumented keeps docs/CHECKS.md complete: every check
// name in the library's code is listed there.
func TestCheckNamesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/CHECKS.md")
	require.NoError(t, err)
	names := map[string]string{}
	for _, dir := range []string{"../atls", "../certgen"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range checkLiteral.FindAllStringSubmatch(string(src), -1) {
				names[m[1]] = path
			}
			return nil
		})
		require.NoError(t, err)
	}
	delete(names, "policy.json") // a file name, not a check
	require.NotEmpty(t, names)
	for name, path := range names {
		require.Contains(t, string(doc), "`"+name+"`", "check %q (used in %s) is not in docs/CHECKS.md", name, path)
	}
}
