package interop

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/interop/internal/vectors"
	"github.com/stretchr/testify/require"
)

// boundDir holds the session-bound vectors (SPEC.md section 9).
const boundDir = "../testdata/bound-vectors"

func loadBoundManifest(t *testing.T) *vectors.BoundManifest {
	t.Helper()
	m, err := vectors.LoadBoundManifest(boundDir)
	require.NoError(t, err, regenerate)
	require.NotEmpty(t, m.Vectors)
	return m
}

// TestBoundVectorsVerify checks every committed bound vector with the
// library's receiver code: valid ones give the recorded claims, invalid
// ones fail the recorded check.
func TestBoundVectorsVerify(t *testing.T) {
	m := loadManifest(t)
	bm := loadBoundManifest(t)
	outcomes := map[bool]int{}
	for _, v := range bm.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			claims, err := vectors.VerifyBoundVector(context.Background(), boundDir, vectorsDir, m, v)
			outcomes[v.Valid]++
			if !v.Valid {
				require.Error(t, err)
				require.Equal(t, v.Check, attest.FailedCheck(err), "error: %v", err)
				return
			}
			require.NoError(t, err, regenerate)
			require.Equal(t, attest.ModeBound, claims.Mode)
			require.Equal(t, decodeJSON(t, v.Claims), claimsJSON(t, claims))
		})
	}
	require.Positive(t, outcomes[true])
	require.Positive(t, outcomes[false])
}

// TestPythonBoundVectors has the Python verifier, written from SPEC.md
// section 9, check the same frames with the same inputs: it must reach the
// same verdict, fail the same check, and return the same claims.
func TestPythonBoundVectors(t *testing.T) {
	requirePython(t)
	m := loadManifest(t)
	bm := loadBoundManifest(t)
	for _, v := range bm.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			args := []string{pyVerifier, "--roots", filepath.Join(boundDir, bm.Roots),
				"--bound-frame", filepath.Join(boundDir, v.Frame), "--exporter", v.Exporter,
				"--role", v.Role, "--now", v.Now, "--simulated"}
			for _, h := range m.Policy.Measurements {
				args = append(args, "--measurement", h)
			}
			if v.PeerCert != "" {
				args = append(args, "--peer-cert", filepath.Join(boundDir, v.PeerCert))
			}
			if v.Nonce != "" {
				args = append(args, "--nonce", v.Nonce)
			}
			stdout, stderr, code := run(t, "", pythonPath, append([]string{"-B"}, args...)...)
			py := pyOutcome(t, args, code, stdout, stderr)
			if !v.Valid {
				require.Equal(t, v.Check, py.Check, "Python: %s", py.Line)
				return
			}
			require.Empty(t, py.Check, "Python rejects what Go accepts: %s", py.Line)
			require.Equal(t, decodeJSON(t, v.Claims), py.Claims, "claims, Go (expected) and Python (actual)")
		})
	}
}
