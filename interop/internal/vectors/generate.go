package vectors

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/certgen"
)

// Options configure Generate.
type Options struct {
	// Out is the directory to write to. Vector files there that the
	// generator no longer writes are removed.
	Out string
	// ChainPEM is the simulated chain to issue from (a SimChain's
	// MarshalPEM). Nil makes a new chain, which changes every vector.
	ChainPEM []byte
	// Log receives progress lines; nil is silent.
	Log io.Writer
}

// Deterministic contents of the simulated reports, so that regenerated
// vectors differ only in keys and signatures.
var (
	// Measurement is the launch measurement of the simulated guest and
	// the one the policy accepts.
	Measurement = sha512.Sum384([]byte("atls test vectors: measurement"))
	// OtherMeasurement is a measurement the policy refuses.
	OtherMeasurement = sha512.Sum384([]byte("atls test vectors: another measurement"))
	// ChipID is the simulated chip's CHIP_ID.
	ChipID = sha512.Sum512([]byte("atls test vectors: chip"))
	// ReportID is the simulated guest's REPORT_ID.
	ReportID = sha256.Sum256([]byte("atls test vectors: report id"))
)

// NonceFor is the deterministic nonce of a vector.
func NonceFor(name string) [attest.NonceSize]byte {
	return sha256.Sum256([]byte("atls test vectors: nonce of " + name))
}

// Times used by the vectors, relative to Base.
const (
	soon    = 5 * time.Minute
	tooOld  = 3 * time.Hour
	dayLong = 24 * time.Hour
)

// verifierNonce says which nonce a vector's verifier sent.
type verifierNonce int

const (
	sameNonce  verifierNonce = iota // the one the certificate was made for
	otherNonce                      // another one
	noNonce                         // none
	nonceOf                         // the one of the vector named by spec.nonceOf
)

// spec describes one vector.
type spec struct {
	name, desc string
	role       attest.Role // the role the certificate is made for
	expect     attest.Role // the role the verifier expects; 0 means role
	mode       attest.Mode
	key        certgen.KeyType
	validity   time.Duration
	attester   attest.Attester
	// batch, if set, issued the certificate (mode batch) in one batch
	// with others; key and validity are then the batch's.
	batch *batchGroup
	// post turns the issued certificate into the vector's.
	post         func(*tls.Certificate) (*tls.Certificate, error)
	nonce        verifierNonce
	nonceOf      string // with nonce == nonceOf
	acceptStatic bool
	at           time.Duration // verification time after Base
	check        string        // "" for a valid vector
}

type generator struct {
	chain   *snp.SimChain
	arkKey  *rsa.PrivateKey
	roots   *snp.Roots
	policy  Policy
	log     io.Writer
	batches []*batchGroup
}

// batch registers a batch of the named members, in tree order, whose
// report inner makes. Members that are vectors are made for their spec's
// role and key; the others are server certificates with the default key.
func (g *generator) batch(inner attest.Attester, members ...string) *batchGroup {
	b := &batchGroup{inner: inner, members: members}
	g.batches = append(g.batches, b)
	return b
}

// issueBatches issues the certificates of every registered batch.
func (g *generator) issueBatches(ctx context.Context, specs []spec) error {
	byName := map[string]spec{}
	for _, s := range specs {
		byName[s.name] = s
	}
	member := func(name string) batchMember {
		if s, ok := byName[name]; ok {
			return batchMember{role: s.role, key: s.key}
		}
		return batchMember{role: attest.RoleServer}
	}
	for _, b := range g.batches {
		if err := b.issue(ctx, member); err != nil {
			return fmt.Errorf("batch %v: %w", b.members, err)
		}
	}
	for _, s := range specs {
		if s.batch != nil && s.mode != attest.ModeBatch {
			return fmt.Errorf("vector %s: issued in a batch, but mode %v", s.name, s.mode)
		}
	}
	return nil
}

