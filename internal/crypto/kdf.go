package crypto

import (
	"crypto/hkdf"
	"crypto/pbkdf2"
	"crypto/sha256"
	"fmt"

	"github.com/dcaas/dcaas/internal/secret"
)

// HKDF derives n bytes (1..8160) from ikm with HKDF-SHA-256 (RFC 5869)
// under salt and info. The result is a new secret the caller owns and
// wipes; ikm stays the caller's.
func HKDF(ikm *secret.Bytes, salt, info []byte, n int) (*secret.Bytes, error) {
	if n < 1 || n > 255*sha256.Size {
		return nil, fmt.Errorf("crypto: HKDF output length %d not in 1..%d", n, 255*sha256.Size)
	}
	k, err := hkdf.Key(sha256.New, ikm.Expose(), salt, string(info), n)
	if err != nil {
		return nil, fmt.Errorf("crypto: HKDF: %w", err)
	}
	return secret.New(k), nil
}

// PBKDF2 derives n bytes from passphrase with PBKDF2-HMAC-SHA-256 (RFC
// 8018) under salt with iterations rounds. The result is a new secret the
// caller owns and wipes; passphrase stays the caller's. crypto/pbkdf2
// takes the password as a string: that copy cannot be wiped.
func PBKDF2(passphrase *secret.Bytes, salt []byte, iterations, n int) (*secret.Bytes, error) {
	k, err := pbkdf2.Key(sha256.New, string(passphrase.Expose()), salt, iterations, n)
	if err != nil {
		return nil, fmt.Errorf("crypto: PBKDF2: %w", err)
	}
	return secret.New(k), nil
}
