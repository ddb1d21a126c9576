package crypto

import (
	"bytes"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/internal/secret"
)

// cmacVectors are the examples of RFC 4493 §4 (AES-128) and NIST SP 800-38B
// appendix D.3 (AES-256, examples 9-12), quoted as published.
var cmacVectors = []struct {
	name, key, msg, tag string
}{
	{"RFC 4493 example 1 (empty)", "2b7e151628aed2a6abf7158809cf4f3c", "", "bb1d6929e95937287fa37d129b756746"},
	{"RFC 4493 example 2 (16 bytes)", "2b7e151628aed2a6abf7158809cf4f3c", "6bc1bee22e409f96e93d7e117393172a", "070a16b46b4d4144f79bdd9dd04a287c"},
	{"RFC 4493 example 3 (40 bytes)", "2b7e151628aed2a6abf7158809cf4f3c",
		"6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411", "dfa66747de9ae63030ca32611497c827"},
	{"RFC 4493 example 4 (64 bytes)", "2b7e151628aed2a6abf7158809cf4f3c",
		"6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
		"51f0bebf7e3b9d92fc49741779363cfe"},
	{"SP 800-38B example 9 (AES-256, empty)", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "", "028962f61b7bf89efc6b551f4667d983"},
	{"SP 800-38B example 10 (AES-256, 16 bytes)", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
		"6bc1bee22e409f96e93d7e117393172a", "28a7023f452e8f82bd4bf28d8c37c35c"},
	{"SP 800-38B example 11 (AES-256, 40 bytes)", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
		"6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411", "aaf3d8f1de5640c232f5b169b9c911e6"},
	{"SP 800-38B example 12 (AES-256, 64 bytes)", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
		"6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
		"e1992190549f6ed5696a2c056c315410"},
}

func TestCMACVectors(t *testing.T) {
	for _, v := range cmacVectors {
		t.Run(v.name, func(t *testing.T) {
			c, err := NewCMAC(secret.New(mustHex(v.key)))
			if err != nil {
				t.Fatal(err)
			}
			msg, want := mustHex(v.msg), mustHex(v.tag)
			if got := c.Sum(msg); !bytes.Equal(got[:], want) {
				t.Fatalf("CMAC = %x, want %x", got, want)
			}
			if !c.Verify(msg, want) || !c.Verify(msg, want[:8]) {
				t.Fatal("Verify refuses the published tag")
			}
			bad := bytes.Clone(want)
			bad[len(bad)-1] ^= 1
			if c.Verify(msg, bad) || c.Verify(msg, want[:4]) {
				t.Fatal("Verify accepts a wrong or too short tag")
			}
		})
	}
}

// TestCMACSubkeys checks the RFC 4493 §4 subkeys K1 and K2.
func TestCMACSubkeys(t *testing.T) {
	c, err := NewCMAC(secret.New(mustHex("2b7e151628aed2a6abf7158809cf4f3c")))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(c.k1[:]); got != "fbeed618357133667c85e08f7236a8de" {
		t.Errorf("K1 = %s", got)
	}
	if got := hex.EncodeToString(c.k2[:]); got != "f7ddac306ae266ccf90bc11ee46d513b" {
		t.Errorf("K2 = %s", got)
	}
}

func TestCMACKeySizes(t *testing.T) {
	for _, n := range []int{0, 8, 15, 17, 31, 33, 64} {
		if _, err := NewCMAC(secret.New(make([]byte, n))); err == nil {
			t.Errorf("NewCMAC accepts a %d-byte key", n)
		}
	}
}

// TestCMACMatchesOpenSSL compares tags of every length from 0 to 70 bytes
// (all the padding cases) with OpenSSL's CMAC, when openssl is installed.
func TestCMACMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	key := mustHex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
	c, err := NewCMAC(secret.New(key))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 70} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		cmd := exec.Command("openssl", "mac", "-cipher", "AES-256-CBC", "-macopt", "hexkey:"+hex.EncodeToString(key), "CMAC")
		cmd.Stdin = bytes.NewReader(msg)
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("openssl mac: %v", err)
		}
		got := c.Sum(msg)
		if want := strings.ToLower(strings.TrimSpace(string(out))); hex.EncodeToString(got[:]) != want {
			t.Errorf("%d bytes: CMAC %x, OpenSSL %s", n, got, want)
		}
	}
}
