package snp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/validate"

	"github.com/confidential-go/atls/atls/attest"
)

// Policy says which authentic SEV-SNP reports a Verifier accepts. It is
// meant to be written as JSON (see ParsePolicy) and reviewed like code: a
// policy is the whole of what a verifier trusts about a peer beyond "runs
// on genuine AMD hardware".
//
// The zero value of every field is the strict choice, except where a
// field's comment says otherwise, and NewPolicy adds the few defaults that
// real guests need. A policy must pin something that identifies the guest
// (see Validate): genuine hardware alone says nothing about the code
// inside it.
//
// Byte fields are hex strings in JSON. Lists of pins (Measurements,
// ChipIDs, ReportIDs, the trusted key digests) accept a report that
// matches any one entry, so that a rolling upgrade can list the old and
// the new value side by side.
//
// Firmware floors (MinimumTCB) can only raise the BaselineTCB: a
// component a JSON floor leaves out keeps the baseline, and a floor below
// the baseline is refused unless AllowTCBBelowBaseline states, in words,
// why that product line may run older firmware.
type Policy struct {
	// Measurements lists the accepted launch MEASUREMENTs (48 bytes
	// each). Empty accepts any measurement, which is only sound when the
	// ID block is pinned (TrustedIDKeyDigests or TrustedAuthorKeyDigests):
	// then the ID key holder vouches for the measurement.
	Measurements []attest.HexBytes `json:"measurements,omitempty"`
	// HostData is the expected HOST_DATA (32 bytes). The hypervisor
	// chooses it at launch, so it pins a deployment (for example a
	// container policy hash), not the guest code; pin a measurement too.
	HostData attest.HexBytes `json:"host_data,omitempty"`
	// FamilyID and ImageID are the expected FAMILY_ID and IMAGE_ID (16
	// bytes each) of the ID block. They mean something only when the ID
	// key is pinned: anyone can sign an ID block.
	FamilyID attest.HexBytes `json:"family_id,omitempty"`
	ImageID  attest.HexBytes `json:"image_id,omitempty"`
	// ReportIDs pins guest instances by REPORT_ID (32 bytes each), which
	// the firmware chooses at random when a guest launches.
	ReportIDs []attest.HexBytes `json:"report_ids,omitempty"`
	// ReportIDMA is the expected REPORT_ID_MA (32 bytes): the report ID
	// of the guest's migration agent, all 0xFF without one.
	ReportIDMA attest.HexBytes `json:"report_id_ma,omitempty"`
	// ChipIDs pins machines by CHIP_ID (64 bytes each). A report whose
	// CHIP_ID is masked (all zeros) is refused when this is set.
	ChipIDs []attest.HexBytes `json:"chip_ids,omitempty"`
	// MinimumGuestSVN is the lowest accepted GUEST_SVN.
	MinimumGuestSVN uint32 `json:"minimum_guest_svn,omitempty"`

	// RequireIDBlock refuses guests launched without an ID block signed by
	// a trusted ID key (or by an ID key that a trusted author key signed).
	// Setting TrustedIDKeyDigests or TrustedAuthorKeyDigests implies it:
	// a list of trusted keys that did not gate anything would be a trap.
	RequireIDBlock bool `json:"require_id_block,omitempty"`
	// RequireAuthorKey refuses guests whose ID key was not signed by a
	// trusted author key (AUTHOR_KEY_EN set and AUTHOR_KEY_DIGEST in
	// TrustedAuthorKeyDigests).
	RequireAuthorKey bool `json:"require_author_key,omitempty"`
	// TrustedIDKeyDigests and TrustedAuthorKeyDigests are SHA-384 digests
	// (48 bytes) of ID and author public keys in the SEV-SNP ABI format.
	TrustedIDKeyDigests     []attest.HexBytes `json:"trusted_id_key_digests,omitempty"`
	TrustedAuthorKeyDigests []attest.HexBytes `json:"trusted_author_key_digests,omitempty"`
	// DeniedIDKeyDigests and DeniedAuthorKeyDigests refuse reports carrying
	// these digests whatever else the policy allows, for example a key
	// that leaked. Deny wins over trust.
	DeniedIDKeyDigests     []attest.HexBytes `json:"denied_id_key_digests,omitempty"`
	DeniedAuthorKeyDigests []attest.HexBytes `json:"denied_author_key_digests,omitempty"`

	// GuestPolicy bounds the guest POLICY the guest owner chose at
	// launch. Debugging and migration agents are separate switches below
	// because they are the ones that hand the guest's memory to someone
	// else.
	GuestPolicy GuestPolicy `json:"guest_policy"`
	// AllowDebug accepts guests whose policy allows the host to debug
	// them, that is, to read and write their memory. Never in production.
	AllowDebug bool `json:"allow_debug,omitempty"`
	// AllowMigrateMA accepts guests whose policy allows a migration agent,
	// which can export the guest's memory.
	AllowMigrateMA bool `json:"allow_migrate_ma,omitempty"`
	// AllowedVMPLs lists the VMPLs a report may come from, 0-3. Empty
	// means [0]: only the most privileged guest code, since a report
	// from VMPL 1-3 can be requested by code that a VMPL 0 component
	// (such as a paravisor) does not trust.
	AllowedVMPLs []uint32 `json:"allowed_vmpls,omitempty"`

	// RequireCRL refuses evidence whose revocation cannot be checked:
	// neither the attester sent a CRL nor the verifier holds one for the
	// product (VerifierOptions.CRLs). Off by default, since AMD's KDS is
	// the only source of CRLs and verifiers never fetch.
	RequireCRL bool `json:"require_crl,omitempty"`
	// MaximumCRLAge bounds the age (the verification time minus the
	// CRL's thisUpdate) of the CRL that decides revocation, written as a
	// Go duration in JSON ("168h"). Zero (the default) sets no bound
	// beyond the CRL's own nextUpdate. A policy that sets it requires a
	// CRL, as RequireCRL does, so that leaving the CRL out is no way
	// around the bound. See VerifierOptions.CRLs for which CRL decides.
	MaximumCRLAge Duration `json:"maximum_crl_age,omitempty"`

	// AllowVLEK accepts reports signed by a VLEK, a key a cloud provider
	// loads into its machines, instead of the chip's own VCEK. Such a
	// report proves "some machine of that provider", not a given chip.
	AllowVLEK bool `json:"allow_vlek,omitempty"`
	// AllowedReportVersions lists the accepted report format versions.
	// Empty means DefaultReportVersions(). Versions unknown to this
	// library are always refused.
	AllowedReportVersions []uint32 `json:"allowed_report_versions,omitempty"`

	// MinimumTCB is the lowest accepted REPORTED_TCB per product line
	// ("Milan", "Genoa", "Turin"), component by component. A product line not
	// listed gets its BaselineTCB. In JSON (ParsePolicy) a component left
	// out of a product line's object takes that product line's baseline,
	// so {"Milan": {"snp": 24}} raises the SNP level and keeps the rest of
	// the baseline; null and empty objects are refused.
	//
	// A floor below the baseline in any component lowers the protection
	// every other policy gets, so Validate refuses it unless
	// AllowTCBBelowBaseline names the product line with a reason.
	MinimumTCB map[string]TCB `json:"minimum_tcb,omitempty"`
	// AllowTCBBelowBaseline lets MinimumTCB go below BaselineTCB for the
	// product lines it names. Each value is the reason, in words (at
	// least three), for example
	//
	//	{"Milan": "lab hosts stay on 2022 firmware until ticket OPS-12 is done"}
	//
	// so that the exception is stated where the policy is reviewed. Empty
	// (the default) allows no floor below the baseline. An entry whose
	// product line has no MinimumTCB below the baseline is refused too:
	// a stale exception would silently cover a later mistake.
	AllowTCBBelowBaseline map[string]string `json:"allow_tcb_below_baseline,omitempty"`
	// MinimumLaunchTCB is the lowest accepted LAUNCH_TCB per product
	// line. A product line not listed is not checked. In JSON, components
	// left out take the product line's BaselineTCB, as for MinimumTCB;
	// a launch floor below the baseline needs no AllowTCBBelowBaseline,
	// since without it LAUNCH_TCB is not checked at all.
	MinimumLaunchTCB map[string]TCB `json:"minimum_launch_tcb,omitempty"`
	// PermitProvisionalFirmware accepts firmware that is running but not
	// committed (COMMITTED_TCB and the committed version below the
	// current ones). By default they must be equal: uncommitted firmware
	// can be rolled back by the host.
	PermitProvisionalFirmware bool `json:"permit_provisional_firmware,omitempty"`
	// MinimumBuild is the lowest accepted firmware build number.
	MinimumBuild uint8 `json:"minimum_build,omitempty"`
	// MinimumVersion is the lowest accepted firmware API version,
	// "major.minor", for example "1.55".
	MinimumVersion string `json:"minimum_version,omitempty"`
	// PlatformInfo bounds PLATFORM_INFO. Nil leaves it unchecked.
	PlatformInfo *PlatformInfo `json:"platform_info,omitempty"`
	// MinimumLaunchMitigationVector and MinimumCurrentMitigationVector
	// are bits that must be set in LAUNCH_MIT_VECTOR and
	// CURRENT_MIT_VECTOR (report version 5 and later).
	MinimumLaunchMitigationVector  uint64 `json:"minimum_launch_mitigation_vector,omitempty"`
	MinimumCurrentMitigationVector uint64 `json:"minimum_current_mitigation_vector,omitempty"`
}

