package crypto

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/dcaas/dcaas/internal/secret"
)

// RSA key sizes of the rsa-aes-key-wrap-sha256 scheme.
const (
	// ImportRSABits is the size of the RSA keys GenerateImportRSAKey makes.
	ImportRSABits = 4096
	// MinWrapRSABits is the smallest RSA modulus WrapRSAAES and
	// UnwrapRSAAES accept.
	MinWrapRSABits = 3072
)

// rsaAESKeySize is the size of the one-time AES key of WrapRSAAES.
const rsaAESKeySize = 32

// WrapRSAAES wraps material to pub with rsa-aes-key-wrap-sha256 (PKCS #11
// CKM_RSA_AES_KEY_WRAP; AWS KMS RSA_AES_KEY_WRAP_SHA_256): a fresh random
// AES-256 key k, then
//
//	RSA-OAEP(pub, SHA-256, MGF1-SHA-256, empty label, k) || WrapKeyPadded(k, material)
//
// The first part is as long as pub's modulus. It returns the result in a
// new slice the caller owns (not secret); k is wiped. pub must have a
// modulus of at least MinWrapRSABits (ErrInvalidKey otherwise); material
// (1 to 2^32-1 bytes) stays the caller's.
func WrapRSAAES(pub *rsa.PublicKey, material []byte) ([]byte, error) {
	if err := checkWrapRSAKey(pub); err != nil {
		return nil, err
	}
	k := secret.New(Random(rsaAESKeySize))
	defer k.Wipe()
	wrapped, err := WrapKeyPadded(k, material)
	if err != nil {
		return nil, err
	}
	ek, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, k.Expose(), nil)
	if err != nil {
		return nil, fmt.Errorf("crypto: RSA-OAEP encrypt: %w", err)
	}
	return append(ek, wrapped...), nil
}

// UnwrapRSAAES reverses WrapRSAAES with the private key priv: it splits
// wrapped at priv's modulus size, decrypts the AES-256 key with RSA-OAEP
// (SHA-256, MGF1-SHA-256, empty label) and unwraps the material with it
// (UnwrapKeyPadded). It returns the material, a new secret the caller owns
// and wipes; the AES key is wiped. priv must have a modulus of at least
// MinWrapRSABits (ErrInvalidKey otherwise). Every failure of wrapped,
// whether in RSA-OAEP or in the key wrap, is the bare ErrUnwrap; a failed
// RSA-OAEP decryption still runs the key unwrap, under a random key, so the
// two take the same time.
func UnwrapRSAAES(priv *rsa.PrivateKey, wrapped []byte) (*secret.Bytes, error) {
	if priv == nil {
		return nil, fmt.Errorf("%w: no RSA private key", ErrInvalidKey)
	}
	if err := checkWrapRSAKey(&priv.PublicKey); err != nil {
		return nil, err
	}
	size := priv.Size()
	if len(wrapped) < size+16 {
		return nil, ErrUnwrap
	}
	b, err := rsa.DecryptOAEP(sha256.New(), nil, priv, wrapped[:size], nil)
	ok := err == nil && len(b) == rsaAESKeySize
	if !ok {
		secret.Zero(b)
		b = Random(rsaAESKeySize)
	}
	k := secret.New(b)
	defer k.Wipe()
	m, err := UnwrapKeyPadded(k, wrapped[size:])
	if err != nil || !ok {
		m.Wipe()
		return nil, ErrUnwrap
	}
	return m, nil
}

func checkWrapRSAKey(pub *rsa.PublicKey) error {
	if pub == nil || pub.N == nil {
		return fmt.Errorf("%w: no RSA public key", ErrInvalidKey)
	}
	if bits := pub.N.BitLen(); bits < MinWrapRSABits {
		return fmt.Errorf("%w: RSA-%d key, want at least %d bits", ErrInvalidKey, bits, MinWrapRSABits)
	}
	return nil
}

// GenerateImportRSAKey returns a new RSA-4096 key for
// rsa-aes-key-wrap-sha256 import. The private key is secret; crypto/rsa
// gives no way to wipe it. Persist it with MarshalRSAPrivateKey.
func GenerateImportRSAKey() (*rsa.PrivateKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, ImportRSABits)
	if err != nil {
		return nil, fmt.Errorf("crypto: generate RSA-%d key: %w", ImportRSABits, err)
	}
	return priv, nil
}

// MarshalRSAPrivateKey returns priv in PKCS #8 DER, a new secret the
// caller owns and wipes.
func MarshalRSAPrivateKey(priv *rsa.PrivateKey) (*secret.Bytes, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return secret.New(der), nil
}

// ParseRSAPrivateKey parses a PKCS #8 DER RSA private key of at least
// MinWrapRSABits (ErrInvalidKey otherwise). der stays the caller's.
func ParseRSAPrivateKey(der *secret.Bytes) (*rsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der.Expose())
	if err != nil {
		return nil, fmt.Errorf("%w: PKCS #8 private key does not parse", ErrInvalidKey)
	}
	priv, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: PKCS #8 key is %T, want RSA", ErrInvalidKey, k)
	}
	if err := checkWrapRSAKey(&priv.PublicKey); err != nil {
		return nil, err
	}
	return priv, nil
}

// RSAPublicKeyPEM returns pub as a PKIX "PUBLIC KEY" PEM block, what
// import-parameters hands custodians (openssl pkeyutl -pubin reads it).
func RSAPublicKeyPEM(pub *rsa.PublicKey) (string, error) {
	if err := checkWrapRSAKey(pub); err != nil {
		return "", err
	}
	return marshalPublicKeyPEM(pub)
}

// ParseRSAPublicKeyPEM parses one PKIX "PUBLIC KEY" PEM block holding an
// RSA key of at least MinWrapRSABits; anything else is ErrInvalidKey.
func ParseRSAPublicKeyPEM(s string) (*rsa.PublicKey, error) {
	blk, rest := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: want one PEM \"PUBLIC KEY\" block", ErrInvalidKey)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: public key does not parse", ErrInvalidKey)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: public key is %T, want RSA", ErrInvalidKey, k)
	}
	if err := checkWrapRSAKey(pub); err != nil {
		return nil, err
	}
	return pub, nil
}
