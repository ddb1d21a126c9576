package crypto

import (
	"crypto/fips140"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
)

// Random returns n bytes from crypto/rand in a new slice the caller owns.
// It never fails (crypto/rand.Read crashes the program if the operating
// system's generator does). n must not be negative.
func Random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// idEncoding is lower-case base32 (RFC 4648 alphabet) without padding.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// RandomID returns prefix followed by 26 lower-case base32 characters of 16
// random bytes (128 bits), e.g. "key_…" or "ins_…". IDs are not secret.
func RandomID(prefix string) string {
	var b [16]byte
	rand.Read(b[:])
	return prefix + idEncoding.EncodeToString(b[:])
}

// NewToken returns a new bearer token, prefix followed by the unpadded
// base64url of 32 random bytes, and its HashToken. The token is secret:
// hand it to its one recipient and keep only the hash. (A Go string cannot
// be wiped; the random bytes behind it are.)
func NewToken(prefix string) (token string, hash []byte) {
	var b [32]byte
	rand.Read(b[:])
	token = prefix + base64.RawURLEncoding.EncodeToString(b[:])
	clear(b[:])
	return token, HashToken(token)
}

// HashToken returns the SHA-256 of token, in a new slice the caller owns:
// what a store keeps instead of the token. Compare hashes with Equal.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// Equal reports whether a and b are equal, in time that depends on their
// lengths but not their contents.
func Equal(a, b []byte) bool {
	return subtle.ConstantTimeCompare(a, b) == 1
}

// FIPS reports whether the process runs in FIPS 140-3 mode
// (GODEBUG=fips140=on or only).
func FIPS() bool { return fips140.Enabled() }
