package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/google/go-sev-guest/abi"
	labi "github.com/google/go-sev-guest/client/linuxabi"
)

// KeyDeriverOptions configure NewKeyDeriver.
type KeyDeriverOptions struct {
	// VMPL is the privilege level of the reports GuestFields asks for.
	// Zero means VMPL 0. (Derived keys take their VMPL from each
	// request.)
	VMPL uint32
	// DeviceInterval is the least time between two commands to
	// /dev/sev-guest, as in AttesterOptions. Zero means automatic (none
	// on Linux 6.2 and later, 2 s before); negative means none.
	DeviceInterval time.Duration
}

// KeyDeriver asks the AMD secure processor of this guest for derived
// keys (MSG_KEY_REQ through Linux's SNP_GET_DERIVED_KEY ioctl on
// /dev/sev-guest). It implements seal.KeyDeriver and seal.FieldReader
// and is safe for concurrent use.
//
// What the platform offers, and what it refuses:
//
//   - configfs-tsm has no derived keys (it only makes reports), so
//     /dev/sev-guest is needed even where the attester uses configfs-tsm.
//   - Linux's struct snp_derived_key_req carries the 32 bytes of
//     MSG_KEY_REQ version 1. The launch mitigation vector (field select
//     bit 6, and the vector at offset 0x20 of a version 2 request) cannot
//     be passed through it, so a request selecting
//     snp.FieldLaunchMitVector is refused (ErrUnsupported) rather than
//     sent without the vector.
//   - KEY_SEL (VCEK or VLEK) goes in bits 2:1 of the first word, next to
//     ROOT_KEY_SELECT in bit 0 (0 VCEK, 1 VMRK); firmware older than the
//     one that introduced VLEKs refuses a nonzero KEY_SEL.
//
// go-sev-guest's GetDerivedKeyAcknowledgingItsLimitations is not used: it
// writes only bit 0 of the first word and flattens firmware errors into
// text; its request and response layouts (linuxabi) are.
type KeyDeriver struct {
	q      *deviceQuotes
	vmpl   uint32
	closer io.Closer // nil if none
	closed bool      // guarded by q.mu
}

// NewKeyDeriver opens /dev/sev-guest, which stays open until
// [KeyDeriver.Close]. On a machine without it, it fails with
// attest.ErrUnsupported (check seal.derive).
func NewKeyDeriver(opts KeyDeriverOptions) (*KeyDeriver, error) {
	if opts.VMPL > 3 {
		return nil, attest.Fail(attest.ErrConfig, "seal.request", "VMPL %d is out of range (0-3)", opts.VMPL)
	}
	q, closer, err := openKeyDevice(opts)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, attest.Fail(attest.ErrUnsupported, "seal.derive",
			"no %s: derived keys need an SEV-SNP guest (configfs-tsm has none); use the simulator for development", sevGuestPath)
	case errors.Is(err, errors.ErrUnsupported):
		return nil, attest.Fail(attest.ErrUnsupported, "seal.derive", "%w", err)
	case err != nil:
		return nil, attest.Fail(attest.ErrConfig, "seal.derive", "cannot use %s: %w", sevGuestPath, err)
	}
	return &KeyDeriver{q: q, vmpl: opts.VMPL, closer: closer}, nil
}

// newKeyDeriver wraps an open device, for tests.
func newKeyDeriver(q *deviceQuotes, vmpl uint32) *KeyDeriver {
	return &KeyDeriver{q: q, vmpl: vmpl}
}

// Close closes the device.
func (d *KeyDeriver) Close() error {
	d.q.mu.Lock()
	defer d.q.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if d.closer == nil {
		return nil
	}
	return d.closer.Close()
}

// msgKeyReq lays out req as MSG_KEY_REQ version 1 in Linux's
// struct snp_derived_key_req (little-endian):
//
//	0x00  u32  bit 0 ROOT_KEY_SELECT (0 VCEK, 1 VMRK), bits 2:1 KEY_SEL, others zero
//	0x04  u32  reserved, zero
//	0x08  u64  GUEST_FIELD_SELECT
//	0x10  u32  VMPL
//	0x14  u32  GUEST_SVN
//	0x18  u64  TCB_VERSION
//
// It refuses what that layout cannot carry.
func msgKeyReq(req snp.DerivedKeyRequest) (*labi.SnpDerivedKeyReqABI, error) {
	if err := req.Check(); err != nil {
		return nil, err
	}
	if req.Fields&snp.FieldLaunchMitVector != 0 {
		return nil, attest.Fail(attest.ErrUnsupported, "seal.request",
			"the launch mitigation vector needs MSG_KEY_REQ version 2, which Linux's SNP_GET_DERIVED_KEY (struct snp_derived_key_req, 32 bytes) cannot carry")
	}
	word := uint32(req.KeySelect) << 1
	if req.Root == snp.RootVMRK {
		word |= 1
	}
	return &labi.SnpDerivedKeyReqABI{
		RootKeySelect:    word,
		GuestFieldSelect: uint64(req.Fields),
		Vmpl:             req.VMPL,
		GuestSVN:         req.GuestSVN,
		TCBVersion:       req.TCB,
	}, nil
}

// DeriveKey sends one MSG_KEY_REQ and returns the 32-byte key of the
// response. A request the firmware refuses (a floor above the platform's
// or the guest's value, a VMPL below the caller's, a KEY_SEL it does not
// know) fails with check seal.derive, kind ErrConfig.
func (d *KeyDeriver) DeriveKey(ctx context.Context, req snp.DerivedKeyRequest) ([32]byte, error) {
	var key [32]byte
	abiReq, err := msgKeyReq(req)
	if err != nil {
		return key, err
	}
	if err := ctx.Err(); err != nil {
		return key, err
	}
	d.q.mu.Lock()
	defer d.q.mu.Unlock()
	if d.closed {
		return key, attest.Fail(attest.ErrConfig, "seal.derive", "the key deriver is closed")
	}
	var rsp labi.SnpDerivedKeyRespABI
	if err := d.q.command(labi.IocSnpGetDerivedKey, abiReq, &rsp); err != nil {
		var fw *abi.SevFirmwareErr
		if errors.As(err, &fw) {
			return key, attest.Fail(attest.ErrConfig, "seal.derive", "the secure processor refused the key request (%v): %w", req.Fields, err)
		}
		return key, attest.Fail(attest.ErrUnsupported, "seal.derive", "MSG_KEY_REQ through %s: %w", sevGuestPath, err)
	}
	if rsp.Status != 0 {
		return key, attest.Fail(attest.ErrConfig, "seal.derive", "the secure processor refused the key request (MSG_KEY_RSP status 0x%x)", rsp.Status)
	}
	key = rsp.Data
	clear(rsp.Data[:])
	return key, nil
}

// GuestFields gets a report of this guest (at KeyDeriverOptions.VMPL)
// and returns its fields.
func (d *KeyDeriver) GuestFields(ctx context.Context) (snp.GuestFields, error) {
	if err := ctx.Err(); err != nil {
		return snp.GuestFields{}, err
	}
	d.q.mu.Lock()
	defer d.q.mu.Unlock()
	if d.closed {
		return snp.GuestFields{}, attest.Fail(attest.ErrConfig, "seal.derive", "the key deriver is closed")
	}
	report, err := d.q.report([64]byte{}, uint(d.vmpl))
	if err != nil {
		return snp.GuestFields{}, fmt.Errorf("getting a report from %s: %w", sevGuestPath, err)
	}
	return snp.GuestFieldsFromReport(report)
}
