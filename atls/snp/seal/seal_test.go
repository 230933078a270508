package seal_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/atls/snp/guest"
	"github.com/confidential-go/atls/atls/snp/seal"
	"github.com/confidential-go/atls/internal/atlstest"
)

// Both the hardware and the simulator derive keys and report fields.
var (
	_ seal.KeyDeriver  = (*guest.KeyDeriver)(nil)
	_ seal.FieldReader = (*guest.KeyDeriver)(nil)
	_ seal.KeyDeriver  = (*snp.SimAttester)(nil)
	_ seal.FieldReader = (*snp.SimAttester)(nil)
)

var (
	imageV1   = sha512.Sum384([]byte("disk unlocker v1"))
	imageV2   = sha512.Sum384([]byte("disk unlocker v2"))
	ownerKey  = sha512.Sum384([]byte("owner ID key"))
	otherKey  = sha512.Sum384([]byte("someone else's ID key"))
	chipA     = [64]byte{0xa}
	chipB     = [64]byte{0xb}
	family    = [16]byte{'d', 'i', 's', 'k'}
	image     = [16]byte{'u', 'n', 'l', 'o', 'c', 'k'}
	milanTCB  = uint64(0xdb18000000000004)
	secret    = []byte("the disk key: 0123456789abcdef")
	ctx       = context.Background()
	byMeasure = seal.Selection{Fields: snp.FieldMeasurement | snp.FieldGuestPolicy}
)

// vm boots a simulated guest on chip with opts (the chip ID is set from
// chip): a new SimAttester is a new launch, so two calls with the same
// chain and chip are the same machine before and after a restart.
func vm(t *testing.T, chain *snp.SimChain, chip [64]byte, opts snp.SimOptions) *snp.SimAttester {
	t.Helper()
	opts.ChipID = chip
	a, err := snp.NewSimAttester(chain, opts)
	require.NoError(t, err)
	return a
}

func TestSealMeasurement(t *testing.T) {
	chain := atlstest.Get(t).Chain
	blob, err := seal.Seal(ctx, vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1}), byMeasure, secret, nil)
	require.NoError(t, err)
	require.False(t, bytes.Contains(blob, secret), "the plaintext shows in the blob")

	// The same image on the same chip, after a restart, with the chain
	// reloaded from its persisted form: the same chip secret.
	pem, err := chain.MarshalPEM()
	require.NoError(t, err)
	reloaded, err := snp.ParseSimChainPEM(pem)
	require.NoError(t, err)
	got, err := seal.Unseal(ctx, vm(t, reloaded, chipA, snp.SimOptions{Measurement: imageV1}), blob, nil)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	// Another image on the same chip.
	_, err = seal.Unseal(ctx, vm(t, chain, chipA, snp.SimOptions{Measurement: imageV2}), blob, nil)
	atlstest.RequireCheck(t, err, attest.ErrPolicy, "seal.measurement")

	// The same image with debugging allowed (another guest policy).
	debug := debugPolicy()
	_, err = seal.Unseal(ctx, vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1, GuestPolicy: debug}), blob, nil)
	atlstest.RequireCheck(t, err, attest.ErrPolicy, "seal.guest_policy")

	// The same image on another chip: nothing in the header differs, the
	// key does.
	_, err = seal.Unseal(ctx, vm(t, chain, chipB, snp.SimOptions{Measurement: imageV1}), blob, nil)
	atlstest.RequireCheck(t, err, attest.ErrVerification, "seal.open")
}

// debugPolicy is the simulator's default guest policy (SMT allowed, the
// must-be-one bit 17) with debugging allowed (bit 19).
func debugPolicy() uint64 { return 0x30000 | 1<<19 }

