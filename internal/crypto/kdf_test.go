package crypto

import (
	"bytes"
	"testing"

	"github.com/dcaas/dcaas/internal/secret"
)

func TestHKDF(t *testing.T) {
	// RFC 5869 appendix A.1 and A.3.
	tests := []struct {
		name            string
		ikm, salt, info []byte
		n               int
		want            []byte
	}{
		{"A.1", bytes.Repeat([]byte{0x0b}, 22), mustHex("000102030405060708090a0b0c"), mustHex("f0f1f2f3f4f5f6f7f8f9"), 42,
			mustHex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")},
		{"A.3", bytes.Repeat([]byte{0x0b}, 22), nil, nil, 42,
			mustHex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HKDF(secret.Copy(tt.ikm), tt.salt, tt.info, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Expose(), tt.want) {
				t.Errorf("HKDF = %x, want %x", got.Expose(), tt.want)
			}
		})
	}
	for _, n := range []int{0, -1, 255*32 + 1} {
		if _, err := HKDF(secret.New(make([]byte, 32)), nil, nil, n); err == nil {
			t.Errorf("HKDF(n=%d) = nil error", n)
		}
	}
}

func TestPBKDF2(t *testing.T) {
	// RFC 7914 §11, the PBKDF2-HMAC-SHA256 vectors.
	tests := []struct {
		name       string
		pass, salt string
		iterations int
		want       []byte
	}{
		{"c=1", "passwd", "salt", 1,
			mustHex("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783")},
		{"c=80000", "Password", "NaCl", 80000,
			mustHex("4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PBKDF2(secret.Copy([]byte(tt.pass)), []byte(tt.salt), tt.iterations, len(tt.want))
			if err != nil {
				t.Fatal(err)
			}
			defer got.Wipe()
			if !bytes.Equal(got.Expose(), tt.want) {
				t.Errorf("PBKDF2 = %x, want %x", got.Expose(), tt.want)
			}
		})
	}
}
