package crypto

import (
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/dcaas/dcaas/internal/secret"
)

// KCVSize is the length in bytes of a key check value; it is written as
// 2·KCVSize upper-case hex digits.
const KCVSize = 3

// kcvInput is what a key check value MACs: one all-zero AES block.
var kcvInput [CMACSize]byte

// KCVCMAC returns the key check value of an AES key (16, 24 or 32 bytes)
// as ANSI X9.24-1:2017 §7.7.2 defines it: the first 3 bytes of
// AES-CMAC(key, 16 zero bytes), in upper-case hex. This is also what AWS
// Payment Cryptography and payment HSMs compute as a "CMAC" KCV. The key
// stays the caller's; a KCV is not secret.
func KCVCMAC(key *secret.Bytes) (string, error) {
	m, err := NewCMAC(key)
	if err != nil {
		return "", err
	}
	tag := m.Sum(kcvInput[:])
	return strings.ToUpper(hex.EncodeToString(tag[:KCVSize])), nil
}

// KCVHMACSHA256 returns the key check value dcaas defines for an HMAC key
// (X9.24-1 defines none): the first 3 bytes of HMAC-SHA-256(key, 16 zero
// bytes), in upper-case hex, the same input as KCVCMAC's. `openssl mac
// -digest SHA256 -macopt hexkey:KEY HMAC` on 16 zero bytes computes it.
// The key stays the caller's.
func KCVHMACSHA256(key *secret.Bytes) (string, error) {
	if key.Len() == 0 {
		return "", fmt.Errorf("%w: an empty HMAC key", ErrInvalidKey)
	}
	m := hmac.New(sha256.New, key.Expose())
	m.Write(kcvInput[:])
	return strings.ToUpper(hex.EncodeToString(m.Sum(nil)[:KCVSize])), nil
}

// XORComponents returns the XOR of key components of one length (at least
// two): the key they make. The result is a new secret the caller owns and
// wipes; the components stay the caller's. ErrInvalidKey for fewer than
// two components, an empty one or unequal lengths.
func XORComponents(parts []*secret.Bytes) (*secret.Bytes, error) {
	if len(parts) < 2 {
		return nil, fmt.Errorf("%w: %d key components, want at least 2", ErrInvalidKey, len(parts))
	}
	n := parts[0].Len()
	if n == 0 {
		return nil, fmt.Errorf("%w: an empty key component", ErrInvalidKey)
	}
	out := make([]byte, n)
	for i, p := range parts {
		if p.Len() != n {
			clear(out)
			return nil, fmt.Errorf("%w: key component %d is %d bytes, the first %d", ErrInvalidKey, i+1, p.Len(), n)
		}
		subtle.XORBytes(out, out, p.Expose())
	}
	return secret.New(out), nil
}

// KCVPrefix reports whether kcv (1 to 16 bytes) is the leftmost bytes of
// the check value of an AES key (16, 24 or 32 bytes) by one of the two
// methods of ANSI X9.24-1:2017 Annex A that ANSI X9.143 key blocks name in
// their KC and KP optional blocks: AES-CMAC of 16 zero bytes (cmac, the
// method KCVCMAC uses), or 16 zero bytes encrypted with the key (legacy).
// The key stays the caller's; a KCV is not secret, but the comparison is in
// constant time anyway.
func KCVPrefix(key *secret.Bytes, kcv []byte, cmac bool) (bool, error) {
	if len(kcv) == 0 || len(kcv) > CMACSize {
		return false, fmt.Errorf("%w: a key check value of %d bytes", ErrInvalidKey, len(kcv))
	}
	var full [CMACSize]byte
	if cmac {
		m, err := NewCMAC(key)
		if err != nil {
			return false, err
		}
		full = m.Sum(kcvInput[:])
	} else {
		b, err := aes.NewCipher(key.Expose())
		if err != nil {
			return false, fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
		b.Encrypt(full[:], kcvInput[:])
	}
	return subtle.ConstantTimeCompare(full[:len(kcv)], kcv) == 1, nil
}
