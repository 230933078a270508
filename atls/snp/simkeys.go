package snp

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"fmt"

	"github.com/confidential-go/atls/atls/attest"
)

// Derived keys of the simulator.
//
// The simulated chip has a secret from which its VCEK-rooted keys come:
// HKDF over the private key of the simulated ASK and the chip ID, so that
// the same persisted chain and chip ID (a restart of the simulated VM on
// the same simulated machine) give the same keys, and another chip other
// ones. The VMRK is random for each SimAttester, as the firmware makes a
// new one at each launch. A key is HKDF-SHA384 of the root and every input
// MSG_KEY_REQ mixes in: the request words and the values of the selected
// guest fields. The firmware's own key derivation function is not
// public; only its behaviour is modelled.

// simChipSecret is the simulated chip's secret.
func simChipSecret(chain *SimChain, chipID [64]byte) ([32]byte, error) {
	var s [32]byte
	if chain.askKey == nil {
		return s, fmt.Errorf("snp: simulator: the chain has no ASK private key")
	}
	k, err := hkdf.Key(sha512.New384, chain.askKey.D.Bytes(), chipID[:], "atls simulated chip secret v1", len(s))
	if err != nil {
		return s, fmt.Errorf("snp: simulator: chip secret: %w", err)
	}
	copy(s[:], k)
	return s, nil
}

// initKeys sets the attester's chip secret and VMRK.
func (a *SimAttester) initKeys(chain *SimChain) error {
	s, err := simChipSecret(chain, a.opts.ChipID)
	if err != nil {
		return err
	}
	a.chipSecret = s
	_, _ = rand.Read(a.vmrk[:])
	return nil
}

// DeriveKey answers a MSG_KEY_REQ as the firmware of the simulated guest
// would: it refuses a request the firmware refuses (a VMPL below the
// guest's, a guest SVN above the launch SVN, a TCB above the committed
// TCB, a mitigation vector on firmware without mitigation vectors
// (report version below 5), a VLEK, which the simulator does not have)
// and otherwise returns a key that depends on the root and on exactly the
// selected fields. It also refuses a mitigation vector with bits the
// launch vector lacks: the simulator treats the vector as a floor, like
// the guest SVN.
func (a *SimAttester) DeriveKey(ctx context.Context, req DerivedKeyRequest) ([32]byte, error) {
	var key [32]byte
	if err := ctx.Err(); err != nil {
		return key, fmt.Errorf("snp: simulator: %w", err)
	}
	if err := req.Check(); err != nil {
		return key, err
	}
	o := a.opts
	refuse := func(kind error, check, format string, args ...any) ([32]byte, error) {
		return key, attest.Fail(kind, check, "the simulated secure processor refuses the key request: "+format, args...)
	}
	switch {
	case req.KeySelect == KeySelVLEK:
		return refuse(attest.ErrUnsupported, "seal.request", "no VLEK is installed")
	case req.VMPL < o.VMPL:
		return refuse(attest.ErrConfig, "seal.request", "VMPL %d is more privileged than the guest's %d", req.VMPL, o.VMPL)
	case req.Fields&FieldGuestSVN != 0 && req.GuestSVN > o.GuestSVN:
		return refuse(attest.ErrPolicy, "seal.guest_svn", "guest SVN %d is above the launch SVN %d", req.GuestSVN, o.GuestSVN)
	case req.Fields&FieldTCBVersion != 0 && !TCBAtMost(req.TCB, o.CommittedTCB):
		return refuse(attest.ErrPolicy, "seal.tcb", "TCB 0x%016x is above the committed TCB 0x%016x", req.TCB, o.CommittedTCB)
	case req.Fields&FieldLaunchMitVector != 0 && o.ReportVersion < 5:
		return refuse(attest.ErrUnsupported, "seal.request", "this firmware (report version %d) has no launch mitigation vector", o.ReportVersion)
	case req.Fields&FieldLaunchMitVector != 0 && req.LaunchMitVector&^o.LaunchMitVector != 0:
		return refuse(attest.ErrPolicy, "seal.launch_mit_vector", "mitigation bits 0x%x were not verified at launch", req.LaunchMitVector&^o.LaunchMitVector)
	}
	root := a.vmrk
	if req.Root == RootVCEK {
		root = a.chipSecret
	}
	// The request words, as MSG_KEY_REQ carries them, then the selected
	// guest values. KEY_SEL is left out: without a VLEK, the default and
	// the VCEK are the same key.
	info := make([]byte, 0, 160)
	info = binary.LittleEndian.AppendUint32(info, uint32(req.Root))
	info = binary.LittleEndian.AppendUint64(info, uint64(req.Fields))
	info = binary.LittleEndian.AppendUint32(info, req.VMPL)
	info = binary.LittleEndian.AppendUint32(info, req.GuestSVN)
	info = binary.LittleEndian.AppendUint64(info, req.TCB)
	info = binary.LittleEndian.AppendUint64(info, req.LaunchMitVector)
	if req.Fields&FieldGuestPolicy != 0 {
		info = binary.LittleEndian.AppendUint64(info, o.GuestPolicy)
	}
	if req.Fields&FieldImageID != 0 {
		info = append(info, o.ImageID[:]...)
	}
	if req.Fields&FieldFamilyID != 0 {
		info = append(info, o.FamilyID[:]...)
	}
	if req.Fields&FieldMeasurement != 0 {
		info = append(info, o.Measurement[:]...)
	}
	k, err := hkdf.Key(sha512.New384, root[:], []byte("atls simulated MSG_KEY_REQ v1"), string(info), len(key))
	if err != nil {
		return key, fmt.Errorf("snp: simulator: deriving a key: %w", err)
	}
	copy(key[:], k)
	return key, nil
}

// GuestFields returns the fields of the simulated guest, as its reports
// show them.
func (a *SimAttester) GuestFields(ctx context.Context) (GuestFields, error) {
	if err := ctx.Err(); err != nil {
		return GuestFields{}, fmt.Errorf("snp: simulator: %w", err)
	}
	return GuestFieldsFromReport(a.unsigned)
}