// Generate writes the vectors to opts.Out.
func Generate(ctx context.Context, opts Options) error {
	if opts.Out == "" {
		return errors.New("vectors: no output directory")
	}
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	// The simulator's VCEKs are valid from an hour before they are made,
	// for seven years; every verification time must fall inside.
	now := time.Now()
	if latest := Base.Add(-30 * time.Minute); now.After(latest) {
		return fmt.Errorf("vectors: it is %v, after the vectors' fixed time %v: move vectors.Base forward and regenerate", now.UTC().Format(time.RFC3339), Base.Format(time.RFC3339))
	}
	if expiry := now.AddDate(7, 0, 0).Add(-2 * time.Hour); expiry.Before(Base.Add(dayLong)) {
		return fmt.Errorf("vectors: VCEKs issued now expire before the vectors' fixed time %v: move vectors.Base closer", Base.Format(time.RFC3339))
	}

	g := &generator{log: log, policy: Policy{Measurements: []string{hex.EncodeToString(Measurement[:])}}}
	chainPEM := opts.ChainPEM
	if chainPEM == nil {
		fmt.Fprintln(log, "genvectors: making a new simulated Milan chain (two RSA-4096 keys)")
		c, err := snp.NewSimChain("Milan")
		if err != nil {
			return err
		}
		if chainPEM, err = c.MarshalPEM(); err != nil {
			return err
		}
	}
	var err error
	if g.chain, err = snp.ParseSimChainPEM(chainPEM); err != nil {
		return err
	}
	if g.arkKey, err = privateKeyFor(chainPEM, g.chain.ARK); err != nil {
		return err
	}
	g.roots = g.chain.Roots()

	specs, err := g.specs()
	if err != nil {
		return err
	}
	if err := g.issueBatches(ctx, specs); err != nil {
		return err
	}
	m := &Manifest{
		Format: Format,
		Description: "Test vectors of the atls evidence format: attested certificates under a simulated AMD SEV-SNP chain, " +
			"the verifier's inputs (expected role, nonce, whether static evidence is accepted, time) and the outcome: " +
			"the claims of a valid certificate, or the check an invalid one fails. Certificates and keys are " +
			"random; everything else is reproducible.",
		Spec:      "interop/SPEC.md",
		Generator: "go generate ./interop/... (interop/internal/genvectors)",
		Roots:     RootsFile,
		Simulated: true,
		SimChain:  ChainFile,
		Policy:    g.policy,
	}
	files := map[string][]byte{
		ChainFile: chainPEM,
		RootsFile: g.roots.PEM(),
	}
	for _, s := range specs {
		v, certPEM, keyPEM, err := g.make(ctx, s)
		if err != nil {
			return fmt.Errorf("vector %s: %w", s.name, err)
		}
		files[v.Cert], files[v.Key] = certPEM, keyPEM
		m.Vectors = append(m.Vectors, v)
		outcome := "valid"
		if !v.Valid {
			outcome = "fails " + v.Check
		}
		fmt.Fprintf(log, "genvectors: %-30s %s\n", v.Name, outcome)
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	files[ManifestFile] = append(mj, '\n')
	return writeFiles(opts.Out, files)
}

// writeFiles writes files into dir and removes the vector files there
// that are not among them.
func writeFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range old {
		n := e.Name()
		if _, keep := files[n]; !keep && (strings.HasSuffix(n, ".cert.pem") || strings.HasSuffix(n, ".key.pem")) {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), files[n], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// privateKeyFor finds the key of cert among the PRIVATE KEY blocks of a
// MarshalPEM output.
func privateKeyFor(chainPEM []byte, cert *x509.Certificate) (*rsa.PrivateKey, error) {
	rest := chainPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("vectors: no private key for %s in the chain", cert.Subject.CommonName)
		}
		if b.Type != "PRIVATE KEY" {
			continue
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, err
		}
		if rk, ok := k.(*rsa.PrivateKey); ok && rk.PublicKey.Equal(cert.PublicKey) {
			return rk, nil
		}
	}
}

// simOptions are the report contents of the simulated guest.
func simOptions() snp.SimOptions {
	return snp.SimOptions{Measurement: Measurement, ChipID: ChipID, ReportID: ReportID}
}

func (g *generator) attester(mod func(*snp.SimOptions)) (*snp.SimAttester, error) {
	o := simOptions()
	if mod != nil {
		mod(&o)
	}
	return snp.NewSimAttester(g.chain, o)
}

