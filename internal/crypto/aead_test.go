package crypto

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

func newTestAEAD(t testing.TB) *AEAD {
	t.Helper()
	a, err := NewAEAD(secret.New(Random(AEADKeySize)))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestNewAEADKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if _, err := NewAEAD(secret.New(make([]byte, n))); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("NewAEAD(%d bytes) = %v, want ErrInvalidKey", n, err)
		}
	}
	if _, err := NewAEAD(nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("NewAEAD(nil) = %v, want ErrInvalidKey", err)
	}
}

func TestAEADSealOpen(t *testing.T) {
	a, other := newTestAEAD(t), newTestAEAD(t)
	for _, n := range []int{0, 1, 32, 1000} {
		pt, aad := Random(n), []byte("aad")
		sealed := a.Seal([]byte("dst"), pt, aad)
		if !bytes.HasPrefix(sealed, []byte("dst")) || len(sealed) != 3+n+AEADOverhead {
			t.Fatalf("Seal(%d bytes): len %d, want %d with dst prefix", n, len(sealed), 3+n+AEADOverhead)
		}
		sealed = sealed[3:]
		got, err := a.Open(nil, sealed, aad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Open(Seal(%d bytes)) = %x, %v", n, got, err)
		}
		if again := a.Seal(nil, pt, aad); bytes.Equal(again[:12], sealed[:12]) {
			t.Errorf("two Seal calls used the same nonce")
		}
		bad := [][]byte{sealed[:len(sealed)-1], sealed[:AEADOverhead-1], nil}
		for i := range sealed {
			b := bytes.Clone(sealed)
			b[i] ^= 0x80
			bad = append(bad, b)
		}
		for _, b := range bad {
			if _, err := a.Open(nil, b, aad); err != ErrDecrypt {
				t.Fatalf("Open(tampered) = %v, want ErrDecrypt", err)
			}
		}
		if _, err := a.Open(nil, sealed, []byte("aae")); err != ErrDecrypt {
			t.Errorf("Open(wrong aad) = %v, want ErrDecrypt", err)
		}
		if _, err := other.Open(nil, sealed, aad); err != ErrDecrypt {
			t.Errorf("Open(wrong key) = %v, want ErrDecrypt", err)
		}
	}
}

