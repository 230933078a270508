package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/atls/snp/guest"
	"github.com/confidential-go/atls/atls/snp/seal"
)

var sealSpec = &cmdSpec{
	name:     "seal",
	synopsis: []string{"seal --select FIELDS --in FILE --out FILE [--root vcek|vmrk] [--guest-svn N] [--tcb HEX] [--vmpl N] [--simulate]"},
	summary: `Encrypts a file (AES-256-GCM) under a key that the AMD secure processor of this
guest derives from its root key and the selected fields, so that only a guest
with the same values can unseal it ('atls unseal'). FIELDS is a comma-separated
list of measurement (this image only), policy (the guest policy: keeps a debug
launch out), family-id and image-id (the ID block's IDs: survive an upgrade
that keeps them), guest-svn and tcb (floors: later versions unseal, a rollback
does not), launch-mit-vector, and id-key (the ID key digest, checked by atls
rather than by the firmware). The floors default to this guest's launch SVN and
the platform's committed TCB. The root is the chip's VCEK by default; a VMRK
key does not survive a restart. With --simulate, the simulated VM in --sim-dir
seals (SIMULATED: its keys protect nothing).`,
	examples: []string{
		"atls seal --select measurement,policy --in disk.key --out disk.key.sealed",
		"",
		"# survives image upgrades signed with the same ID key, not firmware rollbacks:",
		"atls seal --select family-id,image-id,id-key,policy,tcb --in token --out token.sealed",
		"",
		"atls seal --simulate --select measurement --in secret.txt --out secret.sealed",
	},
}

var unsealSpec = &cmdSpec{
	name:     "unseal",
	synopsis: []string{"unseal --in FILE --out FILE [--simulate]"},
	summary: `Decrypts a file sealed by 'atls seal' (on this guest, or an earlier launch of
the same one), deriving the key its header names. A blob that does not open
names the cause: seal.measurement (another image), seal.guest_policy,
seal.family_id, seal.image_id, seal.id_key, seal.tcb (firmware rolled back),
seal.guest_svn, seal.open (tampered with, or sealed on another chip),
seal.version (sealed by a newer atls).`,
	examples: []string{
		"atls unseal --in disk.key.sealed --out /run/disk.key",
		"atls unseal --simulate --in secret.sealed --out -",
	},
	exits: "  5  the blob was sealed for another guest or firmware (seal.measurement, seal.tcb, ...)\n  4  the blob is tampered with, not a sealed blob, or in a newer format",
}

// sealFlags are the flags seal and unseal share.
type sealFlags struct {
	simulate    *bool
	simDir      *string
	measurement *string
	in, out     *string
	force       *bool
}

func addSealFlags(fs *flag.FlagSet) *sealFlags {
	return &sealFlags{
		simulate:    fs.Bool("simulate", false, "derive keys with the simulated VM of --sim-dir (SIMULATED) instead of this guest's secure processor"),
		simDir:      addSimDirFlag(fs),
		measurement: fs.String("measurement", "", "with --simulate: the simulated launch measurement, 96 `hex` digits\n(default: the simulated VM's, kept in --sim-dir)"),
		in:          fs.String("in", "", "read from `file` (\"-\": stdin)"),
		out:         fs.String("out", "", "write to `file` (\"-\": stdout)"),
		force:       fs.Bool("force", false, "overwrite --out if it exists"),
	}
}

// deriver returns the key deriver the flags select, and a function that
// releases it.
func (f *sealFlags) deriver(e *env, cmd string) (seal.KeyDeriver, func(), error) {
	if !*f.simulate {
		if *f.measurement != "" {
			return nil, nil, usageErrorf("--measurement needs --simulate (real hardware measures the VM at launch)")
		}
		d, err := guest.NewKeyDeriver(guest.KeyDeriverOptions{})
		if err != nil {
			return nil, nil, noSNP(err)
		}
		return d, func() { d.Close() }, nil
	}
	var override *[48]byte
	if *f.measurement != "" {
		m, err := parseMeasurement(*f.measurement)
		if err != nil {
			return nil, nil, usageErrorf("--measurement: %v", err)
		}
		override = &m
	}
	store, err := openSimStore(*f.simDir, e.stderr)
	if err != nil {
		return nil, nil, err
	}
	att, err := store.attester(override)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(e.stderr, "atls %s: SIMULATED secure processor (%s): the key protects nothing\n", cmd, store.dir)
	return att, func() {}, nil
}

// input checks --in and --out and reads the input.
func (f *sealFlags) input() ([]byte, error) {
	if *f.in == "" || *f.out == "" {
		return nil, usageErrorf("--in and --out are required")
	}
	if *f.in == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(*f.in)
}

func (f *sealFlags) output(e *env, data []byte) error {
	if *f.out == "-" {
		_, err := e.stdout.Write(data)
		return err
	}
	return writeFile(*f.out, data, 0o600, *f.force)
}

func runSeal(e *env, args []string) int {
	fs := newFlags(e, sealSpec)
	f := addSealFlags(fs)
	sel := fs.String("select", "", "comma-separated `fields` the key depends on (required; see above)")
	root := fs.String("root", "vcek", "root `key`: vcek (survives restarts) or vmrk (this launch only)")
	svn := fs.Uint("guest-svn", 0, "guest SVN `floor` with guest-svn selected (default: this guest's launch SVN)")
	tcb := fs.String("tcb", "", "TCB `floor`, 16 hex digits, with tcb selected (default: the committed TCB)")
	vmpl := fs.Uint("vmpl", 0, "the VMPL mixed into the key: the least privileged `level` that may derive it")
	if _, code := parseArgs(e, fs, sealSpec, args, 0, 0); code >= 0 {
		return code
	}
	err := func() error {
		if *sel == "" {
			return usageErrorf("--select is required: say what the key depends on (for example measurement,policy)")
		}
		s, err := seal.ParseFields(*sel)
		if err != nil {
			return usageErrorf("--select: %v", err)
		}
		if s.Root, err = snp.ParseKeyRoot(*root); err != nil {
			return usageErrorf("--root: %v", err)
		}
		if *svn > 0xffffffff || *vmpl > 3 {
			return usageErrorf("--guest-svn must fit 32 bits and --vmpl be 0-3")
		}
		s.GuestSVN, s.VMPL = uint32(*svn), uint32(*vmpl)
		if *tcb != "" {
			if s.TCB, err = strconv.ParseUint(*tcb, 16, 64); err != nil {
				return usageErrorf("--tcb: want 16 hex digits: %v", err)
			}
		}
		plaintext, err := f.input()
		if err != nil {
			return err
		}
		d, release, err := f.deriver(e, "seal")
		if err != nil {
			return err
		}
		defer release()
		blob, err := seal.Seal(e.ctx, d, s, plaintext, nil)
		if err != nil {
			return verifyError(err)
		}
		return f.output(e, blob)
	}()
	return finish(e, sealSpec, err)
}

func runUnseal(e *env, args []string) int {
	fs := newFlags(e, unsealSpec)
	f := addSealFlags(fs)
	if _, code := parseArgs(e, fs, unsealSpec, args, 0, 0); code >= 0 {
		return code
	}
	err := func() error {
		blob, err := f.input()
		if err != nil {
			return err
		}
		d, release, err := f.deriver(e, "unseal")
		if err != nil {
			return err
		}
		defer release()
		plaintext, err := seal.Unseal(e.ctx, d, blob, nil)
		if err != nil {
			return verifyError(err)
		}
		return f.output(e, plaintext)
	}()
	return finish(e, unsealSpec, err)
}
