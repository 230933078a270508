package seal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// hashDeriver derives a key by hashing the request: a deterministic
// stand-in for the secure processor, for the fuzzer.
type hashDeriver struct{ fields snp.GuestFields }

func (d hashDeriver) DeriveKey(_ context.Context, r snp.DerivedKeyRequest) ([32]byte, error) {
	b := binary.LittleEndian.AppendUint64(nil, uint64(r.Fields))
	b = binary.LittleEndian.AppendUint64(b, r.TCB)
	b = binary.LittleEndian.AppendUint32(b, r.GuestSVN)
	b = binary.LittleEndian.AppendUint32(b, r.VMPL)
	b = append(b, byte(r.Root), byte(r.KeySelect))
	return sha256.Sum256(b), nil
}

func (d hashDeriver) GuestFields(context.Context) (snp.GuestFields, error) { return d.fields, nil }

// FuzzUnseal feeds arbitrary blobs to ParseHeader and Unseal: no panic,
// every failure a named check, a parsed header that marshals back to the
// same bytes, and only the untouched blob opens.
func FuzzUnseal(f *testing.F) {
	d := hashDeriver{fields: snp.GuestFields{Measurement: [48]byte{1}, GuestSVN: 2, CommittedTCB: 0xdb18000000000004}}
	ctx := context.Background()
	for _, sel := range []Selection{
		{Fields: snp.FieldMeasurement},
		{Fields: snp.FieldMeasurement | snp.FieldGuestSVN | snp.FieldTCBVersion, IDKey: true},
		{Root: snp.RootVMRK, KeySelect: snp.KeySelVCEK, Fields: snp.FieldImageID, VMPL: 2},
	} {
		blob, err := Seal(ctx, d, sel, []byte("sealed data"), nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(blob)
	}
	f.Add([]byte("ATLSSEAL"))
	f.Add(append([]byte("ATLSSEAL\x02\x00"), make([]byte, 300)...))
	f.Fuzz(func(t *testing.T, blob []byte) {
		h, body, err := ParseHeader(blob)
		if err == nil {
			if !bytes.Equal(h.marshal(), blob[:headerSizeV1]) || len(body) != len(blob)-headerSizeV1 {
				t.Fatalf("header %+v does not marshal back to its bytes", h)
			}
		} else if attest.FailedCheck(err) == "" {
			t.Fatalf("unnamed error %v", err)
		}
		out, err := Unseal(ctx, d, blob, nil)
		if err != nil {
			if attest.FailedCheck(err) == "" {
				t.Fatalf("unnamed error %v", err)
			}
			var ce *attest.CheckError
			if !errors.As(err, &ce) || ce.Kind == nil {
				t.Fatalf("no kind in %v", err)
			}
			return
		}
		// Only a genuine seal of the seeds' data opens: the blob must be
		// exactly what sealing that data under its own header makes. (The
		// seeds themselves differ between fuzzing processes: their nonces
		// are random.)
		h, _, _ = ParseHeader(blob)
		cur := d.fields
		key, err := sealingKey(ctx, d, h.Selection, &cur)
		if err != nil {
			t.Fatal(err)
		}
		aead, err := newGCM(key)
		if err != nil {
			t.Fatal(err)
		}
		hdr := blob[:headerSizeV1:headerSizeV1]
		if string(out) != "sealed data" || !bytes.Equal(aead.Seal(hdr, h.Nonce[:], out, hdr), blob) {
			t.Fatalf("a blob that is no seal opened: %x", blob)
		}
	})
}
