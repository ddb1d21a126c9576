package crypto

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

// DataKeySize is the size of the material of every implemented key type:
// AES-256 and HMAC-SHA-256 keys, the Ed25519 seed, the P-256 scalar, the
// ML-DSA-65 seed.
const DataKeySize = 32

// GenerateKey returns new key material for a data key of type t, a secret
// the caller owns and wipes. Encodings (see CheckMaterial):
//
//   - aes-256-gcm, hmac-sha256, aes-256-kbpk: 32 random bytes;
//   - ed25519: the 32-byte seed (RFC 8032);
//   - ecdsa-p256: the 32-byte big-endian private scalar (SEC 1 §2.3.6);
//   - ml-dsa-65: the 32-byte seed ξ of ML-DSA.KeyGen (FIPS 204), which is
//     ErrNotApproved in FIPS mode (see mldsa.go).
//
// Unknown types are ErrUnsupported.
func GenerateKey(t api.KeyType) (*secret.Bytes, error) {
	switch t {
	case api.KeyAES256GCM, api.KeyHMACSHA256, api.KeyAES256KBPK:
		return secret.New(Random(DataKeySize)), nil
	case api.KeyEd25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("crypto: generate ed25519 key: %w", err)
		}
		defer clear(priv)
		return secret.Copy(priv.Seed()), nil
	case api.KeyECDSAP256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("crypto: generate ecdsa-p256 key: %w", err)
		}
		b, err := priv.Bytes()
		if err != nil {
			return nil, fmt.Errorf("crypto: encode ecdsa-p256 key: %w", err)
		}
		return secret.New(b), nil
	case api.KeyMLDSA65:
		return generateMLDSA()
	}
	return nil, unsupported(t)
}

// CheckMaterial reports whether material is a valid encoding of a key of
// type t (see GenerateKey): ErrInvalidKey if not, ErrUnsupported for a type
// not implemented, ErrNotApproved for ml-dsa-65 in FIPS mode. material
// stays the caller's.
func CheckMaterial(t api.KeyType, material *secret.Bytes) error {
	switch t {
	case api.KeyAES256GCM, api.KeyHMACSHA256, api.KeyEd25519, api.KeyAES256KBPK:
		if material.Len() != DataKeySize {
			return fmt.Errorf("%w: %s material is %d bytes, want %d", ErrInvalidKey, t, material.Len(), DataKeySize)
		}
		return nil
	case api.KeyECDSAP256:
		_, err := parseECDSA(material)
		return err
	case api.KeyMLDSA65:
		return checkMLDSA(material)
	}
	return unsupported(t)
}

// PublicKeyPEM returns the public key of the signing key material as a
// PKIX "PUBLIC KEY" PEM block (not secret). Symmetric types are
// ErrWrongKeyType. material stays the caller's.
func PublicKeyPEM(t api.KeyType, material *secret.Bytes) (string, error) {
	if err := CheckMaterial(t, material); err != nil {
		return "", err
	}
	var pub any
	switch t {
	case api.KeyEd25519:
		priv := ed25519.NewKeyFromSeed(material.Expose())
		defer clear(priv)
		pub = priv.Public()
	case api.KeyECDSAP256:
		priv, err := parseECDSA(material)
		if err != nil {
			return "", err
		}
		pub = &priv.PublicKey
	case api.KeyMLDSA65:
		return mldsaPublicKeyPEM(material)
	default:
		return "", fmt.Errorf("%w: %s has no public key", ErrWrongKeyType, t)
	}
	return marshalPublicKeyPEM(pub)
}

func marshalPublicKeyPEM(pub any) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("crypto: marshal public key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// parseECDSA parses a P-256 private scalar. The result's internals cannot
// be wiped (crypto/ecdsa keeps them).
func parseECDSA(material *secret.Bytes) (*ecdsa.PrivateKey, error) {
	if material.Len() != DataKeySize {
		return nil, fmt.Errorf("%w: ecdsa-p256 material is %d bytes, want %d", ErrInvalidKey, material.Len(), DataKeySize)
	}
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), material.Expose())
	if err != nil {
		return nil, fmt.Errorf("%w: ecdsa-p256 scalar out of range", ErrInvalidKey)
	}
	return priv, nil
}

func unsupported(t api.KeyType) error {
	if t.Valid() {
		return fmt.Errorf("%w: %s is not implemented yet", ErrUnsupported, t)
	}
	return fmt.Errorf("%w: %q", ErrUnsupported, string(t))
}