func TestSealIDBlock(t *testing.T) {
	chain := atlstest.Get(t).Chain
	launch := func(m [48]byte, key [48]byte, fam, img [16]byte) *snp.SimAttester {
		return vm(t, chain, chipA, snp.SimOptions{Measurement: m, IDKeyDigest: key, FamilyID: fam, ImageID: img})
	}
	sel := seal.Selection{Fields: snp.FieldFamilyID | snp.FieldImageID | snp.FieldGuestPolicy, IDKey: true}
	blob, err := seal.Seal(ctx, launch(imageV1, ownerKey, family, image), sel, secret, nil)
	require.NoError(t, err)

	// An upgrade signed by the same ID key, keeping the IDs.
	got, err := seal.Unseal(ctx, launch(imageV2, ownerKey, family, image), blob, nil)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	// An ID block signed by another key with the same IDs.
	_, err = seal.Unseal(ctx, launch(imageV2, otherKey, family, image), blob, nil)
	atlstest.RequireCheck(t, err, attest.ErrPolicy, "seal.id_key")

	// Another image ID.
	_, err = seal.Unseal(ctx, launch(imageV1, ownerKey, family, [16]byte{'x'}), blob, nil)
	atlstest.RequireCheck(t, err, attest.ErrPolicy, "seal.image_id")
	_, err = seal.Unseal(ctx, launch(imageV1, ownerKey, [16]byte{'y'}, image), blob, nil)
	atlstest.RequireCheck(t, err, attest.ErrPolicy, "seal.family_id")
}

// TestFirmwareDoesNotMixIDKey documents the limit of family and image IDs
// alone: the secure processor derives the same key for a guest whose ID
// block another key signed with the same IDs. Only IDKey (enforced by
// this package) tells them apart.
func TestFirmwareDoesNotMixIDKey(t *testing.T) {
	chain := atlstest.Get(t).Chain
	req := snp.DerivedKeyRequest{Root: snp.RootVCEK, Fields: snp.FieldFamilyID | snp.FieldImageID}
	k1, err := vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1, IDKeyDigest: ownerKey, FamilyID: family, ImageID: image}).DeriveKey(ctx, req)
	require.NoError(t, err)
	k2, err := vm(t, chain, chipA, snp.SimOptions{Measurement: imageV2, IDKeyDigest: otherKey, FamilyID: family, ImageID: image}).DeriveKey(ctx, req)
	require.NoError(t, err)
	require.Equal(t, k1, k2)

	sel := seal.Selection{Fields: snp.FieldFamilyID | snp.FieldImageID}
	blob, err := seal.Seal(ctx, vm(t, chain, chipA, snp.SimOptions{IDKeyDigest: ownerKey, FamilyID: family, ImageID: image}), sel, secret, nil)
	require.NoError(t, err)
	_, err = seal.Unseal(ctx, vm(t, chain, chipA, snp.SimOptions{IDKeyDigest: otherKey, FamilyID: family, ImageID: image}), blob, nil)
	require.NoError(t, err, "without IDKey, another ID key with the same IDs unseals")
}

func TestSealTCBRollback(t *testing.T) {
	chain := atlstest.Get(t).Chain
	newer := milanTCB + 1 // bootloader 5
	sel := seal.Selection{Fields: snp.FieldMeasurement | snp.FieldTCBVersion}
	blob, err := seal.Seal(ctx, vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1, TCB: newer}), sel, secret, nil)
	require.NoError(t, err)
	h, _, err := seal.ParseHeader(blob)
	require.NoError(t, err)
	require.Equal(t, newer, h.Selection.TCB, "the floor defaults to the committed TCB")

	// Still there after a firmware update (SNP 0x18 -> 0x19).
	updated := newer + 1<<48
	got, err := seal.Unseal(ctx, vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1, TCB: updated}), blob, nil)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	// Rolled back to the older bootloader.
	_, err = seal.Unseal(ctx, vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1, TCB: milanTCB}), blob, nil)
	atlstest.RequireCheck(t, err, attest.ErrPolicy, "seal.tcb")

	// The secure processor itself refuses the rolled-back request, so
	// skipping Unseal's own check does not help.
	rolledBack := vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1, TCB: milanTCB})
	_, err = rolledBack.DeriveKey(ctx, snp.DerivedKeyRequest{Root: snp.RootVCEK, Fields: sel.Fields, TCB: newer})
	atlstest.RequireCheck(t, err, attest.ErrPolicy, "seal.tcb")
}

func TestSealGuestSVN(t *testing.T) {
	chain := atlstest.Get(t).Chain
	sel := seal.Selection{Fields: snp.FieldMeasurement | snp.FieldGuestSVN}
	blob, err := seal.Seal(ctx, vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1, GuestSVN: 3}), sel, secret, nil)
	require.NoError(t, err)
	for svn, ok := range map[uint32]bool{2: false, 3: true, 4: true} {
		got, err := seal.Unseal(ctx, vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1, GuestSVN: svn}), blob, nil)
		if ok {
			require.NoError(t, err, "SVN %d", svn)
			require.Equal(t, secret, got)
		} else {
			atlstest.RequireCheck(t, err, attest.ErrPolicy, "seal.guest_svn")
		}
	}
	a := vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1, GuestSVN: 2})
	_, err = a.DeriveKey(ctx, snp.DerivedKeyRequest{Root: snp.RootVCEK, Fields: sel.Fields, GuestSVN: 3})
	atlstest.RequireCheck(t, err, attest.ErrPolicy, "seal.guest_svn")
}

