package main

import (
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/confidential-go/atls/atls/snp/idblock"
)

var idblockSpec = &cmdSpec{
	name: "idblock",
	synopsis: []string{"idblock --measurement HEX --id-key FILE [--author-key FILE] [--family-id HEX] [--image-id HEX]\n" +
		"              [--guest-svn N] [--policy HEX] --out-block FILE --out-auth FILE [--force]"},
	summary: `Signs an SEV-SNP ID block for a launch measurement and writes the two files
that QEMU's sev-snp-guest object takes: the 96-byte ID_BLOCK (--out-block) and
the 4096-byte ID_AUTH (--out-auth), each as one line of base64. It prints the
SHA-384 digests of the ID key and author key on stdout, as the VM's reports will
show them (ID_KEY_DIGEST, AUTHOR_KEY_DIGEST): pin them in a policy with
'atls policy from-launch --id-key-digest HEX'.

Keys are ECDSA P-384 private keys in PEM or DER, PKCS #8 or SEC 1 (for example
'openssl ecparam -name secp384r1 -genkey -noout'). The firmware refuses to launch
the VM unless --measurement is its launch measurement ('atls measure') and
--policy its guest policy (QEMU's policy=, default 0x30000). With an author key,
QEMU needs author-key-enabled=on.`,
	examples: []string{
		"atls idblock --measurement $(atls measure --ovmf OVMF.fd --vcpus 4 --vcpu-type EPYC-Milan) \\",
		"    --id-key id-key.pem --author-key author-key.pem --guest-svn 1 \\",
		"    --out-block id-block.b64 --out-auth id-auth.b64",
		"",
		"qemu-system-x86_64 ... -object sev-snp-guest,id=sev0,policy=0x30000,\\",
		"    id-block=$(cat id-block.b64),id-auth=$(cat id-auth.b64),author-key-enabled=on",
	},
	exits: `Exit codes:
  0  success
  1  failure: a file cannot be read or written
  2  usage or configuration error (flags, a key that is not ECDSA P-384, an invalid policy)`,
}

// idblockOptions are the parsed flags of idblock.
type idblockOptions struct {
	block             idblock.Block
	idKey, authorKey  string // key files
	outBlock, outAuth string // output files
	force             bool
}

func runIDBlock(e *env, args []string) int {
	fs := newFlags(e, idblockSpec)
	measurement := fs.String("measurement", "", "the launch measurement the block vouches for, 96 `hex` digits ('atls measure' prints it)")
	idKey := fs.String("id-key", "", "ECDSA P-384 ID key `file` (PEM or DER, PKCS #8 or SEC 1)")
	authorKey := fs.String("author-key", "", "ECDSA P-384 author key `file` that signs the ID key (optional)")
	familyID := fs.String("family-id", "", "FAMILY_ID, up to 32 `hex` digits (default zero)")
	imageID := fs.String("image-id", "", "IMAGE_ID, up to 32 `hex` digits (default zero)")
	guestSVN := fs.String("guest-svn", "0", "the guest's security version `number` (GUEST_SVN)")
	policy := fs.String("policy", "0x30000", "the guest `policy`, in hex; must equal the launch policy")
	outBlock := fs.String("out-block", "", "`file` to write the ID block to (base64)")
	outAuth := fs.String("out-auth", "", "`file` to write the ID auth to (base64)")
	force := fs.Bool("force", false, "overwrite existing files")
	if _, code := parseArgs(e, fs, idblockSpec, args, 0, 0); code >= 0 {
		return code
	}
	o, err := parseIDBlockFlags(*measurement, *familyID, *imageID, *guestSVN, *policy)
	if err == nil {
		o.idKey, o.authorKey, o.outBlock, o.outAuth, o.force = *idKey, *authorKey, *outBlock, *outAuth, *force
		err = idblockCmd(e, o)
	}
	return finish(e, idblockSpec, err)
}

