package crypto

import (
	"crypto/hkdf"
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