// mutating is an attester whose evidence is changed after it is made.
type mutating struct {
	inner  attest.Attester
	mutate func(*attest.Evidence) error
}

func (m mutating) Attest(ctx context.Context, rd [attest.ReportDataSize]byte) (*attest.Evidence, error) {
	ev, err := m.inner.Attest(ctx, rd)
	if err != nil {
		return nil, err
	}
	return ev, m.mutate(ev)
}

// withCRL adds an ask-crl record to the evidence of a.
func withCRL(a attest.Attester, crl []byte) attest.Attester {
	return mutating{inner: a, mutate: func(ev *attest.Evidence) error {
		ev.Records[snp.CRLLabel] = attest.Record{MediaType: snp.CRLMediaType, Value: crl}
		return nil
	}}
}

// crl makes an ARK-signed CRL, valid around Base, revoking serial.
func (g *generator) crl(serial *big.Int) ([]byte, error) {
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: Base.Add(-dayLong),
		NextUpdate: Base.Add(30 * dayLong),
		RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: serial, RevocationTime: Base.Add(-2 * dayLong)},
		},
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
	}
	return x509.CreateRevocationList(rand.Reader, tmpl, g.chain.ARK, g.arkKey)
}

// forgedChain is a chain with AMD's names and the profile of the
// simulator's, under keys nobody pins: what someone who wants to pass
// off evidence without a genuine VCEK would make. (RSA-2048 keeps
// generation quick; the verifier never gets as far as the key size.)
func (g *generator) forgedChain() (*snp.SimChain, error) {
	var keys [2]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	arkKey, askKey := keys[0], keys[1]
	mk := func(real *x509.Certificate, parent *x509.Certificate, pub *rsa.PublicKey, signer *rsa.PrivateKey) (*x509.Certificate, error) {
		tmpl := &x509.Certificate{
			SerialNumber:          real.SerialNumber,
			RawSubject:            real.RawSubject,
			NotBefore:             real.NotBefore,
			NotAfter:              real.NotAfter,
			KeyUsage:              real.KeyUsage,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLen:            real.MaxPathLen,
			MaxPathLenZero:        real.MaxPathLenZero,
			SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		}
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			return nil, err
		}
		return x509.ParseCertificate(der)
	}
	ark, err := mk(g.chain.ARK, nil, &arkKey.PublicKey, arkKey)
	if err != nil {
		return nil, err
	}
	ask, err := mk(g.chain.ASK, ark, &askKey.PublicKey, arkKey)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for _, c := range []*x509.Certificate{ark, ask} {
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			return nil, err
		}
	}
	for _, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
			return nil, err
		}
	}
	return snp.ParseSimChainPEM(buf.Bytes())
}

