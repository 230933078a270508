package guest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"github.com/google/go-sev-guest/abi"
	labi "github.com/google/go-sev-guest/client/linuxabi"
	"github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/stretchr/testify/require"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
	"github.com/confidential-go/atls/internal/atlstest"
)

// keyDevice answers SNP_GET_DERIVED_KEY as the Linux driver does: it
// takes the request as the raw bytes of struct snp_derived_key_req and
// returns key, or fails with EIO and the firmware status fwErr. Plain
// report requests get report.
type keyDevice struct {
	key    [32]byte
	fwErr  uint64
	report []byte

	mu       sync.Mutex
	commands []uintptr
	requests [][]byte // the raw request of each derived-key command
	versions []uint32 // the message version of each command
}

func (d *keyDevice) Open(string) error           { return nil }
func (d *keyDevice) Close() error                { return nil }
func (d *keyDevice) Product() *sevsnp.SevProduct { return abi.DefaultSevProduct() }

func (d *keyDevice) Ioctl(command uintptr, req any) (uintptr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	msg, ok := req.(*labi.SnpUserGuestRequest)
	if !ok {
		return 0, errors.New("not a guest request")
	}
	d.commands = append(d.commands, command)
	// What the driver receives: the ioctl structure's message version,
	// then the request it points to.
	conv := msg.ABI()
	d.versions = append(d.versions, (*labi.SnpUserGuestRequestABI)(conv.Pointer()).GuestMsgVersion)
	switch command {
	case labi.IocSnpGetDerivedKey:
		r := msg.ReqData.(*labi.SnpDerivedKeyReqABI)
		raw := unsafe.Slice((*byte)(r.Pointer()), unsafe.Sizeof(*r))
		d.requests = append(d.requests, bytes.Clone(raw))
		if d.fwErr != 0 {
			msg.FwErr = d.fwErr
			return 0, syscall.EIO
		}
		msg.RespData.(*labi.SnpDerivedKeyRespABI).Data = d.key
	case labi.IocSnpGetReport:
		rsp := msg.RespData.(*labi.SnpReportRespABI)
		copy(rsp.Data[:], d.report)
		rsp.ReportSize = abi.ReportSize
	default:
		return 0, syscall.ENOTTY
	}
	return uintptr(labi.EsOk), nil
}

func keyDeriverOn(dev *keyDevice) *KeyDeriver {
	return newKeyDeriver(newDeviceQuotes(dev, -1), 0)
}

// TestMSGKeyReqBytes checks the request against the MSG_KEY_REQ table of
// the SEV-SNP firmware ABI specification (message version 1) and Linux's
// include/uapi/linux/sev-guest.h, written out byte by byte.
func TestMSGKeyReqBytes(t *testing.T) {
	// SNP_GET_DERIVED_KEY = _IOWR('S', 0x1, struct snp_guest_request_ioctl):
	// direction 3 in bits 31:30, size 32 in bits 29:16, type 'S', number 1.
	const iocGetDerivedKey uintptr = 3<<30 | 32<<16 | uintptr('S')<<8 | 1
	require.EqualValues(t, 0xC0205301, iocGetDerivedKey)

	cases := []struct {
		name string
		req  snp.DerivedKeyRequest
		want []byte
	}{
		{
			name: "VCEK, measurement and policy",
			req:  snp.DerivedKeyRequest{Root: snp.RootVCEK, Fields: snp.FieldMeasurement | snp.FieldGuestPolicy},
			want: []byte{
				0x00, 0x00, 0x00, 0x00, // ROOT_KEY_SELECT 0 (VCEK), KEY_SEL 0
				0x00, 0x00, 0x00, 0x00, // reserved
				0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // GUEST_FIELD_SELECT bits 0, 3
				0x00, 0x00, 0x00, 0x00, // VMPL 0
				0x00, 0x00, 0x00, 0x00, // GUEST_SVN
				0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // TCB_VERSION
			},
		},
		{
			name: "VMRK, KEY_SEL VCEK, every version 1 field, floors",
			req: snp.DerivedKeyRequest{
				Root: snp.RootVMRK, KeySelect: snp.KeySelVCEK,
				Fields: snp.FieldGuestPolicy | snp.FieldImageID | snp.FieldFamilyID | snp.FieldMeasurement | snp.FieldGuestSVN | snp.FieldTCBVersion,
				VMPL:   2, GuestSVN: 0x01020304, TCB: 0xdb18000000000004,
			},
			want: []byte{
				0x03, 0x00, 0x00, 0x00, // bit 0: VMRK; bits 2:1: KEY_SEL 1 (VCEK)
				0x00, 0x00, 0x00, 0x00,
				0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // bits 0-5
				0x02, 0x00, 0x00, 0x00,
				0x04, 0x03, 0x02, 0x01,
				0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x18, 0xdb, // bootloader 4, SNP 0x18, microcode 0xdb
			},
		},
		{
			name: "VCEK, KEY_SEL VLEK, image ID",
			req:  snp.DerivedKeyRequest{Root: snp.RootVCEK, KeySelect: snp.KeySelVLEK, Fields: snp.FieldImageID, VMPL: 3},
			want: []byte{
				0x04, 0x00, 0x00, 0x00, // KEY_SEL 2 (VLEK)
				0x00, 0x00, 0x00, 0x00,
				0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
				0x03, 0x00, 0x00, 0x00,
				0x00, 0x00, 0x00, 0x00,
				0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dev := &keyDevice{key: [32]byte{1, 2, 3}}
			key, err := keyDeriverOn(dev).DeriveKey(context.Background(), c.req)
			require.NoError(t, err)
			require.Equal(t, dev.key, key)
			require.Equal(t, []uintptr{iocGetDerivedKey}, dev.commands)
			require.Equal(t, []uint32{1}, dev.versions, "MSG_KEY_REQ message version")
			require.Len(t, dev.requests, 1)
			require.Equal(t, c.want, dev.requests[0])
		})
	}
}