// GuestPolicy bounds the guest POLICY field. Each Allow switch accepts a
// guest that asks for that capability; each Require switch refuses a guest
// that does not ask for that restriction.
type GuestPolicy struct {
	// MinimumABI is the lowest firmware ABI version, "major.minor", that
	// the guest must have required at launch. Empty means "0.0".
	MinimumABI string `json:"minimum_abi,omitempty"`
	// AllowSMT accepts guests that allow the host to run them with
	// simultaneous multithreading. NewPolicy sets it: nearly every guest
	// is launched with it (QEMU's default policy is 0x30000).
	AllowSMT bool `json:"allow_smt"`
	// AllowCXL accepts guests that allow CXL memory or devices.
	AllowCXL bool `json:"allow_cxl,omitempty"`
	// RequireSingleSocket refuses guests that may run on several sockets.
	RequireSingleSocket bool `json:"require_single_socket,omitempty"`
	// RequireAES256XTS refuses guests that allow memory encryption with
	// less than AES-256-XTS.
	RequireAES256XTS bool `json:"require_mem_aes_256_xts,omitempty"`
	// RequireRAPLDisabled refuses guests that allow RAPL (a power side
	// channel).
	RequireRAPLDisabled bool `json:"require_rapl_disabled,omitempty"`
	// RequireCiphertextHiding refuses guests that do not require
	// ciphertext hiding for DRAM.
	RequireCiphertextHiding bool `json:"require_ciphertext_hiding_dram,omitempty"`
	// RequirePageSwapDisabled refuses guests that allow the host to swap
	// their pages.
	RequirePageSwapDisabled bool `json:"require_page_swap_disabled,omitempty"`
}