func TestSealVMRKDoesNotSurviveRestart(t *testing.T) {
	chain := atlstest.Get(t).Chain
	a := vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1})
	sel := seal.Selection{Root: snp.RootVMRK, Fields: snp.FieldMeasurement}
	blob, err := seal.Seal(ctx, a, sel, secret, nil)
	require.NoError(t, err)
	got, err := seal.Unseal(ctx, a, blob, nil)
	require.NoError(t, err)
	require.Equal(t, secret, got)
	_, err = seal.Unseal(ctx, vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1}), blob, nil)
	atlstest.RequireCheck(t, err, attest.ErrVerification, "seal.open")
}

func TestSealTampered(t *testing.T) {
	chain := atlstest.Get(t).Chain
	a := vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1})
	blob, err := seal.Seal(ctx, a, byMeasure, secret, []byte("volume 1"))
	require.NoError(t, err)
	_, err = seal.Unseal(ctx, a, blob, []byte("volume 2"))
	atlstest.RequireCheck(t, err, attest.ErrVerification, "seal.open")

	cases := map[string]struct {
		offset int
		kind   error
		check  string
	}{
		"magic":              {0, attest.ErrMalformedEvidence, "seal.format"},
		"header size":        {10, attest.ErrMalformedEvidence, "seal.format"},
		"root":               {12, attest.ErrMalformedEvidence, "seal.format"},
		"reserved flag":      {15, attest.ErrMalformedEvidence, "seal.format"},
		"guest SVN":          {28, attest.ErrMalformedEvidence, "seal.format"}, // SVN without its field
		"VMPL":               {24, attest.ErrVerification, "seal.open"},        // VMPL 1: another key
		"recorded family ID": {104, attest.ErrVerification, "seal.open"},       // not selected, but authenticated
		"recorded image ID":  {120, attest.ErrVerification, "seal.open"},
		"nonce":              {190, attest.ErrVerification, "seal.open"},
		"ciphertext":         {200, attest.ErrVerification, "seal.open"},
		"tag":                {-1, attest.ErrVerification, "seal.open"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			b := bytes.Clone(blob)
			i := c.offset
			if i < 0 {
				i += len(b)
			}
			b[i] ^= 1
			_, err := seal.Unseal(ctx, a, b, []byte("volume 1"))
			atlstest.RequireCheck(t, err, c.kind, c.check)
		})
	}
	// A changed selection (the measurement bit cleared): another key.
	b := bytes.Clone(blob)
	b[16] &^= byte(snp.FieldMeasurement)
	_, err = seal.Unseal(ctx, a, b, []byte("volume 1"))
	atlstest.RequireCheck(t, err, attest.ErrVerification, "seal.open")
	// A recorded measurement changed: reported as another image (the
	// header is only authenticated once the key opens it).
	b = bytes.Clone(blob)
	b[48] ^= 1
	_, err = seal.Unseal(ctx, a, b, []byte("volume 1"))
	atlstest.RequireCheck(t, err, attest.ErrPolicy, "seal.measurement")
	// Truncated.
	_, err = seal.Unseal(ctx, a, blob[:len(blob)-len(secret)-1], []byte("volume 1"))
	atlstest.RequireCheck(t, err, attest.ErrMalformedEvidence, "seal.format")
	_, err = seal.Unseal(ctx, a, secret, nil)
	atlstest.RequireCheck(t, err, attest.ErrMalformedEvidence, "seal.format")
	require.ErrorIs(t, err, seal.ErrNotSealed)
}

func TestSealNewerVersion(t *testing.T) {
	chain := atlstest.Get(t).Chain
	a := vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1})
	blob, err := seal.Seal(ctx, a, byMeasure, secret, nil)
	require.NoError(t, err)
	binary.LittleEndian.PutUint16(blob[8:], seal.Version+1)
	_, err = seal.Unseal(ctx, a, blob, nil)
	atlstest.RequireCheck(t, err, attest.ErrUnsupported, "seal.version")
	require.ErrorIs(t, err, seal.ErrNewerVersion)
	require.Contains(t, err.Error(), "format 2")
}

