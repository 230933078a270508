package atls_test

import (
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// An attested HTTPS server and a client that verifies it, on loopback,
// with the simulator standing in for SEV-SNP hardware. On a real guest the
// attester is guest.NewAttester and the client trusts snp.AMDRoots().
func Example() {
	chain, err := snp.NewSimChain("Milan")
	if err != nil {
		panic(err)
	}
	image := sha512.Sum384([]byte("my service image"))
	vm, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: image})
	if err != nil {
		panic(err)
	}

	// Server side, inside the VM.
	srv, err := atls.NewServer(atls.ServerOptions{Attester: vm})
	if err != nil {
		panic(err)
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	ts.TLS = srv.TLSConfig()
	ts.Config.ReadHeaderTimeout = 10 * time.Second // also bounds the TLS handshake
	ts.StartTLS()
	defer ts.Close()

	// Client side: pin the image, trust the simulated root explicitly.
	policy := snp.NewPolicy()
	policy.Measurements = []attest.HexBytes{image[:]}
	verifier, err := snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: policy})
	if err != nil {
		panic(err)
	}
	cli, err := atls.NewClient(atls.ClientOptions{Verifier: verifier})
	if err != nil {
		panic(err)
	}
	hc := &http.Client{Transport: cli.Transport()}
	resp, err := hc.Get(ts.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	claims, _ := cli.ResponseClaims(resp)
	fmt.Println(string(body))
	fmt.Println(claims.Platform, "simulated:", claims.Simulated)
	fmt.Println("measurement pinned:", claims.SNP.Measurement.String() == attest.HexBytes(image[:]).String())
	// Output:
	// hello
	// amd-sev-snp simulated: true
	// measurement pinned: true
}

// Patch an existing tls.Config: its ALPN protocols and settings are kept,
// and the server also verifies attested clients (mutual attestation).
func ExampleServer_Hook() {
	chain, _ := snp.NewSimChain("Genoa")
	serverImage := sha512.Sum384([]byte("server"))
	clientImage := sha512.Sum384([]byte("client"))
	serverVM, _ := snp.NewSimAttester(chain, snp.SimOptions{Measurement: serverImage})
	clientVM, _ := snp.NewSimAttester(chain, snp.SimOptions{Measurement: clientImage})
	verifier := func(m [48]byte) atls.Verifier {
		p := snp.NewPolicy()
		p.Measurements = []attest.HexBytes{m[:]}
		v, err := snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: p})
		if err != nil {
			panic(err)
		}
		return v
	}

	srv, _ := atls.NewServer(atls.ServerOptions{Attester: serverVM, ClientVerifier: verifier(clientImage)})
	serverCfg := srv.Hook(&tls.Config{NextProtos: []string{"my-proto/1"}})

	cli, _ := atls.NewClient(atls.ClientOptions{Verifier: verifier(serverImage), Attester: clientVM})
	clientCfg, _ := cli.Hook(&tls.Config{NextProtos: []string{"my-proto/1"}})

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		sc := tls.Server(c, serverCfg)
		if sc.Handshake() == nil {
			claims, _ := srv.PeerClaims(sc.ConnectionState())
			fmt.Fprintf(sc, "client measurement ok: %v\n", claims.SNP.Measurement.String() == attest.HexBytes(clientImage[:]).String())
		}
		sc.Close()
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), clientCfg)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	line, _ := io.ReadAll(conn)
	fmt.Print(string(line))
	fmt.Println("protocol:", conn.ConnectionState().NegotiatedProtocol)
	// Output:
	// client measurement ok: true
	// protocol: my-proto/1
}

// Errors name the check that failed and classify it.
func ExampleCheckError() {
	err := error(&atls.CheckError{Kind: atls.ErrPolicy, Check: "policy.measurement", Err: errors.New("measurement 00… is not accepted")})
	var ce *atls.CheckError
	if errors.As(err, &ce) {
		fmt.Println("failed check:", ce.Check)
	}
	fmt.Println("policy failure:", errors.Is(err, atls.ErrPolicy))
	fmt.Println("verification failure:", errors.Is(err, atls.ErrVerification))
	// Output:
	// failed check: policy.measurement
	// policy failure: true
	// verification failure: false
}
