// Command reference-values shows the guest owner's workflow with
// reference values computed from the image, never read from a running VM:
//
//		go run ./examples/reference-values
//
//	 1. Compute the launch measurement of the VM image (package
//	    atls/snp/measure) — here two firmware builds, A and B.
//	 2. Sign an ID block for image A with the owner's ID key (package
//	    atls/snp/idblock); the hypervisor passes it to the firmware at
//	    launch (QEMU: id-block= and id-auth=, see `atls idblock`).
//	 3. Write the verifier's policy from those values alone: measurement A,
//	    the ID key's digest and a minimum guest SVN.
//	 4. Launch simulated VMs and connect to each over attested HTTPS with
//	    that policy: the VM launched from A with the block is accepted;
//	    image B, or image A launched without the owner's signature, is
//	    refused with the name of the failed check.
//
// The firmware inputs are the SEV metadata and OVMF digests of two 4 MiB
// OVMF builds from virtee/sev-snp-measure-go@74f52d5, guest/testdata
// (ovmf_img_1.json, ovmf_img_2.json; Apache-2.0), launched on EC2 with
// two vCPUs; the measurements are the ones that project's tests expect.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/confidential-go/atls/atls"
	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/atls/snp/idblock"
	"github.com/confidential-go/atls/atls/snp/measure"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "reference-values:", err)
		os.Exit(1)
	}
}

// firmware is the SEV metadata both OVMF builds share.
var firmware = measure.Metadata{
	Sections: []measure.Section{
		{GPA: 0x800000, Size: 0x9000, Type: measure.SectionSNPSecMem},
		{GPA: 0x80a000, Size: 0x3000, Type: measure.SectionSNPSecMem},
		{GPA: 0x80d000, Size: 0x1000, Type: measure.SectionSNPSecrets},
		{GPA: 0x80e000, Size: 0x1000, Type: measure.SectionCPUID},
		{GPA: 0x80f000, Size: 0x11000, Type: measure.SectionSNPSecMem},
	},
	ResetEIP: 0x80b004,
}

// ovmfHashes are the digests of the two builds' firmware pages.
var ovmfHashes = map[string]string{
	"A": "a58211791a556a630a4319dc9e2ea96cc0e9784dd9f20a4fadf81b26c98d163fcdcb6703884bbbb80d7b1de45b3d84d0",
	"B": "2027a27bb9f7acfd280e4c7bd68a73973b94bf0756e5b282e004b9395f597b8d0eb4defa7d8f6549375aa4d2b146f0f3",
}

// measureImage computes the launch measurement of a build.
func measureImage(build string) ([48]byte, error) {
	var h [48]byte
	if _, err := hex.Decode(h[:], []byte(ovmfHashes[build])); err != nil {
		return h, err
	}
	md := firmware
	return measure.SNP(measure.Inputs{
		Metadata:     &md,
		OVMFHash:     &h,
		VCPUs:        2,
		VMM:          measure.EC2,
		LegacyEC2RDX: true, // as the reference tests computed these values
	})
}

func run(ctx context.Context, out io.Writer) error {
	// 1. Reference values from the images.
	imageA, err := measureImage("A")
	if err != nil {
		return err
	}
	imageB, err := measureImage("B")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "1. measurement of image A: %x\n   measurement of image B: %x\n", imageA, imageB)

	// 2. The owner signs an ID block for image A. The ID key stays with
	// the owner (offline, in an HSM); only its digest is published.
	idKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return err
	}
	block := &idblock.Block{Measurement: imageA, GuestSVN: 2}
	idBlock, idAuth, err := idblock.Sign(block, idKey, nil)
	if err != nil {
		return err
	}
	idDigest, err := idblock.KeyDigest(&idKey.PublicKey)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "2. signed an ID block for image A (%d + %d bytes); ID key digest %x\n", len(idBlock), len(idAuth), idDigest)

	// 3. The policy, from the reference values alone. It is JSON that
	// the owner ships to every client.
	p := snp.NewPolicy()
	p.Measurements = []attest.HexBytes{imageA[:]}
	p.TrustedIDKeyDigests = []attest.HexBytes{idDigest[:]}
	p.RequireIDBlock = true
	p.MinimumGuestSVN = 2
	policyJSON, err := json.Marshal(p)
	if err != nil {
		return err
	}
	policy, err := snp.ParsePolicy(policyJSON)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "3. wrote a policy pinning measurement A, the ID key and guest SVN >= 2")

	// 4. A simulated platform (SIMULATED: a fresh AMD chain that only this
	// program trusts) and three VMs. The simulated firmware measures the
	// image it launches and checks the ID block as real firmware does.
	chain, err := snp.NewSimChain("Milan")
	if err != nil {
		return err
	}
	verifier, err := snp.NewVerifier(snp.VerifierOptions{Roots: chain.Roots(), Policy: policy})
	if err != nil {
		return err
	}
	cli, err := atls.NewClient(atls.ClientOptions{Verifier: verifier})
	if err != nil {
		return err
	}
	// Someone else signs the same image with their own key.
	strangerKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return err
	}
	_, strangerAuth, err := idblock.Sign(block, strangerKey, nil)
	if err != nil {
		return err
	}
	if _, err := snp.NewSimAttester(chain, snp.SimOptions{Measurement: imageB, IDBlock: idBlock, IDAuth: idAuth}); err != nil {
		fmt.Fprintf(out, "4. the firmware refuses to launch image B with A's ID block: check %s\n", attest.FailedCheck(err))
	} else {
		return errors.New("image B was launched with A's ID block")
	}
	for _, vm := range []struct {
		name string
		opts snp.SimOptions
	}{
		{"image A with the signed ID block", snp.SimOptions{Measurement: imageA, IDBlock: idBlock, IDAuth: idAuth}},
		{"image B", snp.SimOptions{Measurement: imageB}},
		{"image A with an ID block signed by another key", snp.SimOptions{Measurement: imageA, IDBlock: idBlock, IDAuth: strangerAuth}},
	} {
		claims, err := serveAndGet(ctx, chain, vm.opts, cli)
		if err != nil {
			if check := attest.FailedCheck(err); check != "" {
				fmt.Fprintf(out, "   VM %s: REFUSED, check %s\n", vm.name, check)
				continue
			}
			return err
		}
		fmt.Fprintf(out, "   VM %s: ACCEPTED (SIMULATED), measurement %.16s…, ID key %.16s…, guest SVN %d\n",
			vm.name, claims.SNP.Measurement, claims.SNP.IDKeyDigest, claims.SNP.GuestSVN)
	}
	return nil
}

// serveAndGet launches a simulated VM, runs an attested HTTPS server in
// it on loopback, and fetches a page with cli; it returns the claims the
// client verified.
func serveAndGet(ctx context.Context, chain *snp.SimChain, opts snp.SimOptions, cli *atls.Client) (*atls.Claims, error) {
	vm, err := snp.NewSimAttester(chain, opts)
	if err != nil {
		return nil, err
	}
	srv, err := atls.NewServer(atls.ServerOptions{Attester: vm})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") }),
		TLSConfig:         srv.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // refused handshakes are expected here
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	defer hs.Close()

	hc := &http.Client{Transport: cli.Transport(), Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+ln.Addr().String()+"/", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return nil, err
	}
	claims, ok := cli.ResponseClaims(resp)
	if !ok {
		return nil, errors.New("no verified claims for the response")
	}
	return claims, nil
}