func TestDeriveKeyRefusesWhatLinuxCannotCarry(t *testing.T) {
	dev := &keyDevice{}
	d := keyDeriverOn(dev)
	for name, req := range map[string]snp.DerivedKeyRequest{
		"launch mitigation vector": {Root: snp.RootVCEK, Fields: snp.FieldMeasurement | snp.FieldLaunchMitVector, LaunchMitVector: 1},
		"reserved field bit":       {Root: snp.RootVCEK, Fields: 1 << 7},
		"no root":                  {Fields: snp.FieldMeasurement},
		"KEY_SEL 3":                {Root: snp.RootVCEK, KeySelect: 3},
		"TCB without its field":    {Root: snp.RootVCEK, TCB: 1},
	} {
		_, err := d.DeriveKey(context.Background(), req)
		require.Error(t, err, name)
		require.Equal(t, "seal.request", attest.FailedCheck(err), name)
	}
	_, err := d.DeriveKey(context.Background(), snp.DerivedKeyRequest{Root: snp.RootVCEK, Fields: snp.FieldLaunchMitVector, LaunchMitVector: 1})
	require.ErrorIs(t, err, attest.ErrUnsupported)
	require.Empty(t, dev.commands, "nothing was sent")
}

func TestDeriveKeyFirmwareError(t *testing.T) {
	dev := &keyDevice{fwErr: 0x16} // INVALID_PARAM: a TCB above the committed one
	_, err := keyDeriverOn(dev).DeriveKey(context.Background(), snp.DerivedKeyRequest{Root: snp.RootVCEK, Fields: snp.FieldTCBVersion | snp.FieldMeasurement, TCB: ^uint64(0)})
	atlstest.RequireCheck(t, err, attest.ErrConfig, "seal.derive")
	var fw *abi.SevFirmwareErr
	require.ErrorAs(t, err, &fw)
	require.EqualValues(t, 0x16, fw.Status)
}

func TestKeyDeriverGuestFields(t *testing.T) {
	report := hwReport(t, ccKey(t), 3, hwMilanFMS, hwReportData(7))
	copy(report[0x90:0xC0], bytes.Repeat([]byte{0x4d}, 48))
	report[0x04] = 5 // GUEST_SVN
	dev := &keyDevice{report: report}
	d := keyDeriverOn(dev)
	g, err := d.GuestFields(context.Background())
	require.NoError(t, err)
	require.Equal(t, [48]byte(bytes.Repeat([]byte{0x4d}, 48)), g.Measurement)
	require.EqualValues(t, 5, g.GuestSVN)
	require.EqualValues(t, 1<<17|1<<16, g.GuestPolicy)
	require.Equal(t, []uintptr{labi.IocSnpGetReport}, dev.commands)

	require.NoError(t, d.Close())
	_, err = d.DeriveKey(context.Background(), snp.DerivedKeyRequest{Root: snp.RootVCEK, Fields: snp.FieldMeasurement})
	atlstest.RequireCheck(t, err, attest.ErrConfig, "seal.derive")
}
