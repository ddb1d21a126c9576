package crypto

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

// SeedKeyLen is the length of a custodian seed key: the 32 random bytes
// each custodian gets at registration, under which SeedKDF v2 derives.
const SeedKeyLen = 32

// Domain labels of SeedKDF v2. They never change: the same inputs give
// the same key and id forever.
const (
	seedV2KeyLabel = "dcaas/seedkdf/v2 key"
	seedV2IDLabel  = "dcaas/seedkdf/v2 key id"
)

// SeedV2Info is the HKDF info of SeedKDF v2 for one output: label, a zero
// byte, then the key type and the canonical policy bytes, each prefixed
// by its length as a 32-bit big-endian integer. idInfo chooses the key
// id's label instead of the key's. It is exported for test vectors and
// independent implementations (docs/formats.md §7); the result is not
// secret.
func SeedV2Info(t api.KeyType, canonicalPolicy []byte, idInfo bool) []byte {
	label := seedV2KeyLabel
	if idInfo {
		label = seedV2IDLabel
	}
	b := make([]byte, 0, len(label)+1+8+len(t)+len(canonicalPolicy))
	b = append(b, label...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(t)))
	b = append(b, t...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(canonicalPolicy)))
	return append(b, canonicalPolicy...)
}

// DeriveSeedKeyV2 is SeedKDF v2 (docs/formats.md §7): the key of type t
// with the policy whose canonical bytes (policy.Canonical) are
// canonicalPolicy, derived from seed under the custodian seed key csk
// with HKDF-SHA-256 (RFC 5869):
//
//	PRK = HKDF-Extract(salt = csk, IKM = seed)         (= HMAC-SHA-256(csk, seed))
//	DEK = HKDF-Expand(PRK, SeedV2Info(t, policy, false), 32)
//	ID  = "drv_" || base32(HKDF-Expand(PRK, SeedV2Info(t, policy, true), 16)), lower case, unpadded
//
// Unlike v1 there are no PBKDF2 iterations: a seed is 16 to 64 random
// bytes, so stretching adds nothing against guessing it, and the secret
// that separates custodians is csk, which an attacker without the KMS
// root key does not have. The id is a separate HKDF output, so it reveals
// nothing about the key. The caller owns (and wipes) the key.
func DeriveSeedKeyV2(csk *secret.Bytes, seed []byte, t api.KeyType, canonicalPolicy []byte) (*secret.Bytes, string, error) {
	if len(seed) < MinSeedLen || len(seed) > MaxSeedLen {
		return nil, "", fmt.Errorf("%w: a seed must be %d to %d bytes", ErrInvalidKey, MinSeedLen, MaxSeedLen)
	}
	if len(csk.Expose()) != SeedKeyLen {
		return nil, "", fmt.Errorf("%w: a custodian seed key must be %d bytes", ErrInvalidKey, SeedKeyLen)
	}
	if !SeedDerivable(t) {
		return nil, "", fmt.Errorf("%w: keys of type %q cannot be derived from a seed", ErrInvalidKey, t)
	}
	prk, err := hkdf.Extract(sha256.New, seed, csk.Expose())
	if err != nil {
		return nil, "", fmt.Errorf("crypto: HKDF: %w", err)
	}
	defer clear(prk)
	dek, err := hkdf.Expand(sha256.New, prk, string(SeedV2Info(t, canonicalPolicy, false)), 32)
	if err != nil {
		return nil, "", fmt.Errorf("crypto: HKDF: %w", err)
	}
	id, err := hkdf.Expand(sha256.New, prk, string(SeedV2Info(t, canonicalPolicy, true)), 16)
	if err != nil {
		clear(dek)
		return nil, "", fmt.Errorf("crypto: HKDF: %w", err)
	}
	return secret.New(dek), seedKeyIDOf(id), nil
}

// seedKeyIDOf is the "drv_" id of 16 bytes: v1 and v2 ids look alike.
func seedKeyIDOf(sum []byte) string {
	return "drv_" + lowerBase32(sum[:16])
}