// PlatformInfo bounds PLATFORM_INFO: the Allow switches accept a platform
// feature that weakens isolation, the Require switches refuse a platform
// that lacks a protection.
type PlatformInfo struct {
	AllowSMT                  bool `json:"allow_smt,omitempty"`
	AllowTSME                 bool `json:"allow_tsme,omitempty"`
	AllowTIO                  bool `json:"allow_tio,omitempty"`
	RequireECC                bool `json:"require_ecc,omitempty"`
	RequireRAPLDisabled       bool `json:"require_rapl_disabled,omitempty"`
	RequireCiphertextHiding   bool `json:"require_ciphertext_hiding_dram,omitempty"`
	RequireAliasCheckComplete bool `json:"require_alias_check_complete,omitempty"`
}

// TCB is a TCB_VERSION split into the security patch levels of its
// components: the PSP bootloader, the PSP OS (TEE), the SNP firmware, the
// CPU microcode and, from Turin on, the FMC (first mutable code). Where
// each sits in the raw 64-bit value depends on the product line: convert
// with [ProductLine.DecodeTCB] and [ProductLine.EncodeTCB].
//
// In JSON it is an object such as
//
//	{"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}
//	{"fmc": 0, "bootloader": 1, "tee": 0, "snp": 2, "microcode": 71}
//
// or the raw 64-bit value as a hex string, "0x7308000000000003", read in
// the layout of the product line it is listed under (Milan and Genoa:
// microcode in the top byte, then SNP, four reserved bytes, TEE and
// bootloader; Turin: microcode, three reserved bytes, SNP, TEE,
// bootloader, FMC).
type TCB struct {
	// FMC is zero for product lines before Turin, which have no FMC.
	FMC        uint8 `json:"fmc,omitempty"`
	Bootloader uint8 `json:"bootloader"`
	TEE        uint8 `json:"tee"`
	SNP        uint8 `json:"snp"`
	Microcode  uint8 `json:"microcode"`
}

// TCBFromVersion splits a raw TCB_VERSION of a Milan or Genoa part.
//
// Deprecated: the layout depends on the product line; use
// [ProductLine.DecodeTCB].
func TCBFromVersion(v uint64) TCB {
	return ProductMilan.DecodeTCB(v)
}

// Version returns the raw TCB_VERSION in the Milan and Genoa layout (FMC
// dropped).
//
// Deprecated: the layout depends on the product line; use
// [ProductLine.EncodeTCB].
func (t TCB) Version() uint64 {
	t.FMC = 0
	v, _ := ProductMilan.EncodeTCB(t)
	return v
}

func (t TCB) parts() kds.TCBParts {
	return kds.TCBParts{BlSpl: t.Bootloader, TeeSpl: t.TEE, SnpSpl: t.SNP, UcodeSpl: t.Microcode}
}

func (t TCB) String() string {
	fmc := ""
	if t.FMC != 0 {
		fmc = fmt.Sprintf("fmc %d, ", t.FMC)
	}
	return fmt.Sprintf("{%sbootloader %d, tee %d, snp %d, microcode %d}", fmc, t.Bootloader, t.TEE, t.SNP, t.Microcode)
}

// UnmarshalJSON accepts the object form (unknown members refused) or a
// "0x..." string whose reserved bytes are zero. It refuses null and the
// empty object, which name no level at all. Members left out are zero
// here; ParsePolicy gives them the product line's BaselineTCB instead.
func (t *TCB) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return errors.New("TCB is null: give an object such as {\"snp\": 24} or a hex string \"0x...\"")
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		// The layout is the product line's, which only the policy
		// knows: ParsePolicy reads the string again under its product
		// line. Here it is read in the Milan and Genoa layout.
		v, err := parseTCBHex(s, ProductUnknown)
		if err != nil {
			return err
		}
		*t = ProductMilan.DecodeTCB(v)
		return nil
	}
	type plain TCB // no UnmarshalJSON: no recursion
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("TCB: %w", err)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return fmt.Errorf("TCB: %w", err)
	}
	if len(members) == 0 {
		return errors.New("TCB is an empty object: name at least one of bootloader, tee, snp, microcode")
	}
	*t = TCB(p)
	return nil
}

