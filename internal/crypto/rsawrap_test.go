package crypto

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/internal/secret"
)

// importKey is one RSA-4096 import key for the whole test binary: making
// one takes a second or more.
var importKey = sync.OnceValues(GenerateImportRSAKey)

func testImportKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	priv, err := importKey()
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func TestRSAAESRoundTrip(t *testing.T) {
	priv := testImportKey(t)
	if priv.N.BitLen() != ImportRSABits {
		t.Fatalf("GenerateImportRSAKey: RSA-%d, want %d", priv.N.BitLen(), ImportRSABits)
	}
	for _, n := range []int{1, 7, 8, 32, 33, 1000} {
		m := Random(n)
		w, err := WrapRSAAES(&priv.PublicKey, m)
		if err != nil {
			t.Fatalf("WrapRSAAES(%d bytes) = %v", n, err)
		}
		if want := priv.Size() + 8*((n+7)/8+1); len(w) != want {
			t.Errorf("WrapRSAAES(%d bytes) is %d bytes, want %d", n, len(w), want)
		}
		got, err := UnwrapRSAAES(priv, w)
		if err != nil || !bytes.Equal(got.Expose(), m) {
			t.Errorf("UnwrapRSAAES(%d bytes) = %x, %v, want %x", n, got.Expose(), err, m)
		}
	}
	// Two wraps of the same material differ (fresh AES key, OAEP seed).
	a, _ := WrapRSAAES(&priv.PublicKey, []byte("material"))
	b, _ := WrapRSAAES(&priv.PublicKey, []byte("material"))
	if bytes.Equal(a, b) {
		t.Errorf("two WrapRSAAES calls gave the same output")
	}
}

func TestUnwrapRSAAESRejects(t *testing.T) {
	priv := testImportKey(t)
	m := Random(32)
	w, err := WrapRSAAES(&priv.PublicKey, m)
	if err != nil {
		t.Fatal(err)
	}
	size := priv.Size()
	flip := func(i int) []byte { f := bytes.Clone(w); f[i] ^= 0x01; return f }
	other, err := rsa.GenerateKey(rand.Reader, MinWrapRSABits)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		priv    *rsa.PrivateKey
		wrapped []byte
	}{
		{"flipped first RSA byte", priv, flip(0)},
		{"flipped last RSA byte", priv, flip(size - 1)},
		{"flipped AIV", priv, flip(size)},
		{"flipped key data", priv, flip(len(w) - 1)},
		{"truncated by one", priv, w[:len(w)-1]},
		{"truncated by a semiblock", priv, w[:len(w)-8]},
		{"RSA part only", priv, w[:size]},
		{"key wrap part only", priv, w[size:]},
		{"one byte longer", priv, append(bytes.Clone(w), 0)},
		{"empty", priv, nil},
		{"another private key", other, w},
	}
	for _, tt := range tests {
		if got, err := UnwrapRSAAES(tt.priv, tt.wrapped); err != ErrUnwrap {
			t.Errorf("%s: UnwrapRSAAES = %x, %v, want ErrUnwrap", tt.name, got.Expose(), err)
		}
	}
	// An OAEP-valid AES key of the wrong size fails like everything else.
	ek, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &priv.PublicKey, Random(16), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnwrapRSAAES(priv, append(ek, w[size:]...)); err != ErrUnwrap {
		t.Errorf("AES-128 one-time key: UnwrapRSAAES = %v, want ErrUnwrap", err)
	}
}

func TestRSAAESKeySizes(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WrapRSAAES(&small.PublicKey, []byte("m")); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("WrapRSAAES(RSA-2048) = %v, want ErrInvalidKey", err)
	}
	if _, err := UnwrapRSAAES(small, make([]byte, 512)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("UnwrapRSAAES(RSA-2048) = %v, want ErrInvalidKey", err)
	}
	if _, err := WrapRSAAES(nil, []byte("m")); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("WrapRSAAES(nil) = %v, want ErrInvalidKey", err)
	}
	if _, err := UnwrapRSAAES(nil, make([]byte, 600)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("UnwrapRSAAES(nil) = %v, want ErrInvalidKey", err)
	}
	if _, err := RSAPublicKeyPEM(&small.PublicKey); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("RSAPublicKeyPEM(RSA-2048) = %v, want ErrInvalidKey", err)
	}
	priv := testImportKey(t)
	if _, err := WrapRSAAES(&priv.PublicKey, nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("WrapRSAAES(empty material) = %v, want ErrInvalidKey", err)
	}
}