func TestSealRefusesWeakOrInvalidSelections(t *testing.T) {
	chain := atlstest.Get(t).Chain
	a := vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1, ReportVersion: 3})
	for name, sel := range map[string]seal.Selection{
		"nothing selected":            {},
		"only floors":                 {Fields: snp.FieldTCBVersion | snp.FieldGuestSVN},
		"reserved bit":                {Fields: snp.FieldMeasurement | 1<<7},
		"VMPL 4":                      {Fields: snp.FieldMeasurement, VMPL: 4},
		"SVN without field":           {Fields: snp.FieldMeasurement, GuestSVN: 1},
		"mitigation vector on v3 fw":  {Fields: snp.FieldMeasurement | snp.FieldLaunchMitVector, LaunchMitVector: 1},
		"VLEK where none is":          {Fields: snp.FieldMeasurement, KeySelect: snp.KeySelVLEK},
		"bad root":                    {Root: 3, Fields: snp.FieldMeasurement},
		"TCB floor above committed":   {Fields: snp.FieldMeasurement | snp.FieldTCBVersion, TCB: milanTCB + 1},
		"guest SVN above launch SVN":  {Fields: snp.FieldMeasurement | snp.FieldGuestSVN, GuestSVN: 9},
		"VMPL above the guest's VMPL": {Fields: snp.FieldMeasurement, VMPL: 0},
	} {
		t.Run(name, func(t *testing.T) {
			var d seal.KeyDeriver = a
			if name == "VMPL above the guest's VMPL" {
				d = vm(t, chain, chipA, snp.SimOptions{VMPL: 2})
			}
			_, err := seal.Seal(ctx, d, sel, secret, nil)
			require.Error(t, err)
			require.NotEmpty(t, attest.FailedCheck(err), "%v", err)
		})
	}
}

func TestSealMitigationVector(t *testing.T) {
	chain := atlstest.Get(t).Chain
	launch := func(v uint64) *snp.SimAttester {
		return vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1, ReportVersion: 5, LaunchMitVector: v, CurrentMitVector: v})
	}
	sel := seal.Selection{Fields: snp.FieldMeasurement | snp.FieldLaunchMitVector}
	blob, err := seal.Seal(ctx, launch(0b101), sel, secret, nil)
	require.NoError(t, err)
	got, err := seal.Unseal(ctx, launch(0b101), blob, nil)
	require.NoError(t, err)
	require.Equal(t, secret, got)
	_, err = seal.Unseal(ctx, launch(0b001), blob, nil)
	atlstest.RequireCheck(t, err, attest.ErrPolicy, "seal.launch_mit_vector")
}

// plainDeriver is a KeyDeriver that cannot report guest fields.
type plainDeriver struct{ d seal.KeyDeriver }

func (p plainDeriver) DeriveKey(ctx context.Context, r snp.DerivedKeyRequest) ([32]byte, error) {
	return p.d.DeriveKey(ctx, r)
}

func TestSealWithoutFieldReader(t *testing.T) {
	chain := atlstest.Get(t).Chain
	a := plainDeriver{vm(t, chain, chipA, snp.SimOptions{Measurement: imageV1})}
	blob, err := seal.Seal(ctx, a, byMeasure, secret, nil)
	require.NoError(t, err)
	h, _, err := seal.ParseHeader(blob)
	require.NoError(t, err)
	require.False(t, h.Recorded)
	_, err = seal.Unseal(ctx, plainDeriver{vm(t, chain, chipA, snp.SimOptions{Measurement: imageV2})}, blob, nil)
	atlstest.RequireCheck(t, err, attest.ErrVerification, "seal.open") // no record: the cause cannot be told
	_, err = seal.Seal(ctx, a, seal.Selection{Fields: snp.FieldMeasurement | snp.FieldTCBVersion}, secret, nil)
	atlstest.RequireCheck(t, err, attest.ErrConfig, "seal.request")
}

func TestDeriverErrorIsNamed(t *testing.T) {
	_, err := seal.Seal(ctx, failing{}, byMeasure, secret, nil)
	atlstest.RequireCheck(t, err, attest.ErrUnsupported, "seal.derive")
	require.ErrorIs(t, err, errDevice)
}

var errDevice = errors.New("no device")

type failing struct{}

func (failing) DeriveKey(context.Context, snp.DerivedKeyRequest) ([32]byte, error) {
	return [32]byte{}, errDevice
}
