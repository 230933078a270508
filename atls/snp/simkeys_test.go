package snp

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSimDeriveKeyDependsOnExactlyTheSelection: for each guest field, two
// VMs that differ only in it derive different keys when it is selected,
// and the same key when it is not.
func TestSimDeriveKeyDependsOnExactlyTheSelection(t *testing.T) {
	chain := testSimChain(t, "Milan")
	base := SimOptions{ChipID: [64]byte{1}, Measurement: [48]byte{2}, FamilyID: [16]byte{3}, ImageID: [16]byte{4}, GuestSVN: 5}
	vm := func(o SimOptions) *SimAttester {
		a, err := NewSimAttester(chain, o)
		require.NoError(t, err)
		return a
	}
	ctx := context.Background()
	key := func(a *SimAttester, f KeyFields) [32]byte {
		k, err := a.DeriveKey(ctx, DerivedKeyRequest{Root: RootVCEK, Fields: f})
		require.NoError(t, err)
		return k
	}
	a := vm(base)
	require.Equal(t, key(a, FieldMeasurement), key(vm(base), FieldMeasurement), "a restart derives the same key")
	require.NotEqual(t, key(a, FieldMeasurement), key(a, FieldMeasurement|FieldGuestPolicy), "the selection is mixed in")

	variants := map[KeyFields]func(*SimOptions){
		FieldMeasurement: func(o *SimOptions) { o.Measurement[0] ^= 1 },
		FieldGuestPolicy: func(o *SimOptions) { o.GuestPolicy = 0x30000 | 1<<19 },
		FieldFamilyID:    func(o *SimOptions) { o.FamilyID[0] ^= 1 },
		FieldImageID:     func(o *SimOptions) { o.ImageID[0] ^= 1 },
	}
	for field, change := range variants {
		o := base
		change(&o)
		b := vm(o)
		require.NotEqual(t, key(a, field), key(b, field), "%v selected", field)
		others := KnownKeyFields &^ field &^ (FieldGuestSVN | FieldTCBVersion | FieldLaunchMitVector)
		require.Equal(t, key(a, others), key(b, others), "%v not selected", field)
	}

	// Another chip of the same chain, and the VMRK of another launch.
	other := base
	other.ChipID[0] ^= 1
	require.NotEqual(t, key(a, FieldMeasurement), key(vm(other), FieldMeasurement))
	k1, err := a.DeriveKey(ctx, DerivedKeyRequest{Root: RootVMRK, Fields: FieldMeasurement})
	require.NoError(t, err)
	k2, err := vm(base).DeriveKey(ctx, DerivedKeyRequest{Root: RootVMRK, Fields: FieldMeasurement})
	require.NoError(t, err)
	require.NotEqual(t, k1, k2)

	// Floors: below or at the guest's values, each value its own key.
	svn := func(n uint32) ([32]byte, error) {
		return a.DeriveKey(ctx, DerivedKeyRequest{Root: RootVCEK, Fields: FieldMeasurement | FieldGuestSVN, GuestSVN: n})
	}
	k4, err := svn(4)
	require.NoError(t, err)
	k5, err := svn(5)
	require.NoError(t, err)
	require.NotEqual(t, k4, k5)
	_, err = svn(6)
	require.Error(t, err)
}

func TestKeyFieldsNames(t *testing.T) {
	f, err := ParseKeyFields("measurement, policy,tcb")
	require.NoError(t, err)
	require.Equal(t, FieldMeasurement|FieldGuestPolicy|FieldTCBVersion, f)
	require.Equal(t, "policy,measurement,tcb", f.String())
	all, err := ParseKeyFields(KnownKeyFields.String())
	require.NoError(t, err)
	require.Equal(t, KnownKeyFields, all)
	_, err = ParseKeyFields("measurement,colour")
	require.Error(t, err)
	require.True(t, TCBAtMost(0xdb18000000000004, 0xdb19000000000004))
	require.False(t, TCBAtMost(0xdb18000000000005, 0xdb19000000000004), "a lower bootloader is a rollback even with a higher SNP")
}
