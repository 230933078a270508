package snp

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-sev-guest/verify/trust"
)

// Roots is a set of trusted AMD root keys (ARK) with their intermediate
// signing keys (ASK for VCEKs, ASVK for VLEKs), per product line.
//
// Roots always come from the verifier's side: AMD's published roots that
// go-sev-guest embeds (AMDRoots), or roots the user loads explicitly
// (for example a simulator's). Certificates sent by a peer are never used
// as roots.
type Roots struct {
	// Simulated marks roots that belong to a simulated AMD chain. Claims
	// verified under them say so.
	Simulated bool
	chains    map[string][]chain // product line -> chains
}

type chain struct {
	ark, ask *x509.Certificate // ask is the ASK or the ASVK
	vlek     bool
}

// AMDRoots returns AMD's published roots for Milan, Genoa and Turin, VCEK
// and VLEK, as embedded in go-sev-guest.
func AMDRoots() *Roots {
	r := &Roots{}
	for _, b := range [][]byte{
		trust.AskArkMilanVcekBytes, trust.AskArkMilanVlekBytes,
		trust.AskArkGenoaVcekBytes, trust.AskArkGenoaVlekBytes,
		trust.AskArkTurinVcekBytes, trust.AskArkTurinVlekBytes,
	} {
		if err := r.AddPEM(b); err != nil {
			// The embedded bundles are fixed at build time; failing to
			// parse one is a programming error.
			panic(fmt.Sprintf("snp: embedded AMD roots: %v", err))
		}
	}
	return r
}

// ParseRootsPEM reads roots from PEM: any number of ARK/ASK/ASVK
// certificates, grouped by product line from their common names
// (ARK-<Product>, SEV-<Product>, SEV-VLEK-<Product>).
func ParseRootsPEM(data []byte, simulated bool) (*Roots, error) {
	r := &Roots{Simulated: simulated}
	if err := r.AddPEM(data); err != nil {
		return nil, err
	}
	if r.Empty() {
		return nil, fmt.Errorf("snp: no AMD roots found in PEM data")
	}
	return r, nil
}

// Empty reports whether r holds no roots.
func (r *Roots) Empty() bool { return r == nil || len(r.chains) == 0 }

// ProductLines lists the product lines r has roots for.
func (r *Roots) ProductLines() []string {
	var out []string
	for p := range r.chains {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// AddPEM adds the ARK/ASK/ASVK certificates in data.
func (r *Roots) AddPEM(data []byte) error {
	arks := map[string]*x509.Certificate{}
	var inter []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("snp: parsing root certificate: %w", err)
		}
		cn := c.Subject.CommonName
		switch {
		case strings.HasPrefix(cn, "ARK-"):
			arks[strings.TrimPrefix(cn, "ARK-")] = c
		case strings.HasPrefix(cn, "SEV-"):
			inter = append(inter, c)
		default:
			return fmt.Errorf("snp: certificate %q is not an AMD ARK, ASK or ASVK", cn)
		}
	}
	if len(bytes.TrimSpace(data)) != 0 {
		return fmt.Errorf("snp: trailing data after PEM certificates")
	}
	for _, c := range inter {
		cn := c.Subject.CommonName
		vlek := strings.HasPrefix(cn, "SEV-VLEK-")
		product := strings.TrimPrefix(strings.TrimPrefix(cn, "SEV-VLEK-"), "SEV-")
		ark, ok := arks[product]
		if !ok {
			return fmt.Errorf("snp: no ARK-%s for intermediate %q", product, cn)
		}
		if err := c.CheckSignatureFrom(ark); err != nil {
			return fmt.Errorf("snp: %q is not signed by ARK-%s: %w", cn, product, err)
		}
		if r.chains == nil {
			r.chains = map[string][]chain{}
		}
		r.chains[product] = append(r.chains[product], chain{ark: ark, ask: c, vlek: vlek})
	}
	return nil
}

// PEM encodes all roots (ARK and intermediates) as PEM, for export.
func (r *Roots) PEM() []byte {
	var buf bytes.Buffer
	seen := map[string]bool{}
	for _, p := range r.ProductLines() {
		for _, c := range r.chains[p] {
			for _, cert := range []*x509.Certificate{c.ark, c.ask} {
				if seen[string(cert.Raw)] {
					continue
				}
				seen[string(cert.Raw)] = true
				_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
			}
		}
	}
	return buf.Bytes()
}

// trusted builds a fresh go-sev-guest TrustedRoots map. A fresh copy per
// verification keeps per-call state (such as a CRL) from leaking between
// verifications.
func (r *Roots) trusted() map[string][]*trust.AMDRootCerts {
	out := map[string][]*trust.AMDRootCerts{}
	for p, chains := range r.chains {
		for _, c := range chains {
			pc := &trust.ProductCerts{Ark: c.ark}
			if c.vlek {
				pc.Asvk = c.ask
			} else {
				pc.Ask = c.ask
			}
			out[p] = append(out[p], &trust.AMDRootCerts{ProductLine: p, ProductCerts: pc})
		}
	}
	return out
}

// onlyAMD reports whether every ARK in r is one of AMD's published ARKs
// (as embedded in go-sev-guest).
func (r *Roots) onlyAMD() bool {
	amd := map[string]bool{}
	for _, chains := range AMDRoots().chains {
		for _, c := range chains {
			amd[string(c.ark.Raw)] = true
		}
	}
	for _, chains := range r.chains {
		for _, c := range chains {
			if !amd[string(c.ark.Raw)] {
				return false
			}
		}
	}
	return true
}
