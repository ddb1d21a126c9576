package tr31

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/internal/secret"
)

// A published block (TR-31:2018 A.7.4) to break one field at a time.
const a74 = "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34"

// set returns a74 with s written at offset i.
func set(i int, s string) string { return a74[:i] + s + a74[i+len(s):] }

// TestParseRefuses checks each refusal names the field and wraps the right
// sentinel.
func TestParseRefuses(t *testing.T) {
	for _, c := range []struct {
		name, block, field string
		want               error
	}{
		{"empty", "", "header", ErrFormat},
		{"short header", "D0016P0AE00E00", "header", ErrFormat},
		{"version B", set(0, "B"), "version ID", ErrUnsupported},
		{"version lower case d", set(0, "d"), "version ID", ErrUnsupported},
		{"length not digits", set(1, "01A2"), "key block length", ErrFormat},
		{"length too long", set(1, "0128"), "key block length", ErrFormat},
		{"length too short", set(1, "0096"), "key block length", ErrFormat},
		{"unknown key usage", set(5, "Z9"), "key usage", ErrFormat},
		{"key usage lower case", set(5, "d0"), "key usage", ErrFormat},
		{"unknown algorithm", set(7, "Q"), "algorithm", ErrFormat},
		{"unknown mode of use", set(8, "A"), "mode of use", ErrFormat},
		{"key version not alphanumeric", set(9, "0-"), "key version number", ErrFormat},
		{"component c0", set(9, "c0"), "key version number", ErrFormat},
		{"unknown exportability", set(11, "X"), "exportability", ErrFormat},
		{"blocks count not digits", set(12, "0A"), "number of optional blocks", ErrFormat},
		{"unknown key context", set(14, "3"), "key context", ErrFormat},
		{"reserved not zero", set(15, "1"), "reserved field", ErrFormat},
		{"lower-case hex key data", set(16, "b"), "key data", ErrFormat},
		{"non-hex key data", set(16, "G"), "key data", ErrFormat},
		{"optional block count too high", set(12, "01"), "optional blocks", ErrFormat},
		{"key data not whole blocks", "D0064P0AE00E0000" + strings.Repeat("0", 48), "key data", ErrFormat},
		{"optional block length not hex", "D0080P0AE00E0100KSZZ" + strings.Repeat("0", 60), "optional block KS", ErrFormat},
		{"optional block shorter than its head", "D0080P0AE00E0100KS03" + strings.Repeat("0", 60), "optional block KS", ErrFormat},
		{"optional block past the end", "D0032P0AE00E0100KSFF000000000000", "optional block KS", ErrFormat},
		{"extended length of length not 04", "D0080P0AE00E0100KS000210" + strings.Repeat("0", 56), "optional block KS", ErrFormat},
		{"optional block ID not alphanumeric", "D0080P0AE00E0100K#08" + strings.Repeat("0", 60), "optional block ID", ErrFormat},
		{"optional block data not printable", "D0080P0AE00E0100LB0C\x01\x02\x03\x04\x05\x06\x07\x08" + strings.Repeat("0", 52), "optional block LB", ErrFormat},
		{"HM not hex", "D0080P0AE00E0200HM06ZZPB0600" + strings.Repeat("0", 52), "optional block HM", ErrFormat},
		{"PB not last", "D0080P0AE00E0200PB0600HM0621" + strings.Repeat("0", 52), "optional block PB", ErrFormat},
		{"header not whole blocks", "D0088P0AE00E0100LB0800000" + strings.Repeat("0", 63), "optional blocks", ErrFormat},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.block))
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, c.want) {
				t.Fatalf("Parse = %v, want a *FieldError wrapping %v", err, c.want)
			}
			if fe.Field != c.field {
				t.Fatalf("Parse refuses field %q (%v), want %q", fe.Field, err, c.field)
			}
		})
	}
}

func TestUnwrapRefusesKBPK(t *testing.T) {
	for _, n := range []int{0, 8, 15, 33} {
		if _, _, err := Unwrap(secret.New(make([]byte, n)), []byte(a74)); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Unwrap with a %d-byte KBPK = %v, want ErrUnsupported", n, err)
		}
	}
}

