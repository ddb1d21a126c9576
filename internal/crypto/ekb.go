package crypto

import (
	"crypto/rand"
	"fmt"

	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

// ekbKEKInfo is the HKDF info of an EKB's key-encryption key.
const ekbKEKInfo = "dcaas/v1 ekb kek"

// TMKSize is the size of a tenant master key.
const TMKSize = 32

// MaxDEKSize is the largest key material an EKB or a wrapped key can hold.
const MaxDEKSize = format.MaxSealedLen - AEADOverhead

// SealEKB seals dek into e under the tenant master key tmk: it draws a
// random e.Salt, derives kek = HKDF-SHA-256(tmk, salt = e.Salt,
// info = "dcaas/v1 ekb kek", 32 bytes) and sets e.Sealed to
// AES-256-GCM(kek, random nonce, dek, associated data = e.Header()).
// Every other field of e must be set and valid beforehand (errors wrap
// format.ErrMalformed). tmk must be TMKSize bytes and dek 1..MaxDEKSize bytes
// (ErrInvalidKey). tmk and dek stay the caller's; the kek is wiped.
func SealEKB(tmk *secret.Bytes, e *format.EKB, dek *secret.Bytes) error {
	if tmk.Len() != TMKSize {
		return fmt.Errorf("%w: tenant master key is %d bytes, want %d", ErrInvalidKey, tmk.Len(), TMKSize)
	}
	if dek.Len() < 1 || dek.Len() > MaxDEKSize {
		return fmt.Errorf("%w: key material of %d bytes not in 1..%d", ErrInvalidKey, dek.Len(), MaxDEKSize)
	}
	if err := e.ValidateHeader(); err != nil {
		return err
	}
	rand.Read(e.Salt[:])
	a, err := ekbAEAD(tmk, e)
	if err != nil {
		return err
	}
	e.Sealed = a.Seal(nil, dek.Expose(), e.Header())
	return nil
}

// OpenEKB opens e with the tenant master key tmk and returns its data key,
// a new secret the caller owns and wipes. Every failure (a wrong key, any
// changed bit of e, an invalid e) is ErrDecrypt. tmk stays the caller's.
func OpenEKB(tmk *secret.Bytes, e *format.EKB) (*secret.Bytes, error) {
	if tmk.Len() != TMKSize || e.Validate() != nil {
		return nil, ErrDecrypt
	}
	a, err := ekbAEAD(tmk, e)
	if err != nil {
		return nil, ErrDecrypt
	}
	dek, err := a.Open(nil, e.Sealed, e.Header())
	if err != nil {
		return nil, ErrDecrypt
	}
	return secret.New(dek), nil
}

// ekbAEAD derives the AEAD of e's key-encryption key; the kek itself is
// wiped before ekbAEAD returns.
func ekbAEAD(tmk *secret.Bytes, e *format.EKB) (*AEAD, error) {
	kek, err := HKDF(tmk, e.Salt[:], []byte(ekbKEKInfo), AEADKeySize)
	if err != nil {
		return nil, err
	}
	defer kek.Wipe()
	return NewAEAD(kek)
}
