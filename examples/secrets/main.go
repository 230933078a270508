// Command secrets is attestation-gated secret release: a key broker that
// hands a secret (here a disk encryption key) only to a confidential VM
// whose verified attestation report satisfies that secret's policy, and
// tells every other attested VM which check it failed. It runs on
// loopback with the SEV-SNP simulator:
//
//	go run ./examples/secrets
//
// # Design
//
// The broker is an HTTPS server with mutual attestation: a client's TLS
// certificate carries an attestation report bound to the client's key and
// to a nonce the broker sent for this handshake. Only the attested VM
// holds that key, so whatever the broker writes on this connection reaches
// only that VM: the TLS channel itself is the secure channel to the VM,
// and no extra wrapping key is needed.
//
// The checks are split in two layers:
//
//  1. At the TLS layer (atls.ServerOptions.ClientVerifier), the broker
//     checks that the client is genuine and fresh: the AMD chain, the
//     report signature, the binding to this connection's key and nonce,
//     and a gate policy with the secure defaults (no debug, no migration
//     agent, VMPL 0, committed firmware at or above the baseline TCB)
//     that admits every image the broker has any secret for: the union of
//     the measurements of all secret policies. A failure here fails the
//     handshake: the client only sees a TLS alert (bad_certificate); the
//     reason (the failed check) goes to the broker's log.
//
//  2. In the handler, for the secret requested, the broker appraises the
//     same evidence again with that secret's own policy, a complete
//     snp.Policy (measurement, host data, minimum guest SVN, ...). It
//     takes the evidence from the client certificate of the request
//     (r.TLS.PeerCertificates[0]) and the REPORT_DATA from the claims the
//     TLS layer verified (srv.RequestClaims), after checking that the
//     evidence digests match: the binding to this connection was
//     established in layer 1 and is not re-derived. A failure here is an
//     HTTP 403 whose body names the failed check ("policy.guest_svn"),
//     which is what an operator needs to fix a deployment.
//
// Why not accept any genuine VM at the TLS layer and decide everything in
// the handler? A snp.Policy must pin something that identifies the guest
// (an empty policy is refused: genuine hardware alone says nothing about
// the code inside it), and there is no reason to hold a connection open
// with code the broker has nothing for. The gate therefore must be at
// least as permissive as every secret policy; deriving it as the union of
// their measurements is sound here because no secret policy relaxes a
// default (a secret policy with allow_debug, say, would need the gate to
// allow it too). Why not one TLS-layer policy per secret? The handshake
// happens before the request says which secret it wants, and a handshake
// failure carries no reason.
//
// # Keeping a released secret across restarts
//
// The disk unlocker needs its key at every boot, and the broker should not
// have to be reachable (or asked) each time. Once released, the key is
// sealed (package seal) to a file: encrypted under a key that the VM's
// secure processor derives from the chip's VCEK and the VM's launch
// measurement, guest policy, guest SVN (as a floor) and TCB (as a floor).
// After a restart the same image on the same machine derives the same key
// and unseals the disk key with the broker down; a VM launched from
// another image, at a lower guest SVN, or after a firmware rollback
// cannot, and the failure names the check (seal.measurement,
// seal.guest_svn, seal.tcb).
//
// On real hardware: the broker and the clients use guest.NewAttester,
// the unlocker seals with guest.NewKeyDeriver, and every verifier trusts
// snp.AMDRoots() instead of the simulated roots.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/atls/snp/seal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dir, err := os.MkdirTemp("", "atls-secrets-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "secrets:", err)
		os.Exit(1)
	}
	err = run(ctx, os.Stdout, dir)
	os.RemoveAll(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "secrets:", err)
		os.Exit(1)
	}
}

// The images of this example's world.
var (
	brokerImage   = sha512.Sum384([]byte("key broker v1"))
	unlockerImage = sha512.Sum384([]byte("disk unlocker v2"))
	metricsImage  = sha512.Sum384([]byte("metrics agent v1"))
	unknownImage  = sha512.Sum384([]byte("some other image"))
	// prodHostData is the HOST_DATA the production hypervisor sets at
	// launch (for example a hash of the deployment's configuration).
	prodHostData = sha256.Sum256([]byte("deployment: prod"))
	// hostChip is the chip of the machine every client VM runs on.
	hostChip = sha512.Sum512([]byte("the client host's chip"))
)

// diskKeySelection is what the unlocker's sealing key depends on: this
// image, its guest policy, its guest SVN and the platform's TCB (both
// floors, at their current values), on the chip's VCEK.
var diskKeySelection = seal.Selection{
	Fields: snp.FieldMeasurement | snp.FieldGuestPolicy | snp.FieldGuestSVN | snp.FieldTCBVersion,
}

// secretPolicies are the per-secret policies, as they would sit in the
// broker's configuration: ordinary snp.Policy JSON.
var secretPolicies = map[string]string{
	// The disk key: only the disk unlocker, only in production, only from
	// guest SVN 2 on (version 1 had a bug that logged the key).
	"disk-key": fmt.Sprintf(`{
		"measurements": ["%x"],
		"host_data": "%x",
		"minimum_guest_svn": 2
	}`, unlockerImage, prodHostData),
	// The metrics token: only the metrics agent.
	"metrics-token": fmt.Sprintf(`{"measurements": ["%x"]}`, metricsImage),
}