// specs lists the vectors.
func (g *generator) specs() ([]spec, error) {
	v3, err := g.attester(nil)
	if err != nil {
		return nil, err
	}
	v5, err := g.attester(func(o *snp.SimOptions) { o.ReportVersion = 5 })
	if err != nil {
		return nil, err
	}
	v2, err := g.attester(func(o *snp.SimOptions) { o.ReportVersion = 2 })
	if err != nil {
		return nil, err
	}
	other, err := g.attester(func(o *snp.SimOptions) { o.Measurement = OtherMeasurement })
	if err != nil {
		return nil, err
	}
	debug, err := g.attester(func(o *snp.SimOptions) { o.GuestPolicy = 0x30000 | 1<<19 })
	if err != nil {
		return nil, err
	}
	vmpl1, err := g.attester(func(o *snp.SimOptions) { o.VMPL = 1 })
	if err != nil {
		return nil, err
	}
	forged, err := g.forgedChain()
	if err != nil {
		return nil, err
	}
	forgedAtt, err := snp.NewSimAttester(forged, simOptions())
	if err != nil {
		return nil, err
	}
	goodCRL, err := g.crl(big.NewInt(0x5eed))
	if err != nil {
		return nil, err
	}
	revokingCRL, err := g.crl(g.chain.ASK.SerialNumber)
	if err != nil {
		return nil, err
	}
	version4 := mutating{inner: v3, mutate: func(ev *attest.Evidence) error {
		r := ev.Records[snp.ReportLabel]
		report := bytes.Clone(r.Value)
		binary.LittleEndian.PutUint32(report[0:4], 4)
		if err := v3.SignReport(report); err != nil {
			return err
		}
		ev.Records[snp.ReportLabel] = attest.Record{MediaType: r.MediaType, Value: report}
		return nil
	}}

	S, C := attest.RoleServer, attest.RoleClient
	N, St := attest.ModeNonce, attest.ModeStatic
	return append([]spec{
		// Valid.
		{name: "server-nonce-p256", desc: "A server certificate bound to the client's nonce; ECDSA P-256 key, report version 3.",
			role: S, mode: N, key: certgen.ECDSAP256, attester: v3},
		{name: "server-static-p384-v5", desc: "A static server certificate, as served to peers that send no nonce; ECDSA P-384 key, report version 5. The verifier sent a nonce, which static evidence ignores.",
			role: S, mode: St, key: certgen.ECDSAP384, attester: v5, acceptStatic: true},
		{name: "client-nonce-ed25519-v2", desc: "A client certificate bound to the server's nonce (mutual attestation); Ed25519 key, report version 2.",
			role: C, mode: N, key: certgen.Ed25519, attester: v2},
		{name: "client-static-p256", desc: "A static client certificate, as presented to servers that send no nonce.",
			role: C, mode: St, key: certgen.ECDSAP256, attester: v3, acceptStatic: true},
		{name: "server-static-crl", desc: "A static server certificate whose evidence carries an ARK-signed CRL that revokes nothing on the chain.",
			role: S, mode: St, key: certgen.ECDSAP256, attester: withCRL(v3, goodCRL), acceptStatic: true},

		// Invalid: extension and collection.
		{name: "not-attested", desc: "A certificate without the id-pe-cmw extension.",
			role: S, mode: St, attester: v3, acceptStatic: true, check: "evidence.extension",
			post: func(c *tls.Certificate) (*tls.Certificate, error) { return Reissue(c, nil) }},
		{name: "critical-extension", desc: "The id-pe-cmw extension is marked critical.",
			role: S, mode: St, attester: v3, acceptStatic: true, check: "evidence.extension", post: critical},
		{name: "cbor-choice", desc: "The extension holds an OCTET STRING (the CBOR choice of CMW) instead of a UTF8String.",
			role: S, mode: St, attester: v3, acceptStatic: true, check: "evidence.extension", post: octetString},
		{name: "duplicate-member", desc: "The JSON collection has the member \"binding\" twice.",
			role: S, mode: St, attester: v3, acceptStatic: true, check: "evidence.collection", post: duplicateBinding},
		{name: "bad-binding-record", desc: "The binding record has a member beyond version, role and mode.",
			role: C, mode: N, attester: v3, check: "evidence.binding", post: extraBindingMember},

		// Invalid: binding.
		{name: "role-reflected", desc: "A client's certificate presented as a server's.",
			role: C, expect: S, mode: St, attester: v3, acceptStatic: true, check: "binding.role"},
		{name: "nonce-missing", desc: "A nonce-bound certificate, but the verifier sent no nonce.",
			role: S, mode: N, attester: v3, nonce: noNonce, check: "binding.nonce"},
		{name: "static-not-accepted", desc: "A static certificate, and the verifier accepts only nonce-bound evidence.",
			role: S, mode: St, attester: v3, check: "binding.freshness"},
		{name: "static-too-old", desc: "A static certificate valid for a day, verified three hours after notBefore: older than the maximum age of two hours.",
			role: S, mode: St, attester: v3, acceptStatic: true, validity: dayLong, at: tooOld, check: "binding.max_age"},
		{name: "expired", desc: "A nonce-bound certificate verified one second after notAfter.",
			role: S, mode: N, attester: v3, at: certgen.DefaultNonceValidity + time.Minute + time.Second, check: "certificate.validity"},
		{name: "wrong-nonce", desc: "A certificate bound to another nonce than the verifier's.",
			role: S, mode: N, attester: v3, nonce: otherNonce, check: "snp.report_data"},
		{name: "mode-swapped", desc: "A static certificate whose binding record was changed to say nonce: the report was made for mode 0x00, the verifier computes mode 0x01.",
			role: S, mode: St, attester: v3, check: "snp.report_data", post: swapToNonce},

		// Invalid: report, chain and signature.
		{name: "tampered-report", desc: "One bit of the report's HOST_DATA flipped after it was signed.",
			role: S, mode: St, attester: v3, acceptStatic: true, check: "snp.report.signature", post: TamperReport},
		{name: "report-version-4", desc: "A correctly signed report of version 4, which the default policy does not accept (2, 3 and 5).",
			role: C, mode: N, attester: version4, check: "snp.report.version"},
		{name: "forged-chain", desc: "A VCEK issued by an ASK with AMD's names but a key that is not the pinned one.",
			role: S, mode: St, attester: forgedAtt, acceptStatic: true, check: "snp.vcek.chain"},
		{name: "ask-revoked", desc: "The evidence carries an ARK-signed CRL that revokes the ASK.",
			role: S, mode: St, attester: withCRL(v3, revokingCRL), acceptStatic: true, check: "snp.revocation"},

		// Invalid: policy.
		{name: "debug-policy", desc: "The guest policy allows debugging (bit 19).",
			role: C, mode: St, attester: debug, acceptStatic: true, check: "policy.debug"},
		{name: "vmpl-1", desc: "The report was requested from VMPL 1; the policy accepts VMPL 0 only.",
			role: S, mode: N, attester: vmpl1, check: "policy.vmpl"},
		{name: "wrong-measurement", desc: "The guest's measurement is not in the policy's allowlist.",
			role: C, mode: N, attester: other, check: "policy.measurement"},
	}, g.batchSpecs(v3)...), nil
}

