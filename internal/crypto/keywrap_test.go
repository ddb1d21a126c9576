package crypto

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/internal/secret"
)

// kwpVectors is testdata/kwp_vectors.json: the RFC 5649 §6 examples and
// NIST CAVP KWP records (see its "comment" for the sources). Every valid
// record was also checked against `openssl enc -id-aesN-wrap-pad` when the
// file was written.
type kwpVectors struct {
	Valid []struct {
		Source  string   `json:"source"`
		KEK     hexBytes `json:"kek"`
		KeyData hexBytes `json:"key_data"`
		Wrapped hexBytes `json:"wrapped"`
	} `json:"valid"`
	Invalid []struct {
		Source  string   `json:"source"`
		KEK     hexBytes `json:"kek"`
		Wrapped hexBytes `json:"wrapped"`
	} `json:"invalid"`
}

func TestKeyWrapPaddedVectors(t *testing.T) {
	var v kwpVectors
	readVectors(t, "kwp_vectors.json", &v)
	if len(v.Valid) < 26 || len(v.Invalid) < 12 {
		t.Fatalf("kwp_vectors.json: %d valid and %d invalid records, want 26 and 12", len(v.Valid), len(v.Invalid))
	}
	for _, tv := range v.Valid {
		t.Run(tv.Source, func(t *testing.T) {
			kek := secret.Copy(tv.KEK)
			got, err := WrapKeyPadded(kek, tv.KeyData)
			if err != nil || !bytes.Equal(got, tv.Wrapped) {
				t.Errorf("WrapKeyPadded = %x, %v, want %x", got, err, []byte(tv.Wrapped))
			}
			m, err := UnwrapKeyPadded(kek, tv.Wrapped)
			if err != nil || !bytes.Equal(m.Expose(), tv.KeyData) {
				t.Errorf("UnwrapKeyPadded = %x, %v, want %x", m.Expose(), err, []byte(tv.KeyData))
			}
		})
	}
	for _, tv := range v.Invalid {
		t.Run(tv.Source, func(t *testing.T) {
			if m, err := UnwrapKeyPadded(secret.Copy(tv.KEK), tv.Wrapped); err != ErrUnwrap {
				t.Errorf("UnwrapKeyPadded = %x, %v, want ErrUnwrap", m.Expose(), err)
			}
		})
	}
}

func TestKeyWrapPaddedRoundTrip(t *testing.T) {
	for _, kl := range []int{16, 24, 32} {
		kek := secret.New(Random(kl))
		for n := 1; n <= 70; n++ {
			p := Random(n)
			w, err := WrapKeyPadded(kek, p)
			if err != nil {
				t.Fatalf("WrapKeyPadded(AES-%d, %d bytes) = %v", 8*kl, n, err)
			}
			if want := 8 * ((n+7)/8 + 1); len(w) != want {
				t.Errorf("WrapKeyPadded(%d bytes) is %d bytes, want %d", n, len(w), want)
			}
			m, err := UnwrapKeyPadded(kek, w)
			if err != nil || !bytes.Equal(m.Expose(), p) {
				t.Errorf("UnwrapKeyPadded(AES-%d, %d bytes) = %x, %v, want %x", 8*kl, n, m.Expose(), err, p)
			}
		}
	}
}

func TestUnwrapKeyPaddedRejects(t *testing.T) {
	kek := secret.New(Random(32))
	for _, n := range []int{7, 8, 9, 20, 32, 33} {
		w, err := WrapKeyPadded(kek, Random(n))
		if err != nil {
			t.Fatal(err)
		}
		// Every single flipped bit, in the AIV half as in the key data.
		for i := range 8 * len(w) {
			f := bytes.Clone(w)
			f[i/8] ^= 1 << (i % 8)
			if _, err := UnwrapKeyPadded(kek, f); err != ErrUnwrap {
				t.Fatalf("%d bytes, bit %d flipped: UnwrapKeyPadded = %v, want ErrUnwrap", n, i, err)
			}
		}
		for _, bad := range [][]byte{w[:len(w)-8], w[:len(w)-1], append(bytes.Clone(w), 0), append(bytes.Clone(w), make([]byte, 8)...), w[8:]} {
			if _, err := UnwrapKeyPadded(kek, bad); err != ErrUnwrap {
				t.Errorf("%d bytes, wrapped resized to %d: UnwrapKeyPadded = %v, want ErrUnwrap", n, len(bad), err)
			}
		}
		if _, err := UnwrapKeyPadded(secret.New(Random(32)), w); err != ErrUnwrap {
			t.Errorf("%d bytes, another kek: UnwrapKeyPadded = %v, want ErrUnwrap", n, err)
		}
	}
	for _, l := range []int{0, 8, 15, 17, 23} {
		if _, err := UnwrapKeyPadded(kek, make([]byte, l)); err != ErrUnwrap {
			t.Errorf("UnwrapKeyPadded(%d bytes) = %v, want ErrUnwrap", l, err)
		}
	}
	if !errors.Is(ErrUnwrap, ErrDecrypt) {
		t.Errorf("ErrUnwrap does not wrap ErrDecrypt")
	}
}

