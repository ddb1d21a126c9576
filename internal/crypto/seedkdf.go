package crypto

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

// SeedKDF is a versioned parameter set of seed derivation (docs/design.md, "Seed derivation").
// A version never changes once released: the same seed must yield the same
// key forever. TestSeedDerivationVector (sidecar/flows_e2e_test.go) pins v1
// to values of an independent implementation, quoted in docs/formats.md §7.
type SeedKDF struct {
	Version    int
	Iterations int
}

// SeedKDFv1 is the first seed derivation, under the tenant HMAC key:
// PBKDF2-HMAC-SHA-256 with 10,000 iterations. It stays derivable for data
// made under it; new requests default to SeedKDF v2 (DeriveSeedKeyV2),
// which binds the custodian, the key type and the policy. Seeds must be 16 to 64 bytes of random data; the iterations
// are not what protects a seed (its entropy is), they keep derivation
// affordable for thousands of keys (about 2 ms each).
var SeedKDFv1 = SeedKDF{Version: 1, Iterations: 10000}

// Seed length bounds.
const (
	MinSeedLen = 16
	MaxSeedLen = 64
)

// SeedDerivable reports whether keys of type t can be derived from a seed
// (types whose material is 32 uniformly random bytes).
func SeedDerivable(t api.KeyType) bool {
	return t == api.KeyAES256GCM || t == api.KeyHMACSHA256 || t == api.KeyEd25519
}

// DeriveSeedKey derives a data key from a seed under the tenant HMAC key hk:
//
//	salt = HMAC-SHA-256(hk, seed)
//	DEK  = PBKDF2-HMAC-SHA-256(seed, salt, p.Iterations, 32)
//
// The caller owns (and wipes) the result.
func DeriveSeedKey(p SeedKDF, hk *secret.Bytes, seed []byte) (*secret.Bytes, error) {
	if len(seed) < MinSeedLen || len(seed) > MaxSeedLen {
		return nil, fmt.Errorf("%w: a seed must be %d to %d bytes", ErrInvalidKey, MinSeedLen, MaxSeedLen)
	}
	m := hmac.New(sha256.New, hk.Expose())
	m.Write(seed)
	salt := m.Sum(nil)
	dek, err := pbkdf2.Key(sha256.New, string(seed), salt, p.Iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("crypto: pbkdf2: %w", err)
	}
	return secret.New(dek), nil
}

// SeedKeyID is the deterministic key id of the key of type t derived from
// seed: "drv_" and 26 base32 characters of HMAC-SHA-256(hk, label || t ||
// seed). The same seed and type give the same id on every sidecar, so
// ciphertexts made under a derived key open wherever it is derived again;
// the id reveals nothing about the seed without hk.
func SeedKeyID(hk *secret.Bytes, t api.KeyType, seed []byte) string {
	m := hmac.New(sha256.New, hk.Expose())
	m.Write([]byte("dcaas/v1 seed key id\x00"))
	m.Write([]byte(t))
	m.Write([]byte{0})
	m.Write(seed)
	return seedKeyIDOf(m.Sum(nil))
}

// lowerBase32 is b in RFC 4648 base32, lower case, without padding.
func lowerBase32(b []byte) string {
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// SeedMAC is the keyed digest of a seed that grants store instead of the
// seed: HMAC-SHA-256(hk, label || seed). A database reader cannot test
// guesses without hk.
func SeedMAC(hk *secret.Bytes, seed []byte) []byte {
	m := hmac.New(sha256.New, hk.Expose())
	m.Write([]byte("dcaas/v1 grant seed\x00"))
	m.Write(seed)
	return m.Sum(nil)
}