// parseTCBHex reads a raw TCB_VERSION written "0x..." and refuses bits
// reserved in product line p's layout (for ProductUnknown, the bits that
// every layout reserves).
func parseTCBHex(s string, p ProductLine) (uint64, error) {
	hexDigits, ok := strings.CutPrefix(s, "0x")
	if !ok || len(hexDigits) == 0 || len(hexDigits) > 16 {
		return 0, fmt.Errorf("TCB %q: want an object or a hex string \"0x...\" of at most 16 digits", s)
	}
	v, err := strconv.ParseUint(hexDigits, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("TCB %q: %w", s, err)
	}
	reserved := ProductMilan.TCBReserved(v) & ProductTurin.TCBReserved(v)
	layout := "in every product line's layout"
	if p != ProductUnknown {
		reserved, layout = p.TCBReserved(v), "in the "+p.String()+" layout"
	}
	if reserved != 0 {
		return 0, fmt.Errorf("TCB %q has reserved bits %#x set %s (Milan and Genoa: microcode, snp, 4 reserved bytes, tee, bootloader; "+
			"Turin: microcode, 3 reserved bytes, snp, tee, bootloader, fmc)", s, reserved, layout)
	}
	return v, nil
}

// tcbMembers is the object form of a TCB with each member optional, to
// tell a member left out from a zero.
type tcbMembers struct {
	FMC        *uint8 `json:"fmc"`
	Bootloader *uint8 `json:"bootloader"`
	TEE        *uint8 `json:"tee"`
	SNP        *uint8 `json:"snp"`
	Microcode  *uint8 `json:"microcode"`
}

