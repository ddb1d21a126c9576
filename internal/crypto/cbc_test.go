package crypto

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/internal/secret"
)

// cbcVectors are the CBC examples of NIST SP 800-38A appendix F.2
// (F.2.1/F.2.2 CBC-AES128, F.2.3/F.2.4 CBC-AES192, F.2.5/F.2.6
// CBC-AES256), quoted as published: four blocks each.
var cbcVectors = []struct {
	name, key, ct string
}{
	{"SP 800-38A F.2.1 CBC-AES128", "2b7e151628aed2a6abf7158809cf4f3c",
		"7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"},
	{"SP 800-38A F.2.3 CBC-AES192", "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
		"4f021db243bc633d7178183a9fa071e8b4d9ada9ad7dedf4e5e738763f69145a571b242012fb7ae07fa9baac3df102e008b0e27988598881d920a9e64f5615cd"},
	{"SP 800-38A F.2.5 CBC-AES256", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
		"f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b"},
}

const (
	cbcIV        = "000102030405060708090a0b0c0d0e0f"
	cbcPlaintext = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)

func TestAESCBCVectors(t *testing.T) {
	for _, v := range cbcVectors {
		t.Run(v.name, func(t *testing.T) {
			key, iv, pt, want := secret.New(mustHex(v.key)), mustHex(cbcIV), mustHex(cbcPlaintext), mustHex(v.ct)
			ct, err := EncryptAESCBC(key, iv, pt)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ct, want) {
				t.Fatalf("EncryptAESCBC = %x, want %x", ct, want)
			}
			got, err := DecryptAESCBC(key, iv, want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Expose(), pt) {
				t.Fatalf("DecryptAESCBC = %x, want %x", got.Expose(), pt)
			}
		})
	}
}

func TestAESCBCRefuses(t *testing.T) {
	good := secret.New(make([]byte, 32))
	for _, c := range []struct {
		name     string
		key      *secret.Bytes
		iv, data []byte
	}{
		{"short key", secret.New(make([]byte, 15)), make([]byte, 16), make([]byte, 16)},
		{"short IV", good, make([]byte, 8), make([]byte, 16)},
		{"partial block", good, make([]byte, 16), make([]byte, 17)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := EncryptAESCBC(c.key, c.iv, c.data); err == nil {
				t.Fatal("EncryptAESCBC accepted it")
			}
			if _, err := DecryptAESCBC(c.key, c.iv, c.data); err == nil {
				t.Fatal("DecryptAESCBC accepted it")
			}
		})
	}
	if _, err := EncryptAESCBC(secret.New(make([]byte, 20)), make([]byte, 16), nil); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("EncryptAESCBC(20-byte key) = %v, want ErrInvalidKey", err)
	}
}