// critical reissues c with its id-pe-cmw extension marked critical.
func critical(c *tls.Certificate) (*tls.Certificate, error) {
	for _, e := range c.Leaf.Extensions {
		if e.Id.Equal(attest.OIDCMW) {
			e.Critical = true
			return Reissue(c, &e)
		}
	}
	return nil, errors.New("no id-pe-cmw extension")
}

// octetString reissues c with the collection in a DER OCTET STRING.
func octetString(c *tls.Certificate) (*tls.Certificate, error) {
	ev, err := attest.FromCertificate(c.Leaf)
	if err != nil {
		return nil, err
	}
	j, err := ev.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return reissueJSON(c, j, cbasn1.OCTET_STRING)
}

// duplicateBinding reissues c with the binding record written twice.
func duplicateBinding(c *tls.Certificate) (*tls.Certificate, error) {
	ev, err := attest.FromCertificate(c.Leaf)
	if err != nil {
		return nil, err
	}
	j, err := ev.MarshalJSON()
	if err != nil {
		return nil, err
	}
	b := ev.Records[attest.BindingRecordLabel]
	dup := fmt.Sprintf(`,%q:[%q,%q]}`, attest.BindingRecordLabel, b.MediaType, base64.RawURLEncoding.EncodeToString(b.Value))
	j = append(j[:len(j)-1], dup...)
	return reissueJSON(c, j, cbasn1.UTF8String)
}

func reissueJSON(c *tls.Certificate, j []byte, tag cbasn1.Tag) (*tls.Certificate, error) {
	var b cryptobyte.Builder
	b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(j) })
	der, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	return Reissue(c, &pkix.Extension{Id: attest.OIDCMW, Value: der})
}

// extraBindingMember reissues c with a fourth member in its binding record.
func extraBindingMember(c *tls.Certificate) (*tls.Certificate, error) {
	return MutateEvidence(c, func(ev *attest.Evidence) error {
		p, err := ev.Binding()
		if err != nil {
			return err
		}
		v := fmt.Sprintf(`{"version":1,"role":%q,"mode":%q,"nonce":"%s"}`, p.Role, p.Mode, strings.Repeat("00", attest.NonceSize))
		ev.Records[attest.BindingRecordLabel] = attest.Record{MediaType: attest.BindingMediaType, Value: []byte(v)}
		return nil
	})
}