func TestEncryptDecryptMessage(t *testing.T) {
	a := newTestAEAD(t)
	pt, aad := []byte("card 4111 1111 1111 1111"), []byte("tenant=acme")
	raw, err := a.EncryptMessage(nil, "key_abc", 7, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := format.ParseCiphertext(raw)
	if err != nil {
		t.Fatalf("ParseCiphertext = %v", err)
	}
	if ct.KeyID != "key_abc" || ct.KeyVersion != 7 || len(ct.Sealed) != len(pt)+AEADOverhead {
		t.Fatalf("ciphertext = %+v", ct)
	}
	got, err := a.DecryptMessage([]byte("x"), ct, aad)
	if err != nil || string(got) != "x"+string(pt) {
		t.Fatalf("DecryptMessage = %q, %v", got, err)
	}
	// The header is authenticated: the same sealed bytes under another key id
	// or version, or other aad, do not open.
	tests := []struct {
		name string
		ct   *format.Ciphertext
		aad  []byte
	}{
		{"other key id", &format.Ciphertext{KeyID: "key_abd", KeyVersion: 7, Sealed: ct.Sealed}, aad},
		{"other version", &format.Ciphertext{KeyID: "key_abc", KeyVersion: 8, Sealed: ct.Sealed}, aad},
		{"other aad", ct, []byte("tenant=acmf")},
		{"no aad", ct, nil},
		{"aad extended", ct, append(bytes.Clone(aad), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := a.DecryptMessage(nil, tt.ct, tt.aad); err != ErrDecrypt {
				t.Errorf("DecryptMessage = %v, want ErrDecrypt", err)
			}
		})
	}
	if _, err := a.DecryptMessage(nil, &format.Ciphertext{KeyID: "k", KeyVersion: 1}, nil); !errors.Is(err, format.ErrMalformed) {
		t.Errorf("DecryptMessage(invalid) = %v, want ErrMalformed", err)
	}
}

func TestEncryptMessageInvalidKey(t *testing.T) {
	a := newTestAEAD(t)
	for _, c := range []struct {
		id string
		v  uint32
	}{{"", 1}, {"k", 0}, {strings.Repeat("k", 129), 1}, {"\xff", 1}} {
		if _, err := a.EncryptMessage(nil, c.id, c.v, nil, nil); !errors.Is(err, format.ErrMalformed) {
			t.Errorf("EncryptMessage(%q, %d) = %v, want ErrMalformed", c.id, c.v, err)
		}
	}
}

type messageVector struct {
	Key        hexBytes `json:"key"`
	KeyID      string   `json:"key_id"`
	Version    uint32   `json:"version"`
	AAD        hexBytes `json:"aad"`
	Plaintext  hexBytes `json:"plaintext"`
	Ciphertext hexBytes `json:"ciphertext"`
}

func makeMessageVectors(t *testing.T) []messageVector {
	var vs []messageVector
	for _, c := range []struct {
		pt, aad string
	}{{"", ""}, {"hello, dcaas", ""}, {"4111111111111111", "tenant=acme;purpose=pan"}} {
		v := messageVector{Key: Random(AEADKeySize), KeyID: RandomID("key_"), Version: 2, AAD: []byte(c.aad), Plaintext: []byte(c.pt)}
		a, err := NewAEAD(secret.Copy(v.Key))
		if err != nil {
			t.Fatal(err)
		}
		if v.Ciphertext, err = a.EncryptMessage(nil, v.KeyID, v.Version, v.Plaintext, v.AAD); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

// TestMessageVectors decrypts fixed ciphertexts: they must keep decrypting
// forever, through both AEAD.DecryptMessage and Key.Decrypt.
func TestMessageVectors(t *testing.T) {
	var vs []messageVector
	readVectors(t, "message_vectors.json", &vs)
	for _, v := range vs {
		a, err := NewAEAD(secret.Copy(v.Key))
		if err != nil {
			t.Fatal(err)
		}
		ct, err := format.ParseCiphertext(v.Ciphertext)
		if err != nil {
			t.Fatalf("ParseCiphertext = %v", err)
		}
		got, err := a.DecryptMessage(nil, ct, v.AAD)
		if err != nil || !bytes.Equal(got, v.Plaintext) {
			t.Errorf("DecryptMessage = %x, %v; want %x", got, err, v.Plaintext)
		}
		k, err := NewKey("aes-256-gcm", v.KeyID, v.Version, secret.Copy(v.Key))
		if err != nil {
			t.Fatal(err)
		}
		got, err = k.Decrypt(nil, v.Ciphertext, v.AAD)
		if err != nil || !bytes.Equal(got, v.Plaintext) {
			t.Errorf("Key.Decrypt = %x, %v; want %x", got, err, v.Plaintext)
		}
	}
}

func BenchmarkAEAD(b *testing.B) {
	a := newTestAEAD(b)
	pt, aad := Random(1024), []byte("tenant=acme")
	dst := make([]byte, 0, 2048)
	b.Run("EncryptMessage-1KiB", func(b *testing.B) {
		b.SetBytes(int64(len(pt)))
		b.ReportAllocs()
		for b.Loop() {
			dst, _ = a.EncryptMessage(dst[:0], "key_abcdefghijklmnopqrstuvwxyz", 1, pt, aad)
		}
	})
	raw, _ := a.EncryptMessage(nil, "key_abcdefghijklmnopqrstuvwxyz", 1, pt, aad)
	b.Run("ParseDecryptMessage-1KiB", func(b *testing.B) {
		b.SetBytes(int64(len(pt)))
		b.ReportAllocs()
		for b.Loop() {
			ct, err := format.ParseCiphertext(raw)
			if err != nil {
				b.Fatal(err)
			}
			if dst, err = a.DecryptMessage(dst[:0], ct, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
}