// completeTCBFloors gives every component that a minimum_tcb or
// minimum_launch_tcb object of the JSON policy data leaves out the
// BaselineTCB of its product line, in p (decoded from data), so that a
// partial floor raises what it names and lowers nothing. It refuses a
// floor map that is null or empty. Product lines without a baseline are
// left to Validate, which refuses them.
func completeTCBFloors(data []byte, p *Policy) error {
	var raw struct {
		MinimumTCB       json.RawMessage `json:"minimum_tcb"`
		MinimumLaunchTCB json.RawMessage `json:"minimum_launch_tcb"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	baseline := BaselineTCB()
	for _, f := range []struct {
		name   string
		raw    json.RawMessage
		floors map[string]TCB
	}{
		{"minimum_tcb", raw.MinimumTCB, p.MinimumTCB},
		{"minimum_launch_tcb", raw.MinimumLaunchTCB, p.MinimumLaunchTCB},
	} {
		if f.raw == nil {
			continue // left out: the default applies
		}
		if len(f.floors) == 0 {
			return fmt.Errorf("%s is null or empty: leave it out to get the baseline, or name a product line", f.name)
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(f.raw, &members); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		for product, m := range members {
			base, ok := baseline[product]
			line, _ := ParseProductLine(product)
			if m = bytes.TrimSpace(m); ok && len(m) > 0 && m[0] == '"' {
				// A hex string names every component, in the layout
				// of its product line.
				var hexTCB string
				if err := json.Unmarshal(m, &hexTCB); err != nil {
					return fmt.Errorf("%s[%s]: %w", f.name, product, err)
				}
				v, err := parseTCBHex(hexTCB, line)
				if err != nil {
					return fmt.Errorf("%s[%s]: %w", f.name, product, err)
				}
				f.floors[product] = line.DecodeTCB(v)
				continue
			}
			if !ok || len(m) == 0 || m[0] != '{' {
				continue
			}
			var given tcbMembers
			if err := json.Unmarshal(m, &given); err != nil {
				return fmt.Errorf("%s[%s]: %w", f.name, product, err)
			}
			t := f.floors[product]
			for _, c := range []struct {
				given *uint8
				dst   *uint8
				base  uint8
			}{
				{given.FMC, &t.FMC, base.FMC},
				{given.Bootloader, &t.Bootloader, base.Bootloader},
				{given.TEE, &t.TEE, base.TEE},
				{given.SNP, &t.SNP, base.SNP},
				{given.Microcode, &t.Microcode, base.Microcode},
			} {
				if c.given == nil {
					*c.dst = c.base
				}
			}
			f.floors[product] = t
		}
	}
	return nil
}

// DefaultReportVersions returns the report versions a policy accepts
// unless it says otherwise: 2 (firmware before 1.55), 3 (adds the CPUID
// family, model and stepping) and 5 (adds the mitigation vectors), which
// are all of KnownReportVersions. Version 4, whose layout AMD has not
// published, and versions after 5 are refused ("snp.report.version").
func DefaultReportVersions() []uint32 { return []uint32{2, 3, 5} }

// BaselineTCB returns the default minimum TCB per product line, the floor
// a policy gets when it sets no MinimumTCB for a product line:
//
//	Milan: bootloader 3, tee 0, snp 8, microcode 115 (0x7308000000000003)
//	Genoa: bootloader 10, tee 0, snp 23, microcode 84 (0x541700000000000a)
//	Turin: fmc 0, bootloader 1, tee 0, snp 2, microcode 71 (0x4700000002000100)
//
// These are NOT AMD's current recommendation. They are the oldest TCBs of
// the real reports this project is tested against (Milan reports of 2023
// on Azure and elsewhere; the Milan value is also the minimum that
// Constellation documents for Azure; a Genoa report of 2025 on Azure; a
// Turin report of 2025 published by Project Oak), so
// they refuse older firmware without refusing known deployments. Raise
// them to the TCB named in AMD's latest security bulletins for your
// product (https://www.amd.com/en/resources/product-security.html) by
// setting Policy.MinimumTCB.
//
// The result is a fresh map; changing it changes nothing else.
func BaselineTCB() map[string]TCB {
	return map[string]TCB{
		"Milan": {Bootloader: 3, TEE: 0, SNP: 8, Microcode: 115},
		"Genoa": {Bootloader: 10, TEE: 0, SNP: 23, Microcode: 84},
		"Turin": {FMC: 0, Bootloader: 1, TEE: 0, SNP: 2, Microcode: 71},
	}
}

// NewPolicy returns a policy with secure defaults and nothing pinned:
// VMPL 0 only, report versions 2, 3 and 5, no debugging, no migration
// agent, no VLEK, committed firmware only, the BaselineTCB, and guests
// that allow SMT accepted (GuestPolicy.AllowSMT; set it to false to
// demand guests that forbid SMT). Validate fails on it until the caller
// pins the guest, at least with Measurements or a trusted ID or author
// key.
func NewPolicy() *Policy {
	return &Policy{
		GuestPolicy:           GuestPolicy{AllowSMT: true},
		AllowedVMPLs:          []uint32{0},
		AllowedReportVersions: DefaultReportVersions(),
	}
}

// maxPolicySize caps policy files; real ones are a few kilobytes.
const maxPolicySize = 1 << 20

// ParsePolicy reads a JSON policy strictly and validates it. Fields left
// out take NewPolicy's values, and components left out of a TCB floor
// (minimum_tcb, minimum_launch_tcb) take the product line's BaselineTCB;
// a null or empty floor is an error. Unknown fields, duplicate fields, non-ASCII
// field names and trailing data are errors: a typo must not silently relax
// the policy.
func ParsePolicy(data []byte) (*Policy, error) {
	bad := func(format string, args ...any) (*Policy, error) {
		return nil, attest.Fail(attest.ErrConfig, "policy.parse", format, args...)
	}
	if len(data) > maxPolicySize {
		return bad("policy of %d bytes exceeds %d", len(data), maxPolicySize)
	}
	if err := checkJSONKeys(data); err != nil {
		return bad("%v", err)
	}
	p := NewPolicy()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return bad("%v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return bad("trailing data after the policy object")
	}
	if err := completeTCBFloors(data, p); err != nil {
		return bad("%v", err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// LoadPolicy reads and parses the JSON policy file at path.
func LoadPolicy(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, attest.Wrap(attest.ErrConfig, "policy.parse", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicySize+1))
	if err != nil {
		return nil, attest.Wrap(attest.ErrConfig, "policy.parse", fmt.Errorf("reading %s: %w", path, err))
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// checkJSONKeys refuses duplicate object members and member names outside
// [A-Za-z0-9_]. encoding/json keeps the last of duplicate members and
// matches names case-insensitively with Unicode folding, so without this
// check a reviewer and the parser could read different policies.
func checkJSONKeys(data []byte) error {
	type frame struct {
		keys    map[string]bool // nil for arrays
		wantKey bool
	}
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].keys != nil {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil && stack[n-1].wantKey {
			top := stack[n-1]
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			key, _ := tok.(string)
			for _, c := range key {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
					return fmt.Errorf("member name %q: only ASCII letters, digits and _ are allowed", key)
				}
			}
			folded := strings.ToLower(key)
			if top.keys[folded] {
				return fmt.Errorf("duplicate member %q", key)
			}
			top.keys[folded] = true
			top.wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'), json.Delim('}'):
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			valueDone()
		default:
			valueDone()
		}
	}
}

// Validate checks the policy for errors and for policies that would accept
// too much. It fails, with attest.ErrConfig, on: a byte field of the wrong
// length; an all-zero pin (a zero chip ID would match masked reports, a
// zero key digest reports without an ID block); a VMPL or report version
// out of range; a TCB part out of range (an FMC level before Turin) or a
// product line that is not "Milan", "Genoa" or "Turin"; a MinimumTCB below the BaselineTCB that
// AllowTCBBelowBaseline does not name with a reason of at least three
// words, or an AllowTCBBelowBaseline entry that no floor needs; an
// unparsable version; a digest both trusted and denied; a requirement no report can meet (RequireAuthorKey without
// trusted author keys); and an empty policy, one that accepts any
// measurement while pinning nothing else that identifies the guest's code
// or instance: no trusted ID or author key digest and no report ID. Host
// data and chip IDs alone do not count (the host chooses host data, and a
// chip runs any image), so a policy pinning only those is refused too.
func (p *Policy) Validate() error {
	if p == nil {
		return attest.Fail(attest.ErrConfig, "policy.config", "no policy")
	}
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	one := func(name string, v attest.HexBytes, size int) {
		if v != nil && len(v) != size {
			add("%s is %d bytes, want %d (%d hex digits)", name, len(v), size, 2*size)
		}
	}
	list := func(name string, vs []attest.HexBytes, size int, zeroOK bool) {
		for i, v := range vs {
			if len(v) != size {
				add("%s[%d] is %d bytes, want %d (%d hex digits)", name, i, len(v), size, 2*size)
			} else if !zeroOK && zeroBytes(v) {
				add("%s[%d] is all zeros, which pins nothing", name, i)
			}
		}
	}
	list("measurements", p.Measurements, abi.MeasurementSize, false)
	one("host_data", p.HostData, abi.HostDataSize)
	one("family_id", p.FamilyID, abi.FamilyIDSize)
	one("image_id", p.ImageID, abi.ImageIDSize)
	list("report_ids", p.ReportIDs, abi.ReportIDSize, false)
	one("report_id_ma", p.ReportIDMA, abi.ReportIDMASize)
	list("chip_ids", p.ChipIDs, abi.ChipIDSize, false)
	list("trusted_id_key_digests", p.TrustedIDKeyDigests, abi.IDKeyDigestSize, false)
	list("trusted_author_key_digests", p.TrustedAuthorKeyDigests, abi.AuthorKeyDigestSize, false)
	list("denied_id_key_digests", p.DeniedIDKeyDigests, abi.IDKeyDigestSize, true)
	list("denied_author_key_digests", p.DeniedAuthorKeyDigests, abi.AuthorKeyDigestSize, true)
	for _, d := range p.DeniedIDKeyDigests {
		if inList(p.TrustedIDKeyDigests, d) {
			add("ID key digest %x is both trusted and denied", []byte(d))
		}
	}
	for _, d := range p.DeniedAuthorKeyDigests {
		if inList(p.TrustedAuthorKeyDigests, d) {
			add("author key digest %x is both trusted and denied", []byte(d))
		}
	}
	if p.RequireAuthorKey && len(p.TrustedAuthorKeyDigests) == 0 {
		add("require_author_key needs trusted_author_key_digests")
	}
	if p.RequireIDBlock && len(p.TrustedIDKeyDigests) == 0 && len(p.TrustedAuthorKeyDigests) == 0 {
		add("require_id_block needs trusted_id_key_digests or trusted_author_key_digests")
	}
	if _, err := parseMajorMinor(p.GuestPolicy.MinimumABI); err != nil {
		add("guest_policy.minimum_abi: %v", err)
	}
	if _, err := parseMajorMinor(p.MinimumVersion); err != nil {
		add("minimum_version: %v", err)
	}
	for _, vmpl := range p.AllowedVMPLs {
		if vmpl > 3 {
			add("allowed_vmpls: VMPL %d is out of range 0-3", vmpl)
		}
	}
	if p.MaximumCRLAge < 0 {
		add("maximum_crl_age: %v is negative", p.MaximumCRLAge)
	}
	for _, v := range p.AllowedReportVersions {
		if _, ok := layoutOf(v); !ok {
			add("allowed_report_versions: version %d is not supported (this library parses versions %v; version 4's layout is unpublished)", v, KnownReportVersions())
		}
	}
	for name, m := range map[string]map[string]TCB{"minimum_tcb": p.MinimumTCB, "minimum_launch_tcb": p.MinimumLaunchTCB} {
		for product, tcb := range m {
			line, err := ParseProductLine(product)
			if err != nil {
				add("%s: %v", name, err)
				continue
			}
			if _, err := line.EncodeTCB(tcb); err != nil {
				add("%s[%s]: %v", name, product, err)
			}
			for _, c := range []struct {
				name  string
				level uint8
			}{{"fmc", tcb.FMC}, {"bootloader", tcb.Bootloader}, {"tee", tcb.TEE}, {"snp", tcb.SNP}} {
				if c.level > 127 {
					add("%s[%s]: %s level %d is out of range 0-127", name, product, c.name, c.level)
				}
			}
		}
	}
	errs = append(errs, p.validateTCBBaseline()...)
	if p.pinsNothing() {
		add("empty policy: it accepts any measurement and pins no guest code; set measurements, " +
			"trusted_id_key_digests or trusted_author_key_digests, or report_ids of known guests " +
			"(host_data and chip_ids alone do not do: the host chooses host data, and a chip runs any image)")
	}
	if len(errs) > 0 {
		return &attest.CheckError{Kind: attest.ErrConfig, Check: "policy.config", Err: errors.Join(errs...)}
	}
	return nil
}

// minReasonWords is the number of words an AllowTCBBelowBaseline reason
// must have at least.
const minReasonWords = 3

// validateTCBBaseline refuses MinimumTCB floors below the BaselineTCB that
// AllowTCBBelowBaseline does not name, and entries of
// AllowTCBBelowBaseline that are not needed or give no reason.
func (p *Policy) validateTCBBaseline() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	baseline := BaselineTCB()
	for product, floor := range p.MinimumTCB {
		base, ok := baseline[product]
		if !ok {
			continue // refused as unsupported
		}
		_, allowed := p.AllowTCBBelowBaseline[product]
		if !floor.AtLeast(base) && !allowed {
			add("minimum_tcb[%s] %v is below the %s baseline %v in at least one part, so it lowers the floor "+
				"(a component left out of a JSON floor keeps the baseline); raise it, or state the reason in "+
				"allow_tcb_below_baseline[%q]", product, floor, product, base, product)
		}
	}
	for product, reason := range p.AllowTCBBelowBaseline {
		base, ok := baseline[product]
		floor, lowered := p.MinimumTCB[product]
		switch {
		case !ok:
			add("allow_tcb_below_baseline: product line %q is not supported (want \"Milan\", \"Genoa\" or \"Turin\")", product)
		case !lowered || floor.AtLeast(base):
			add("allow_tcb_below_baseline[%s]: minimum_tcb[%s] is not below the baseline %v; remove the exception", product, product, base)
		}
		if err := checkReason(reason); err != nil {
			add("allow_tcb_below_baseline[%s]: %v", product, err)
		}
	}
	return errs
}

// checkReason checks that reason states something in words: at least
// minReasonWords words with a letter each, and no control characters.
func checkReason(reason string) error {
	words := 0
	for _, w := range strings.Fields(reason) {
		if strings.IndexFunc(w, unicode.IsLetter) >= 0 {
			words++
		}
	}
	if strings.IndexFunc(reason, unicode.IsControl) >= 0 {
		return fmt.Errorf("the reason %q contains control characters", reason)
	}
	if words < minReasonWords {
		return fmt.Errorf("the reason %q must say in words (at least %d) why the product line may run firmware below the baseline", reason, minReasonWords)
	}
	return nil
}

// pinsNothing reports whether p accepts guests running any code. Host data
// (chosen by the host) and chip IDs (a machine runs any image) pin no
// code; a report ID pins one guest instance, whose launch measurement
// cannot change.
func (p *Policy) pinsNothing() bool {
	return len(p.Measurements) == 0 &&
		len(p.TrustedIDKeyDigests) == 0 && len(p.TrustedAuthorKeyDigests) == 0 &&
		len(p.ReportIDs) == 0
}

// clone returns a deep copy, so that a Verifier is not affected by later
// changes to the caller's policy.
func (p *Policy) clone() *Policy {
	c := *p
	cloneList := func(vs []attest.HexBytes) []attest.HexBytes {
		if vs == nil {
			return nil
		}
		out := make([]attest.HexBytes, len(vs))
		for i, v := range vs {
			out[i] = bytes.Clone(v)
		}
		return out
	}
	c.Measurements = cloneList(p.Measurements)
	c.HostData = bytes.Clone(p.HostData)
	c.FamilyID = bytes.Clone(p.FamilyID)
	c.ImageID = bytes.Clone(p.ImageID)
	c.ReportIDs = cloneList(p.ReportIDs)
	c.ReportIDMA = bytes.Clone(p.ReportIDMA)
	c.ChipIDs = cloneList(p.ChipIDs)
	c.TrustedIDKeyDigests = cloneList(p.TrustedIDKeyDigests)
	c.TrustedAuthorKeyDigests = cloneList(p.TrustedAuthorKeyDigests)
	c.DeniedIDKeyDigests = cloneList(p.DeniedIDKeyDigests)
	c.DeniedAuthorKeyDigests = cloneList(p.DeniedAuthorKeyDigests)
	c.AllowedVMPLs = slices.Clone(p.AllowedVMPLs)
	c.AllowedReportVersions = slices.Clone(p.AllowedReportVersions)
	if p.MinimumTCB != nil {
		c.MinimumTCB = make(map[string]TCB, len(p.MinimumTCB))
		for k, v := range p.MinimumTCB {
			c.MinimumTCB[k] = v
		}
	}
	if p.AllowTCBBelowBaseline != nil {
		c.AllowTCBBelowBaseline = make(map[string]string, len(p.AllowTCBBelowBaseline))
		for k, v := range p.AllowTCBBelowBaseline {
			c.AllowTCBBelowBaseline[k] = v
		}
	}
	if p.MinimumLaunchTCB != nil {
		c.MinimumLaunchTCB = make(map[string]TCB, len(p.MinimumLaunchTCB))
		for k, v := range p.MinimumLaunchTCB {
			c.MinimumLaunchTCB[k] = v
		}
	}
	if p.PlatformInfo != nil {
		pi := *p.PlatformInfo
		c.PlatformInfo = &pi
	}
	return &c
}

// vmpls returns the allowed VMPLs, applying the default.
func (p *Policy) vmpls() []uint32 {
	if len(p.AllowedVMPLs) == 0 {
		return []uint32{0}
	}
	return p.AllowedVMPLs
}

// reportVersions returns the allowed report versions, applying the
// default.
func (p *Policy) reportVersions() []uint32 {
	if len(p.AllowedReportVersions) == 0 {
		return DefaultReportVersions()
	}
	return p.AllowedReportVersions
}

// minimumTCB returns the minimum REPORTED_TCB for product.
func (p *Policy) minimumTCB(product string) (TCB, bool) {
	if t, ok := p.MinimumTCB[product]; ok {
		return t, true
	}
	t, ok := BaselineTCB()[product]
	return t, ok
}

// snpPolicy is the guest policy maximum in go-sev-guest's terms.
func (p *Policy) snpPolicy() abi.SnpPolicy {
	abiVersion, _ := parseMajorMinor(p.GuestPolicy.MinimumABI) // validated
	g := p.GuestPolicy
	return abi.SnpPolicy{
		ABIMajor:             uint8(abiVersion >> 8),
		ABIMinor:             uint8(abiVersion),
		SMT:                  g.AllowSMT,
		MigrateMA:            p.AllowMigrateMA,
		Debug:                p.AllowDebug,
		SingleSocket:         g.RequireSingleSocket,
		CXLAllowed:           g.AllowCXL,
		MemAES256XTS:         g.RequireAES256XTS,
		RAPLDis:              g.RequireRAPLDisabled,
		CipherTextHidingDRAM: g.RequireCiphertextHiding,
		PageSwapDisable:      g.RequirePageSwapDisabled,
	}
}

func (pi *PlatformInfo) snp() *abi.SnpPlatformInfo {
	if pi == nil {
		return nil
	}
	return &abi.SnpPlatformInfo{
		SMTEnabled:                  pi.AllowSMT,
		TSMEEnabled:                 pi.AllowTSME,
		TIOEnabled:                  pi.AllowTIO,
		ECCEnabled:                  pi.RequireECC,
		RAPLDisabled:                pi.RequireRAPLDisabled,
		CiphertextHidingDRAMEnabled: pi.RequireCiphertextHiding,
		AliasCheckComplete:          pi.RequireAliasCheckComplete,
	}
}

// validateOptions translates p into go-sev-guest's validate.Options for a
// report of product line product. Lists that go-sev-guest cannot express
// (several measurements, chips, report IDs or VMPLs) are passed only when
// they have one entry; the verifier checks them all itself. A fresh value
// is built per call because validate.SnpAttestation writes to it.
func (p *Policy) validateOptions(product string, reportData []byte) *validate.Options {
	minTCB, _ := p.minimumTCB(product)
	single := func(vs []attest.HexBytes) []byte {
		if len(vs) == 1 {
			return bytes.Clone(vs[0])
		}
		return nil
	}
	hashes := func(vs []attest.HexBytes) [][]byte {
		out := make([][]byte, 0, len(vs))
		for _, v := range vs {
			out = append(out, bytes.Clone(v))
		}
		return out
	}
	minVersion, _ := parseMajorMinor(p.MinimumVersion) // validated
	opts := &validate.Options{
		GuestPolicy:                    p.snpPolicy(),
		MinimumGuestSvn:                p.MinimumGuestSVN,
		ReportData:                     bytes.Clone(reportData),
		HostData:                       bytes.Clone(p.HostData),
		ImageID:                        bytes.Clone(p.ImageID),
		FamilyID:                       bytes.Clone(p.FamilyID),
		ReportID:                       single(p.ReportIDs),
		ReportIDMA:                     bytes.Clone(p.ReportIDMA),
		Measurement:                    single(p.Measurements),
		ChipID:                         single(p.ChipIDs),
		MinimumBuild:                   p.MinimumBuild,
		MinimumVersion:                 minVersion,
		MinimumTCB:                     minTCB.parts(),
		MinimumLaunchTCB:               p.MinimumLaunchTCB[product].parts(),
		PermitProvisionalFirmware:      p.PermitProvisionalFirmware,
		PlatformInfo:                   p.PlatformInfo.snp(),
		RequireAuthorKey:               p.RequireAuthorKey,
		RequireIDBlock:                 p.requireIDBlock(),
		TrustedAuthorKeyHashes:         hashes(p.TrustedAuthorKeyDigests),
		TrustedIDKeyHashes:             hashes(p.TrustedIDKeyDigests),
		MinimumLaunchMitigationVector:  p.MinimumLaunchMitigationVector,
		MinimumCurrentMitigationVector: p.MinimumCurrentMitigationVector,
	}
	if vmpls := p.vmpls(); len(vmpls) == 1 {
		v := int(vmpls[0])
		opts.VMPL = &v
	}
	return opts
}

// requireIDBlock reports whether reports must carry a trusted ID block.
func (p *Policy) requireIDBlock() bool {
	return p.RequireIDBlock || p.RequireAuthorKey ||
		len(p.TrustedIDKeyDigests) > 0 || len(p.TrustedAuthorKeyDigests) > 0
}

// parseMajorMinor parses "major.minor" into major<<8|minor; "" is 0.
func parseMajorMinor(s string) (uint16, error) {
	if s == "" {
		return 0, nil
	}
	major, minor, ok := strings.Cut(s, ".")
	if !ok {
		return 0, fmt.Errorf("%q: want \"major.minor\"", s)
	}
	maj, err1 := strconv.ParseUint(major, 10, 8)
	mnr, err2 := strconv.ParseUint(minor, 10, 8)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q: want \"major.minor\" with numbers 0-255", s)
	}
	return uint16(maj)<<8 | uint16(mnr), nil
}

func zeroBytes(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func inList(list []attest.HexBytes, b []byte) bool {
	for _, v := range list {
		if bytes.Equal(v, b) {
			return true
		}
	}
	return false
}
