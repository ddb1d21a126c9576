package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/internal/secret"
)

// kcvVectors are key check values computed by OpenSSL 3.0 (`openssl mac
// -cipher AES-<bits>-CBC -macopt hexkey:<key> CMAC` and `openssl mac
// -digest SHA256 -macopt hexkey:<key> HMAC`, each over 16 zero bytes,
// first 6 hex digits), for the AES keys of RFC 4493 and SP 800-38B
// (AES-128, AES-256) and two 32-byte keys. TestKCVMatchesOpenSSL
// recomputes them with openssl where it is installed.
var kcvVectors = []struct {
	key, cmac, hmac string
}{
	{"2b7e151628aed2a6abf7158809cf4f3c", "7AD386", "1B2842"},
	{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "1A0B2D", "377F34"},
	{"0000000000000000000000000000000000000000000000000000000000000000", "921105", "853C74"},
	{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "377822", "FF9212"},
}

// TestKCVPublishedExample checks KCVCMAC against a KCV published with a
// key: ANSI X9.143:2021 §8.6, a TR-31 key block under an AES-256 KBPK whose
// optional block "KP10012331550BC9" gives the KBPK's KCV, algorithm 01
// (CMAC, ANSI X9.24-1), as 5 bytes 2331550BC9. The example is reproduced
// in the public test suite of openemv/tr31 (test/tr31_decrypt_test.c,
// test18_kbpk and test18_kcv_kbpk_verify). dcaas reports the first 3.
func TestKCVPublishedExample(t *testing.T) {
	kbpk := secret.New(mustHex("88e1ab2a2e3dd38c1fa039a536500cc8a87ab9d62dc92c01058fa79f44657de6"))
	if got, err := KCVCMAC(kbpk); err != nil || got != "233155" {
		t.Errorf("KCVCMAC(X9.143 §8.6 KBPK) = %q, %v, want 233155 (KP block 2331550BC9)", got, err)
	}
	m, err := NewCMAC(kbpk)
	if err != nil {
		t.Fatal(err)
	}
	if tag := m.Sum(make([]byte, 16)); fmt.Sprintf("%X", tag[:5]) != "2331550BC9" {
		t.Errorf("CMAC(KBPK, zero block) = %X, want the published 5-byte KCV 2331550BC9", tag[:5])
	}
}

func TestKCVVectors(t *testing.T) {
	for _, v := range kcvVectors {
		t.Run(v.key[:8], func(t *testing.T) {
			key := secret.New(mustHex(v.key))
			if got, err := KCVCMAC(key); err != nil || got != v.cmac {
				t.Errorf("KCVCMAC(%s) = %q, %v, want %q", v.key, got, err, v.cmac)
			}
			if got, err := KCVHMACSHA256(key); err != nil || got != v.hmac {
				t.Errorf("KCVHMACSHA256(%s) = %q, %v, want %q", v.key, got, err, v.hmac)
			}
		})
	}
}

// TestKCVIsCMACOfZeroBlock ties KCVCMAC to the CMAC it is defined by.
func TestKCVIsCMACOfZeroBlock(t *testing.T) {
	key := secret.New(Random(32))
	m, err := NewCMAC(key)
	if err != nil {
		t.Fatal(err)
	}
	tag := m.Sum(make([]byte, 16))
	got, err := KCVCMAC(key)
	if want := fmt.Sprintf("%X", tag[:3]); err != nil || got != want {
		t.Errorf("KCVCMAC = %q, %v, want %q", got, err, want)
	}
}

func TestKCVRefusesBadKeys(t *testing.T) {
	for _, n := range []int{0, 1, 15, 33} {
		if _, err := KCVCMAC(secret.New(make([]byte, n))); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("KCVCMAC(%d bytes) = %v, want ErrInvalidKey", n, err)
		}
	}
	if _, err := KCVHMACSHA256(secret.New(nil)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("KCVHMACSHA256(empty) = %v, want ErrInvalidKey", err)
	}
}