// swapToNonce reissues c with its binding record saying nonce mode.
func swapToNonce(c *tls.Certificate) (*tls.Certificate, error) {
	return MutateEvidence(c, func(ev *attest.Evidence) error {
		p, err := ev.Binding()
		if err != nil {
			return err
		}
		return ev.SetBinding(p.Role, attest.ModeNonce)
	})
}

// make issues the certificate of s, verifies it with the Go verifier and
// fills in the vector.
func (g *generator) make(ctx context.Context, s spec) (Vector, []byte, []byte, error) {
	v := Vector{
		Name:          s.name,
		Description:   s.desc,
		Cert:          s.name + ".cert.pem",
		Key:           s.name + ".key.pem",
		Mode:          s.mode.String(),
		AcceptStatic:  s.acceptStatic,
		MaxAgeSeconds: int64(atls.DefaultMaxAge / time.Second),
		Valid:         s.check == "",
		Check:         s.check,
	}
	expect := s.expect
	if expect == 0 {
		expect = s.role
	}
	v.Role = expect.String()
	at := s.at
	if at == 0 {
		at = soon
	}
	now := Base.Add(at)
	v.Now = now.Format(time.RFC3339)

	certNonce := NonceFor(s.name)
	var vn *[attest.NonceSize]byte
	switch s.nonce {
	case sameNonce:
		vn = &certNonce
	case otherNonce:
		n := NonceFor(s.name + " (verifier)")
		vn = &n
	case nonceOf:
		n := NonceFor(s.nonceOf)
		vn = &n
	}
	if vn != nil {
		v.Nonce = hex.EncodeToString(vn[:])
	}

	var cert *tls.Certificate
	var err error
	if s.batch != nil {
		cert, err = s.batch.cert(s.name)
	} else {
		cert, err = certgen.Issue(ctx, certgen.Request{
			Attester: s.attester,
			Role:     s.role,
			Mode:     s.mode,
			Nonce:    certNonce,
			KeyType:  s.key,
			Validity: s.validity,
			// certgen backdates notBefore by a minute.
			Now: func() time.Time { return Base.Add(time.Minute) },
		})
	}
	if err != nil {
		return v, nil, nil, err
	}
	if !cert.Leaf.NotBefore.Equal(Base) {
		return v, nil, nil, fmt.Errorf("certgen made notBefore %v, want %v", cert.Leaf.NotBefore, Base)
	}
	if s.post != nil {
		if cert, err = s.post(cert); err != nil {
			return v, nil, nil, err
		}
	}
	certPEM, keyPEM, err := certgen.EncodePEM(cert)
	if err != nil {
		return v, nil, nil, err
	}

	ver, err := snp.NewVerifier(snp.VerifierOptions{Roots: g.roots, Policy: mustPolicy(g.policy), Now: func() time.Time { return now }})
	if err != nil {
		return v, nil, nil, err
	}
	res, verr := VerifyCertificate(ctx, ver, cert.Leaf, Expectation{
		Role: expect, Nonce: vn, AcceptStatic: s.acceptStatic, MaxAge: v.MaxAge(), Now: now,
	})
	if res.ReportData != nil {
		v.ReportData = hex.EncodeToString(res.ReportData[:])
	}
	switch got := attest.FailedCheck(verr); {
	case s.check == "" && verr != nil:
		return v, nil, nil, fmt.Errorf("the Go verifier rejects this valid vector: %w", verr)
	case s.check != "" && verr == nil:
		return v, nil, nil, fmt.Errorf("the Go verifier accepts this vector, which should fail %s", s.check)
	case s.check != "" && got != s.check:
		return v, nil, nil, fmt.Errorf("the Go verifier fails check %q, want %q: %w", got, s.check, verr)
	}
	if v.Valid {
		if v.Claims, err = json.Marshal(res.Claims); err != nil {
			return v, nil, nil, err
		}
	}
	return v, certPEM, keyPEM, nil
}

func mustPolicy(p Policy) *snp.Policy {
	pol, err := p.Parse()
	if err != nil {
		panic(err) // the generator's own policy
	}
	return pol
}