// TestWrapHeaders builds the headers dcaas exports (internal/kms) under
// each KBPK size, and checks what Parse reads back and that a padding
// block appears exactly when the optional blocks need one.
func TestWrapHeaders(t *testing.T) {
	key := secret.New(bytes.Repeat([]byte{0x5a}, 32))
	for _, c := range []struct {
		name   string
		h      Header
		prefix string
	}{
		{"AES data key", Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E', KeyContext: '0'}, "D0144D0AB00E0000"},
		{"HMAC key with HM", Header{Version: 'D', KeyUsage: "M7", Algorithm: 'H', ModeOfUse: 'C', KeyVersion: "00", Exportability: 'N', KeyContext: '0',
			Blocks: []Block{{ID: "HM", Data: "21"}}}, "D0160M7HC00N0200HM0621PB0A000000"},
		{"KBPK with a stale PB", Header{Version: 'D', KeyUsage: "K1", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "01", Exportability: 'S', KeyContext: '2',
			Blocks: []Block{{ID: "PB", Data: "0000000000000000000"}}}, "D0144K1AB01S0020"},
	} {
		for _, n := range []int{16, 24, 32} {
			kbpk := secret.New(bytes.Repeat([]byte{byte(n)}, n))
			block, err := Wrap(kbpk, c.h, key)
			if err != nil {
				t.Fatalf("%s: Wrap = %v", c.name, err)
			}
			if !strings.HasPrefix(string(block), c.prefix) {
				t.Fatalf("%s: Wrap = %s, want it to start with %s", c.name, block, c.prefix)
			}
			h, got, err := Unwrap(kbpk, block)
			if err != nil || !got.Equal(key) {
				t.Fatalf("%s: Unwrap(Wrap) = %v", c.name, err)
			}
			if h.KeyUsage != c.h.KeyUsage || h.ModeOfUse != c.h.ModeOfUse || h.Exportability != c.h.Exportability || h.KeyContext != c.h.KeyContext {
				t.Fatalf("%s: header read back %+v, want %+v", c.name, h, c.h)
			}
		}
	}
	bad := Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'Q', KeyContext: '0'}
	if _, err := Wrap(secret.New(make([]byte, 32)), bad, key); !errors.Is(err, ErrFormat) {
		t.Fatalf("Wrap with exportability Q = %v, want ErrFormat", err)
	}
}

// TestWrapKeyLengths wraps AES-128/192/256 keys and HMAC keys of other
// lengths and checks the block's length field (header, key data of
// 2 + key bytes rounded up to 16, MAC, in hex) and the key read back.
func TestWrapKeyLengths(t *testing.T) {
	kbpk := secret.New(bytes.Repeat([]byte{7}, 32))
	for _, c := range []struct {
		name string
		h    Header
		n    int
	}{
		{"AES-128", Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E', KeyContext: '0'}, 16},
		{"AES-192", Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E', KeyContext: '0'}, 24},
		{"AES-256", Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E', KeyContext: '0'}, 32},
		{"HMAC 20 bytes", Header{Version: 'D', KeyUsage: "M7", Algorithm: 'H', ModeOfUse: 'C', KeyVersion: "00", Exportability: 'E', KeyContext: '0', Blocks: []Block{{ID: "HM", Data: "10"}}}, 20},
		{"HMAC 64 bytes", Header{Version: 'D', KeyUsage: "M7", Algorithm: 'H', ModeOfUse: 'C', KeyVersion: "00", Exportability: 'E', KeyContext: '0', Blocks: []Block{{ID: "HM", Data: "22"}}}, 64},
		{"HMAC 128 bytes", Header{Version: 'D', KeyUsage: "M7", Algorithm: 'H', ModeOfUse: 'C', KeyVersion: "00", Exportability: 'E', KeyContext: '0', Blocks: []Block{{ID: "HM", Data: "23"}}}, 128},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := secret.New(bytes.Repeat([]byte{0xc3}, c.n))
			block, err := Wrap(kbpk, c.h, key)
			if err != nil {
				t.Fatal(err)
			}
			hlen := 16
			if len(c.h.Blocks) > 0 {
				hlen = 32 // HMxx and a PB fill one more AES block
			}
			want := hlen + 2*((2+c.n+15)/16*16) + 32
			if len(block) != want || string(block[1:5]) != fmt.Sprintf("%04d", want) {
				t.Fatalf("block of a %d-byte key is %d characters (field %s), want %d", c.n, len(block), block[1:5], want)
			}
			_, got, err := Unwrap(kbpk, block)
			if err != nil || !got.Equal(key) {
				t.Fatalf("Unwrap = %v", err)
			}
		})
	}
}