// parseIDBlockFlags reads the contents of the block from the flags.
func parseIDBlockFlags(measurement, familyID, imageID, guestSVN, policy string) (*idblockOptions, error) {
	o := &idblockOptions{}
	if measurement == "" {
		return nil, usageErrorf("--measurement is required")
	}
	m, err := parseMeasurement(measurement)
	if err != nil {
		return nil, usageErrorf("--measurement: %v", err)
	}
	o.block.Measurement = m
	for _, f := range []struct {
		name, value string
		dst         *[16]byte
	}{{"--family-id", familyID, &o.block.FamilyID}, {"--image-id", imageID, &o.block.ImageID}} {
		if f.value == "" {
			continue
		}
		b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(f.value), "0x"))
		if err != nil || len(b) > 16 {
			return nil, usageErrorf("%s %q: want up to 32 hex digits (16 bytes)", f.name, f.value)
		}
		// A shorter value is the leading bytes; the rest stays zero.
		copy(f.dst[:], b)
	}
	svn, err := strconv.ParseUint(strings.TrimSpace(guestSVN), 10, 32)
	if err != nil {
		return nil, usageErrorf("--guest-svn %q: want a decimal number below 2^32", guestSVN)
	}
	o.block.GuestSVN = uint32(svn)
	p, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(policy), "0x"), "0X"), 16, 64)
	if err != nil || p == 0 {
		return nil, usageErrorf("--policy %q: want a non-zero hexadecimal number such as 0x30000", policy)
	}
	o.block.Policy = p
	return o, nil
}

// idblockCmd signs the block and writes the files.
func idblockCmd(e *env, o *idblockOptions) error {
	switch {
	case o.idKey == "":
		return usageErrorf("--id-key is required")
	case o.outBlock == "" || o.outAuth == "":
		return usageErrorf("--out-block and --out-auth are required")
	case o.outBlock == o.outAuth:
		return usageErrorf("--out-block and --out-auth must be different files")
	}
	idKeyData, err := os.ReadFile(o.idKey)
	if err != nil {
		return err
	}
	idKey, err := idblock.ParsePrivateKey(idKeyData)
	if err != nil {
		return configError(fmt.Errorf("--id-key %s: %w", o.idKey, err))
	}
	var authorKey *ecdsa.PrivateKey
	if o.authorKey != "" {
		data, err := os.ReadFile(o.authorKey)
		if err != nil {
			return err
		}
		if authorKey, err = idblock.ParsePrivateKey(data); err != nil {
			return configError(fmt.Errorf("--author-key %s: %w", o.authorKey, err))
		}
	}
	block, auth, err := idblock.Sign(&o.block, idKey, authorKey)
	if err != nil {
		return configError(err)
	}
	// Check what was written as the firmware will, before writing it.
	l, err := idblock.ParseAndVerify(block, auth)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{o.outBlock, block}, {o.outAuth, auth}} {
		if err := writeFile(f.path, []byte(base64.StdEncoding.EncodeToString(f.data)+"\n"), 0o644, o.force); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "id_key_digest: %x\n", l.IDKeyDigest)
	if l.AuthorKeyEn {
		fmt.Fprintf(e.stdout, "author_key_digest: %x\n", l.AuthorKeyDigest)
	}
	fmt.Fprintf(e.stderr, "atls idblock: wrote %s and %s (policy 0x%x, guest SVN %d)\n",
		printable(o.outBlock), printable(o.outAuth), l.Block.Policy, l.Block.GuestSVN)
	qemu := fmt.Sprintf("-object sev-snp-guest,id=sev0,policy=0x%x,id-block=$(cat %s),id-auth=$(cat %s)", l.Block.Policy, printable(o.outBlock), printable(o.outAuth))
	if l.AuthorKeyEn {
		qemu += ",author-key-enabled=on"
	}
	fmt.Fprintf(e.stderr, "QEMU: %s\n", qemu)
	return nil
}