// secret is a secret and the verifier of its policy.
type secret struct {
	value    []byte
	verifier *snp.Verifier
}

// broker releases secrets to attested clients.
type broker struct {
	srv     *atls.Server
	secrets map[string]*secret
}

// release is the broker's answer.
type release struct {
	Secret string `json:"secret,omitempty"` // base64
	Error  string `json:"error,omitempty"`
	Check  string `json:"check,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func newBroker(roots *snp.Roots, att atls.Attester, log *slog.Logger) (*broker, error) {
	b := &broker{secrets: map[string]*secret{}}
	var all []attest.HexBytes
	for name, js := range secretPolicies {
		p, err := snp.ParsePolicy([]byte(js))
		if err != nil {
			return nil, fmt.Errorf("policy of %s: %w", name, err)
		}
		v, err := snp.NewVerifier(snp.VerifierOptions{Roots: roots, Policy: p})
		if err != nil {
			return nil, err
		}
		value := make([]byte, 32)
		_, _ = rand.Read(value)
		b.secrets[name] = &secret{value: value, verifier: v}
		for _, m := range p.Measurements {
			if !slices.ContainsFunc(all, func(x attest.HexBytes) bool { return bytes.Equal(x, m) }) {
				all = append(all, m)
			}
		}
	}
	// Layer 1: the gate. Secure defaults, every image some secret names.
	gate := snp.NewPolicy()
	gate.Measurements = all
	gv, err := snp.NewVerifier(snp.VerifierOptions{Roots: roots, Policy: gate})
	if err != nil {
		return nil, err
	}
	b.srv, err = atls.NewServer(atls.ServerOptions{Attester: att, ClientVerifier: gv, Logger: log})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// ServeHTTP serves GET /v1/secrets/{name}: layer 2.
func (b *broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/v1/secrets/")
	sec := b.secrets[name]
	if !ok || r.Method != http.MethodGet || sec == nil {
		reply(w, http.StatusNotFound, release{Error: "no such secret"})
		return
	}
	// The claims the TLS layer verified for this connection. Without them
	// (impossible with a ClientVerifier) nothing is released.
	claims, ok := b.srv.RequestClaims(r)
	if !ok || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || len(claims.ReportData) != attest.ReportDataSize {
		reply(w, http.StatusUnauthorized, release{Error: "client not attested"})
		return
	}
	ev, err := attest.FromCertificate(r.TLS.PeerCertificates[0])
	if err != nil {
		reply(w, http.StatusForbidden, release{Error: "refused", Check: attest.FailedCheck(err), Reason: err.Error()})
		return
	}
	// Make sure this is the evidence the TLS layer verified.
	if d, err := ev.Digest(); err != nil || !bytes.Equal(d[:], claims.EvidenceDigest) {
		reply(w, http.StatusInternalServerError, release{Error: "evidence changed between the handshake and the request"})
		return
	}
	// The secret's policy, on the same evidence and the REPORT_DATA that
	// layer 1 found bound to this connection.
	if _, err := sec.verifier.Verify(r.Context(), ev, [attest.ReportDataSize]byte(claims.ReportData)); err != nil {
		var ce *attest.CheckError
		reason := err.Error()
		if errors.As(err, &ce) && ce.Err != nil {
			reason = ce.Err.Error()
		}
		reply(w, http.StatusForbidden, release{Error: "refused", Check: attest.FailedCheck(err), Reason: reason})
		return
	}
	reply(w, http.StatusOK, release{Secret: base64.StdEncoding.EncodeToString(sec.value)})
}

func reply(w http.ResponseWriter, status int, body release) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// run plays the example; sealed secrets go to dir.
func run(ctx context.Context, w io.Writer, dir string) error {
	out := &syncWriter{w: w}
	fmt.Fprintln(out, "Creating a simulated AMD chain (SIMULATED: not real hardware)...")
	chain, err := snp.NewSimChain("Milan")
	if err != nil {
		return err
	}
	roots := chain.Roots() // real hardware: snp.AMDRoots()
	vm := func(image [48]byte, svn uint32, hostData [32]byte) (*snp.SimAttester, error) {
		return snp.NewSimAttester(chain, snp.SimOptions{Measurement: image, GuestSVN: svn, HostData: hostData, ChipID: hostChip})
	}

	// The broker, in its own VM. Its log shows why handshakes fail.
	brokerVM, err := vm(brokerImage, 1, [32]byte{})
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(&prefixWriter{out: out, prefix: "      [broker log] "}, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == "error") {
				return slog.Attr{} // keep the output short: the check says it
			}
			return a
		},
	}))
	b, err := newBroker(roots, brokerVM, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: b, TLSConfig: b.srv.TLSConfig(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	defer hs.Close()
	sealed := filepath.Join(dir, "disk-key.sealed")
	url := "https://" + ln.Addr().String() + "/v1/secrets/"
	fmt.Fprintf(out, "Key broker at %s holds: disk-key (disk unlocker v2, prod host data, guest SVN >= 2), metrics-token (metrics agent v1)\n\n", url)

	// Every client verifies the broker too: a secret request to an
	// impostor would hand it nothing, but a client must not trust
	// secrets (keys!) from one either.
	brokerPolicy := snp.NewPolicy()
	brokerPolicy.Measurements = []attest.HexBytes{brokerImage[:]}
	brokerVerifier, err := snp.NewVerifier(snp.VerifierOptions{Roots: roots, Policy: brokerPolicy})
	if err != nil {
		return err
	}

	type client struct {
		name   string
		image  [48]byte
		svn    uint32
		host   [32]byte
		attest bool
	}
	clients := []client{
		{"disk unlocker v2, prod, SVN 2", unlockerImage, 2, prodHostData, true},
		{"disk unlocker v2, prod, SVN 1", unlockerImage, 1, prodHostData, true},
		{"disk unlocker v2, staging, SVN 2", unlockerImage, 2, sha256.Sum256([]byte("deployment: staging")), true},
		{"metrics agent v1", metricsImage, 0, [32]byte{}, true},
		{"unknown image", unknownImage, 5, prodHostData, true},
		{"client without attestation", [48]byte{}, 0, [32]byte{}, false},
	}
	for _, c := range clients {
		// HTTP/1.1: a broker that refuses a client in the handshake
		// sends a TLS alert, which reaches an HTTP/1.1 request as a
		// "remote error" (printed below); net/http's HTTP/2 client
		// reports only that the connection could not be established.
		opts := atls.ClientOptions{Verifier: brokerVerifier, Base: &tls.Config{NextProtos: []string{"http/1.1"}}}
		var att *snp.SimAttester
		if c.attest {
			if att, err = vm(c.image, c.svn, c.host); err != nil {
				return err
			}
			opts.Attester = att
		}
		cli, err := atls.NewClient(opts)
		if err != nil {
			return err
		}
		hc := &http.Client{Transport: cli.Transport(), Timeout: 30 * time.Second}
		fmt.Fprintf(out, "%s:\n", c.name)
		for _, name := range []string{"disk-key", "metrics-token"} {
			value, err := fetch(ctx, out, hc, url, name)
			if err != nil {
				return err
			}
			if value != nil && name == "disk-key" {
				// The unlocker keeps its key, sealed to this VM.
				blob, err := seal.Seal(ctx, att, diskKeySelection, value, []byte(name))
				if err != nil {
					return err
				}
				if err := os.WriteFile(sealed, blob, 0o600); err != nil {
					return err
				}
				fmt.Fprintf(out, "  %-14s sealed to %s (%d bytes)\n", name, filepath.Base(sealed), len(blob))
			}
		}
		hc.CloseIdleConnections()
	}

	// A restart: the broker is gone, and VMs launched on the same host
	// read the sealed disk key.
	if err := hs.Close(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nThe key broker is down. VMs (re)launched on the same host read %s:\n", filepath.Base(sealed))
	blob, err := os.ReadFile(sealed)
	if err != nil {
		return err
	}
	for _, c := range []client{
		{"disk unlocker v2, prod, SVN 2, restarted", unlockerImage, 2, prodHostData, true},
		{"disk unlocker v2, prod, SVN 1", unlockerImage, 1, prodHostData, true},
		{"unknown image", unknownImage, 5, prodHostData, true},
	} {
		att, err := vm(c.image, c.svn, c.host)
		if err != nil {
			return err
		}
		value, err := seal.Unseal(ctx, att, blob, []byte("disk-key"))
		if err != nil {
			fmt.Fprintf(out, "  %-42s cannot unseal: check %s\n", c.name, attest.FailedCheck(err))
			continue
		}
		fmt.Fprintf(out, "  %-42s unsealed disk-key: %d bytes (%x…)\n", c.name, len(value), value[:4])
	}
	return nil
}

// fetch asks for one secret, prints the outcome and returns the secret if
// it was released.
func fetch(ctx context.Context, out io.Writer, hc *http.Client, url, name string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+name, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ce *atls.CheckError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("the broker failed check %q: %w", ce.Check, ce)
		}
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "remote error" {
			fmt.Fprintf(out, "  %-14s TLS handshake refused by the broker (%v)\n", name, oe.Err)
			return nil, nil
		}
		return nil, err
	}
	defer resp.Body.Close()
	var rel release
	if err := json.NewDecoder(resp.Body).Decode(&rel); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(out, "  %-14s %d %s: check %s: %s\n", name, resp.StatusCode, rel.Error, rel.Check, rel.Reason)
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(rel.Secret)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "  %-14s released: %d bytes (%x…)\n", name, len(key), key[:4])
	return key, nil
}

// prefixWriter writes each log line with a prefix.
type prefixWriter struct {
	out    io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.out, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// syncWriter serializes writes from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
