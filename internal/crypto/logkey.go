package crypto

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/dcaas/dcaas/internal/secret"
)

// LogKey is the Ed25519 key the KMS signs its audit log with (records and
// checkpoints; see internal/audit). It is secret: it never prints, and its
// seed leaves only through [LogKey.Seed], to be sealed. The zero value is
// not usable; make one with [GenerateLogKey] or [NewLogKey].
type LogKey struct {
	priv ed25519.PrivateKey
	pub  LogVerifyKey
}

// GenerateLogKey makes a new random log key.
func GenerateLogKey() (*LogKey, error) {
	seed := secret.New(Random(ed25519.SeedSize))
	defer seed.Wipe()
	return NewLogKey(seed)
}

// NewLogKey rebuilds a log key from its 32-byte seed (as [LogKey.Seed]
// returned it). The caller keeps and wipes seed.
func NewLogKey(seed *secret.Bytes) (*LogKey, error) {
	if seed.Len() != ed25519.SeedSize {
		return nil, fmt.Errorf("crypto: a log key seed is %d bytes, not %d", ed25519.SeedSize, seed.Len())
	}
	priv := ed25519.NewKeyFromSeed(seed.Expose())
	return &LogKey{priv: priv, pub: LogVerifyKey{pub: priv.Public().(ed25519.PublicKey)}}, nil
}

// Seed returns a copy of the key's seed, for sealing; the caller wipes it.
func (k *LogKey) Seed() *secret.Bytes { return secret.Copy(k.priv.Seed()) }

// Sign returns the Ed25519 signature of msg (deterministic: RFC 8032).
func (k *LogKey) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// Public returns the key that verifies k's signatures.
func (k *LogKey) Public() LogVerifyKey { return k.pub }

// Wipe clears the key; it must not be used afterwards.
func (k *LogKey) Wipe() { clear(k.priv) }

// String redacts: a LogKey never prints its material. (Value receivers,
// so that a LogKey printed by value is redacted too.)
func (k LogKey) String() string { return "crypto.LogKey{" + k.pub.ID() + ", [REDACTED]}" }

// GoString redacts.
func (k LogKey) GoString() string { return k.String() }

// Format redacts for every verb.
func (k LogKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// MarshalJSON redacts.
func (k LogKey) MarshalJSON() ([]byte, error) { return []byte(`"[REDACTED]"`), nil }

// LogVerifyKey is the public half of a [LogKey]: what a verifier of the
// audit log needs, and all it needs. The zero value verifies nothing.
type LogVerifyKey struct {
	pub ed25519.PublicKey
}

// ErrLogVerifyKey: the bytes are not an Ed25519 public key in PEM.
var ErrLogVerifyKey = errors.New("crypto: not an Ed25519 public key (PEM \"PUBLIC KEY\")")

// ParseLogVerifyKeyPEM parses the first PEM "PUBLIC KEY" block of b
// (SubjectPublicKeyInfo, as [LogVerifyKey.PEM] writes it); it must hold an
// Ed25519 key.
func ParseLogVerifyKeyPEM(b []byte) (LogVerifyKey, error) {
	pub, err := Ed25519PublicKeyFromPEM(string(b))
	if err != nil {
		return LogVerifyKey{}, fmt.Errorf("%w: %w", ErrLogVerifyKey, err)
	}
	return LogVerifyKey{pub: pub}, nil
}

// LogVerifyKeyFromBytes makes a verify key of a raw 32-byte Ed25519 public
// key (RFC 8032 encoding).
func LogVerifyKeyFromBytes(b []byte) (LogVerifyKey, error) {
	if len(b) != ed25519.PublicKeySize {
		return LogVerifyKey{}, ErrLogVerifyKey
	}
	return LogVerifyKey{pub: ed25519.PublicKey(append([]byte(nil), b...))}, nil
}

// IsZero reports whether v holds no key.
func (v LogVerifyKey) IsZero() bool { return len(v.pub) == 0 }

// Bytes returns the raw 32-byte public key (a copy).
func (v LogVerifyKey) Bytes() []byte { return append([]byte(nil), v.pub...) }

// PEM encodes the key as a PEM "PUBLIC KEY" block (SubjectPublicKeyInfo).
// It returns nil for the zero key.
func (v LogVerifyKey) PEM() []byte {
	if v.IsZero() {
		return nil
	}
	der, err := x509.MarshalPKIXPublicKey(v.pub)
	if err != nil {
		panic("crypto: marshal an Ed25519 public key: " + err.Error()) // cannot fail for a valid key
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ID names the key for people and logs: "ed25519:" and the first 8 bytes
// of SHA-256 of the raw public key, in hex. "" for the zero key.
func (v LogVerifyKey) ID() string {
	if v.IsZero() {
		return ""
	}
	sum := sha256.Sum256(v.pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// Equal reports whether v and o are the same key.
func (v LogVerifyKey) Equal(o LogVerifyKey) bool { return v.pub.Equal(o.pub) }

// Verify reports whether sig is v's signature of msg. The zero key
// verifies nothing.
func (v LogVerifyKey) Verify(msg, sig []byte) bool {
	if v.IsZero() || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(v.pub, msg, sig)
}