// TestKCVMatchesOpenSSL recomputes the vectors and random keys' KCVs
// with OpenSSL, when openssl is installed.
func TestKCVMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	keys := []string{fmt.Sprintf("%x", Random(32)), fmt.Sprintf("%x", Random(16))}
	for _, v := range kcvVectors {
		keys = append(keys, v.key)
	}
	for _, k := range keys {
		key := secret.New(mustHex(k))
		cmac, err := KCVCMAC(key)
		if err != nil {
			t.Fatal(err)
		}
		hm, err := KCVHMACSHA256(key)
		if err != nil {
			t.Fatal(err)
		}
		if want := opensslMAC(t, "-cipher", fmt.Sprintf("AES-%d-CBC", len(k)*4), "-macopt", "hexkey:"+k, "CMAC"); cmac != want[:6] {
			t.Errorf("KCVCMAC(%s) = %s, OpenSSL %s", k, cmac, want[:6])
		}
		if want := opensslMAC(t, "-digest", "SHA256", "-macopt", "hexkey:"+k, "HMAC"); hm != want[:6] {
			t.Errorf("KCVHMACSHA256(%s) = %s, OpenSSL %s", k, hm, want[:6])
		}
	}
}

// opensslMAC runs `openssl mac args...` over 16 zero bytes and returns its
// upper-case hex output.
func opensslMAC(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("openssl", append([]string{"mac"}, args...)...)
	cmd.Stdin = bytes.NewReader(make([]byte, 16))
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("openssl mac %v: %v", args, err)
	}
	return strings.ToUpper(strings.TrimSpace(string(out)))
}

func TestXORComponents(t *testing.T) {
	a := mustHex("0123456789abcdef0123456789abcdef")
	b := mustHex("fedcba9876543210fedcba9876543210")
	c := mustHex("00ff00ff00ff00ff00ff00ff00ff00ff")
	tests := []struct {
		name  string
		parts [][]byte
		want  string // hex; "" for an error
	}{
		{"two", [][]byte{a, b}, "ffffffffffffffffffffffffffffffff"},
		{"three", [][]byte{a, b, c}, "ff00ff00ff00ff00ff00ff00ff00ff00"},
		{"self cancels", [][]byte{a, a}, "00000000000000000000000000000000"},
		{"one", [][]byte{a}, ""},
		{"none", nil, ""},
		{"lengths differ", [][]byte{a, b[:15]}, ""},
		{"empty", [][]byte{{}, {}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts := make([]*secret.Bytes, len(tt.parts))
			for i, p := range tt.parts {
				parts[i] = secret.Copy(p)
			}
			got, err := XORComponents(parts)
			if tt.want == "" {
				if !errors.Is(err, ErrInvalidKey) {
					t.Errorf("XORComponents = %v, want ErrInvalidKey", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%x", got.Expose()) != tt.want {
				t.Errorf("XORComponents = %x, want %s", got.Expose(), tt.want)
			}
			if !bytes.Equal(parts[0].Expose(), tt.parts[0]) {
				t.Error("XORComponents changed a component")
			}
		})
	}
}

// TestKCVPrefix: the two KCV methods TR-31's KC and KP blocks name, against
// published values: CMAC, the X9.143 §8.6 KBPK's 5-byte KP value; legacy,
// the zero block encrypted under the all-zero AES-128 key, whose result
// 66E94BD4EF8A2C3B884CFA59CA342B2E is the AES known answer every
// implementation checks (FIPS-197 test sets, OpenSSL's `enc -aes-128-ecb`).
func TestKCVPrefix(t *testing.T) {
	kbpk := secret.New(mustHex("88e1ab2a2e3dd38c1fa039a536500cc8a87ab9d62dc92c01058fa79f44657de6"))
	zero := secret.New(make([]byte, 16))
	for _, c := range []struct {
		name string
		key  *secret.Bytes
		kcv  string
		cmac bool
		want bool
	}{
		{"cmac 5 bytes", kbpk, "2331550BC9", true, true},
		{"cmac 3 bytes", kbpk, "233155", true, true},
		{"cmac 1 byte", kbpk, "23", true, true},
		{"cmac other", kbpk, "2331550BC8", true, false},
		{"cmac value by the legacy method", kbpk, "2331550BC9", false, false},
		{"legacy 3 bytes", zero, "66E94B", false, true},
		{"legacy 16 bytes", zero, "66E94BD4EF8A2C3B884CFA59CA342B2E", false, true},
		{"legacy other", zero, "66E94C", false, false},
	} {
		got, err := KCVPrefix(c.key, mustHex(c.kcv), c.cmac)
		if err != nil || got != c.want {
			t.Errorf("%s: KCVPrefix = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, 17)} {
		if _, err := KCVPrefix(kbpk, bad, true); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("KCVPrefix(%d bytes) = %v, want ErrInvalidKey", len(bad), err)
		}
	}
	if _, err := KCVPrefix(secret.New(make([]byte, 20)), []byte{1}, false); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("KCVPrefix(a 20-byte key) = %v, want ErrInvalidKey", err)
	}
}