// TestUnwrapKeyPaddedChecks seals hand-made A || R values with the real
// permutation, so each RFC 5649 check fails alone.
func TestUnwrapKeyPaddedChecks(t *testing.T) {
	kek := secret.New(Random(16))
	b, err := aes.NewCipher(kek.Expose())
	if err != nil {
		t.Fatal(err)
	}
	seal := func(aiv uint32, mli uint32, data []byte) []byte {
		buf := make([]byte, 8+len(data))
		binary.BigEndian.PutUint32(buf[0:4], aiv)
		binary.BigEndian.PutUint32(buf[4:8], mli)
		copy(buf[8:], data)
		kwpSeal(b, buf)
		return buf
	}
	const aiv = 0xa65959a6
	data8 := []byte{1, 2, 3, 4, 5, 6, 7, 0}
	data16 := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0, 0, 0}
	tests := []struct {
		name    string
		wrapped []byte
		want    []byte // nil: ErrUnwrap
	}{
		{"good n=1", seal(aiv, 7, data8), data8[:7]},
		{"good n=2", seal(aiv, 13, data16), data16[:13]},
		{"good full n=1", seal(aiv, 8, data8), data8},
		{"good full n=2", seal(aiv, 16, data16), data16},
		{"other AIV n=1", seal(0xa65959a7, 7, data8), nil},
		{"RFC 3394 IV n=2", seal(0xa6a6a6a6, 13, data16), nil},
		{"MLI 0", seal(aiv, 0, data8), nil},
		{"MLI 9 for n=1", seal(aiv, 9, data8), nil},
		{"MLI 8 for n=2", seal(aiv, 8, data16), nil},
		{"MLI 17 for n=2", seal(aiv, 17, data16), nil},
		{"MLI 2^32-1", seal(aiv, 0xffffffff, data16), nil},
		{"non-zero padding n=1", seal(aiv, 6, data8), nil},
		{"non-zero padding n=2", seal(aiv, 12, data16), nil},
		{"last padding byte non-zero", seal(aiv, 13, append(bytes.Clone(data16[:15]), 0x80)), nil},
	}
	for _, tt := range tests {
		m, err := UnwrapKeyPadded(kek, tt.wrapped)
		if tt.want == nil {
			if err != ErrUnwrap {
				t.Errorf("%s: UnwrapKeyPadded = %x, %v, want ErrUnwrap", tt.name, m.Expose(), err)
			}
			continue
		}
		if err != nil || !bytes.Equal(m.Expose(), tt.want) {
			t.Errorf("%s: UnwrapKeyPadded = %x, %v, want %x", tt.name, m.Expose(), err, tt.want)
		}
	}
}

func TestKeyWrapPaddedArguments(t *testing.T) {
	for _, kl := range []int{0, 15, 20, 33, 64} {
		kek := secret.New(make([]byte, kl))
		if _, err := WrapKeyPadded(kek, []byte("key")); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("WrapKeyPadded(%d-byte kek) = %v, want ErrInvalidKey", kl, err)
		}
		if _, err := UnwrapKeyPadded(kek, make([]byte, 16)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("UnwrapKeyPadded(%d-byte kek) = %v, want ErrInvalidKey", kl, err)
		}
	}
	if _, err := WrapKeyPadded(secret.New(make([]byte, 16)), nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("WrapKeyPadded(empty) = %v, want ErrInvalidKey", err)
	}
}

// FuzzUnwrapKeyPadded: any input either fails with ErrUnwrap or unwraps to
// key data that wraps back to exactly the input.
func FuzzUnwrapKeyPadded(f *testing.F) {
	kek := secret.Copy(mustHex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"))
	f.Add([]byte{}) // and testdata/fuzz/FuzzUnwrapKeyPadded: the RFC 5649 vectors, mangled
	f.Fuzz(func(t *testing.T, wrapped []byte) {
		m, err := UnwrapKeyPadded(kek, wrapped)
		if err != nil {
			if err != ErrUnwrap {
				t.Fatalf("UnwrapKeyPadded = %v, want ErrUnwrap", err)
			}
			return
		}
		w, err := WrapKeyPadded(kek, m.Expose())
		if err != nil || !bytes.Equal(w, wrapped) {
			t.Fatalf("WrapKeyPadded(UnwrapKeyPadded(%x)) = %x, %v", wrapped, w, err)
		}
	})
}