func TestRSAKeyEncodings(t *testing.T) {
	priv := testImportKey(t)
	s, err := RSAPublicKeyPEM(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParseRSAPublicKeyPEM(s)
	if err != nil || !pub.Equal(&priv.PublicKey) {
		t.Errorf("ParseRSAPublicKeyPEM(RSAPublicKeyPEM) = %v, %v", pub, err)
	}
	der, err := MarshalRSAPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	defer der.Wipe()
	back, err := ParseRSAPrivateKey(der)
	if err != nil || !back.Equal(priv) {
		t.Errorf("ParseRSAPrivateKey(MarshalRSAPrivateKey) = %v", err)
	}
	edPEM, _ := PublicKeyPEM("ed25519", secret.New(make([]byte, 32)))
	for name, in := range map[string]string{
		"empty":          "",
		"ed25519 key":    edPEM,
		"two blocks":     s + s,
		"wrong type":     string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: []byte{1}})),
		"garbage in PEM": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})),
	} {
		if _, err := ParseRSAPublicKeyPEM(in); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ParseRSAPublicKeyPEM(%s) = %v, want ErrInvalidKey", name, err)
		}
	}
	if _, err := ParseRSAPrivateKey(secret.New([]byte{0x30, 0})); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("ParseRSAPrivateKey(garbage) = %v, want ErrInvalidKey", err)
	}
}

// TestRSAAESOpenSSL proves interoperability with the OpenSSL command-line
// tool, the recipe docs/import-export.md gives custodians: pkeyutl wraps
// the AES key with OAEP (SHA-256, MGF1-SHA-256), enc -id-aes256-wrap-pad
// wraps the material, and the reverse.
func TestRSAAESOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed: skipping the OpenSSL interoperability test (install the openssl package to run it)")
	}
	priv := testImportKey(t)
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	write := func(name string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(path(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	openssl := func(args ...string) {
		t.Helper()
		out, err := exec.Command("openssl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	oaep := []string{"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"}

	pubPEM, err := RSAPublicKeyPEM(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	write("pub.pem", []byte(pubPEM))
	der, err := MarshalRSAPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	write("priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der.Expose()}))
	der.Wipe()

	for _, n := range []int{7, 32, 100} {
		t.Run(fmt.Sprintf("openssl wraps %d bytes", n), func(t *testing.T) {
			material, aesKey := Random(n), Random(32)
			write("aes.key", aesKey)
			write("material", material)
			openssl(append([]string{"pkeyutl", "-encrypt", "-pubin", "-inkey", path("pub.pem"), "-in", path("aes.key"), "-out", path("ek")}, oaep...)...)
			openssl("enc", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(aesKey), "-iv", "A65959A6", "-in", path("material"), "-out", path("wrapped"))
			got, err := UnwrapRSAAES(priv, append(read("ek"), read("wrapped")...))
			if err != nil || !bytes.Equal(got.Expose(), material) {
				t.Errorf("UnwrapRSAAES(openssl, %d bytes) = %x, %v, want %x", n, got.Expose(), err, material)
			}
		})
		t.Run(fmt.Sprintf("openssl unwraps %d bytes", n), func(t *testing.T) {
			material := Random(n)
			w, err := WrapRSAAES(&priv.PublicKey, material)
			if err != nil {
				t.Fatal(err)
			}
			write("ek", w[:priv.Size()])
			write("wrapped", w[priv.Size():])
			openssl(append([]string{"pkeyutl", "-decrypt", "-inkey", path("priv.pem"), "-in", path("ek"), "-out", path("aes.key")}, oaep...)...)
			aesKey := read("aes.key")
			if len(aesKey) != 32 {
				t.Fatalf("openssl decrypted a %d-byte AES key, want 32", len(aesKey))
			}
			openssl("enc", "-d", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(aesKey), "-iv", "A65959A6", "-in", path("wrapped"), "-out", path("material"))
			if got := read("material"); !bytes.Equal(got, material) {
				t.Errorf("openssl unwrapped %x, want %x", got, material)
			}
		})
	}
}
