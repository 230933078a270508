package snp

import (
	"bytes"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp/idblock"
)

// applyIDBlock launches the simulated guest with o.IDBlock and o.IDAuth
// as the firmware does at SNP_LAUNCH_FINISH: it verifies the signatures,
// refuses a block whose launch digest or POLICY differs from the launch
// (a zero Measurement takes the block's: the simulated image is the one
// the block vouches for), and fills in the report fields the block
// determines. Fields set by hand must agree with the block. It runs after
// GuestPolicy has its default.
func (o *SimOptions) applyIDBlock() error {
	if o.IDBlock == nil && o.IDAuth == nil {
		return nil
	}
	if o.IDBlock == nil || o.IDAuth == nil {
		return attest.Fail(attest.ErrConfig, "snp.config", "simulator: an ID block needs its ID auth, and the other way round")
	}
	o.IDBlock, o.IDAuth = bytes.Clone(o.IDBlock), bytes.Clone(o.IDAuth)
	l, err := idblock.ParseAndVerify(o.IDBlock, o.IDAuth)
	if err != nil {
		return err
	}
	b := l.Block
	if o.Measurement == ([48]byte{}) {
		o.Measurement = b.Measurement
	}
	if err := b.MatchLaunch(o.Measurement, o.GuestPolicy); err != nil {
		return err
	}
	for _, f := range []struct {
		name       string
		set, block []byte
	}{
		{"FamilyID", o.FamilyID[:], b.FamilyID[:]},
		{"ImageID", o.ImageID[:], b.ImageID[:]},
		{"IDKeyDigest", o.IDKeyDigest[:], l.IDKeyDigest[:]},
		{"AuthorKeyDigest", o.AuthorKeyDigest[:], l.AuthorKeyDigest[:]},
	} {
		if !allZeroBytes(f.set) && !bytes.Equal(f.set, f.block) {
			return attest.Fail(attest.ErrConfig, "snp.config", "simulator: %s %x differs from the ID block's %x (leave it zero)", f.name, f.set, f.block)
		}
	}
	if o.GuestSVN != 0 && o.GuestSVN != b.GuestSVN {
		return attest.Fail(attest.ErrConfig, "snp.config", "simulator: GuestSVN %d differs from the ID block's %d (leave it zero)", o.GuestSVN, b.GuestSVN)
	}
	if o.AuthorKeyEn && !l.AuthorKeyEn {
		return attest.Fail(attest.ErrConfig, "snp.config", "simulator: AuthorKeyEn is set but the ID auth has no author key")
	}
	o.FamilyID, o.ImageID, o.GuestSVN = b.FamilyID, b.ImageID, b.GuestSVN
	o.IDKeyDigest, o.AuthorKeyDigest, o.AuthorKeyEn = l.IDKeyDigest, l.AuthorKeyDigest, l.AuthorKeyEn
	return nil
}

func allZeroBytes(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
