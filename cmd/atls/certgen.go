package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/certgen"
)

var certgenSpec = &cmdSpec{
	name:     "certgen",
	synopsis: []string{"certgen --out-cert FILE --out-key FILE [--simulate] [--nonce HEX] [--role server|client] [--key-type T] [--validity D]"},
	summary: `Makes a key pair and a self-signed certificate carrying SEV-SNP evidence
whose REPORT_DATA binds the key, the validity and the role, and writes them as
PEM (the key file with mode 0600). Use it to give attested certificates to
other TLS stacks, or to produce test vectors.

The certificate is static-mode (bound to no nonce) unless --nonce gives the
verifier's nonce. Inside an SEV-SNP VM the hardware attests; --simulate uses
the simulator (SIMULATED evidence).`,
	examples: []string{
		"# A static server certificate from the simulator, valid for a day:",
		"atls certgen --simulate --validity 24h --out-cert cert.pem --out-key key.pem",
		"",
		"# Inside an SEV-SNP VM, bound to a verifier's nonce:",
		"atls certgen --nonce $NONCE --out-cert cert.pem --out-key key.pem",
	},
}

func runCertgen(e *env, args []string) int {
	flags := newFlags(e, certgenSpec)
	outCert := flags.String("out-cert", "", "`file` to write the certificate to (PEM)")
	outKey := flags.String("out-key", "", "`file` to write the private key to (PKCS #8 PEM, mode 0600)")
	af := addAttesterFlags(flags, "attest with the simulator instead of SEV-SNP hardware (SIMULATED evidence)")
	nonce := flags.String("nonce", "", "bind the evidence to this verifier nonce, 64 `hex` digits (nonce mode; default static mode)")
	role := flags.String("role", "server", "`role` the certificate is for: server or client")
	keyType := flags.String("key-type", "ecdsa-p256", "key `type`: ecdsa-p256, ecdsa-p384 or ed25519")
	validity := flags.Duration("validity", 0, fmt.Sprintf("validity (default %v for static certificates, %v for nonce-bound ones; at most %v)",
		certgen.DefaultStaticValidity, certgen.DefaultNonceValidity, certgen.MaxValidity))
	cn := flags.String("cn", "", "subject common `name` (informative only; default \"atls server\" or \"atls client\")")
	var dns listFlag
	flags.Var(&dns, "dns", "DNS `names` to include (comma-separated or repeated; informative only)")
	force := flags.Bool("force", false, "overwrite existing files")
	if _, code := parseArgs(e, flags, certgenSpec, args, 0, 0); code >= 0 {
		return code
	}

	err := func() error {
		if *outCert == "" || *outKey == "" {
			return usageErrorf("--out-cert and --out-key are required")
		}
		if *outCert == *outKey {
			return usageErrorf("--out-cert and --out-key must be different files")
		}
		req := certgen.Request{Mode: attest.ModeStatic, Validity: *validity, CommonName: *cn, DNSNames: dns}
		var err error
		if req.Role, err = attest.ParseRole(*role); err != nil {
			return usageErrorf("--role: %v", err)
		}
		if req.KeyType, err = certgen.ParseKeyType(*keyType); err != nil {
			return usageErrorf("--key-type: %v", err)
		}
		if *nonce != "" {
			n, err := parseNonce(*nonce)
			if err != nil {
				return usageErrorf("%v", err)
			}
			req.Mode, req.Nonce = attest.ModeNonce, *n
		}
		if *validity < 0 || *validity > certgen.MaxValidity {
			return usageErrorf("--validity must be between 0 and %v", certgen.MaxValidity)
		}
		if !*force {
			for _, f := range []string{*outCert, *outKey} {
				if _, err := os.Stat(f); err == nil {
					return fmt.Errorf("%s exists (use --force to overwrite)", f)
				}
			}
		}
		att, simulated, err := af.attester(e, nil)
		if err != nil {
			return err
		}
		req.Attester = att
		cert, err := certgen.Issue(e.ctx, req)
		if err != nil {
			return err
		}
		certPEM, keyPEM, err := certgen.EncodePEM(cert)
		if err != nil {
			return err
		}
		if err := writeFile(*outKey, keyPEM, 0o600, *force); err != nil {
			return err
		}
		if err := writeFile(*outCert, certPEM, 0o644, *force); err != nil {
			return err
		}

		what := "an attested"
		if simulated {
			what = "a SIMULATED attested"
		}
		fmt.Fprintf(e.stderr, "atls certgen: wrote %s %s certificate (%s mode, %s) to %s and its key to %s\n",
			what, req.Role, req.Mode, req.KeyType, *outCert, *outKey)
		fmt.Fprintf(e.stderr, "  valid %s to %s\n", cert.Leaf.NotBefore.UTC().Format(time.RFC3339), cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		if sa, ok := att.(*snp.SimAttester); ok {
			m := sa.Options().Measurement
			fmt.Fprintf(e.stderr, "  measurement %s (SIMULATED)\n", attest.HexBytes(m[:]))
		}
		check := "atls verify --policy policy.json"
		if simulated {
			check += " --roots sim-roots.pem"
		}
		if req.Mode == attest.ModeStatic {
			check += " --accept-static"
		} else {
			check += " --nonce " + *nonce
		}
		if req.Role == attest.RoleClient {
			check += " --role client"
		}
		fmt.Fprintf(e.stderr, "Check it with: %s %s\n", check, *outCert)
		return nil
	}()
	return finish(e, certgenSpec, err)
}

// writeFile writes data with mode perm; an existing file is an error
// unless overwrite is set (then it is replaced, and its mode set to
// perm).
func writeFile(path string, data []byte, perm fs.FileMode, overwrite bool) error {
	flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flag, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists (use --force to overwrite)", path)
	}
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
