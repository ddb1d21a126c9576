package crypto

import (
	"crypto/hpke"
	"crypto/rsa"
	"errors"
	"fmt"

	"github.com/dcaas/dcaas/internal/secret"
)

// Wrapping schemes of key import (POST /v1/datakeys/import) and secure
// export (POST /v1/datakeys/export): the API's "wrapping" values.
// docs/import-export.md describes both byte by byte.
const (
	// WrappingRSAAES is rsa-aes-key-wrap-sha256: WrapRSAAES.
	WrappingRSAAES = "rsa-aes-key-wrap-sha256"
	// WrappingHPKE is single-shot HPKE (RFC 9180 base mode, HKDF-SHA-256,
	// AES-256-GCM): enc || ciphertext, as crypto/hpke.Seal returns it.
	WrappingHPKE = "hpke"
)

// ErrUnknownWrapping: the wrapping scheme is not one dcaas offers.
var ErrUnknownWrapping = errors.New("crypto: unknown wrapping scheme")

// WrapExport wraps key material to an external public key for export with
// scheme: WrappingRSAAES with pub an *rsa.PublicKey (WrapRSAAES; info is
// not used, the scheme has no context input), or WrappingHPKE with pub an
// hpke.PublicKey (hpke.Seal with HKDF-SHA-256, AES-256-GCM and info). It
// returns the wrapped material in a new slice the caller owns (not
// secret); material stays the caller's.
//
// An unknown scheme is ErrUnknownWrapping; a pub of the wrong type, an
// RSA key under MinWrapRSABits or empty material ErrInvalidKey; an HPKE
// KEM dcaas does not offer ErrUnknownKEM, or ErrNotApproved in FIPS mode.
func WrapExport(scheme string, pub any, info []byte, material *secret.Bytes) ([]byte, error) {
	if material.Len() == 0 {
		return nil, fmt.Errorf("%w: empty key material", ErrInvalidKey)
	}
	switch scheme {
	case WrappingRSAAES:
		rpub, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: %s needs an RSA public key, not %T", ErrInvalidKey, scheme, pub)
		}
		return WrapRSAAES(rpub, material.Expose())
	case WrappingHPKE:
		hpub, ok := pub.(hpke.PublicKey)
		if !ok || hpub == nil {
			return nil, fmt.Errorf("%w: %s needs an HPKE public key, not %T", ErrInvalidKey, scheme, pub)
		}
		if _, err := kemOfID(hpub.KEM().ID()); err != nil {
			return nil, err
		}
		out, err := hpke.Seal(hpub, hpke.HKDFSHA256(), hpke.AES256GCM(), info, material.Expose())
		if err != nil {
			return nil, fmt.Errorf("crypto: HPKE seal: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownWrapping, scheme)
}

// UnwrapImport opens key material a custodian wrapped for import with
// scheme: WrappingRSAAES with rsaPriv (UnwrapRSAAES; info is not used), or
// WrappingHPKE with hpkePriv (hpke.Open with HKDF-SHA-256, AES-256-GCM and
// info). The key the scheme does not use may be nil. It returns the
// material, a new secret the caller owns and wipes; check it with
// CheckMaterial. The private keys stay the caller's.
//
// Every failure of wrapped (another recipient or info, tampering,
// truncation) is the bare ErrUnwrap. An unknown scheme is
// ErrUnknownWrapping; a missing or unfit private key ErrInvalidKey; an
// HPKE KEM dcaas does not offer ErrUnknownKEM, or ErrNotApproved in FIPS
// mode.
func UnwrapImport(scheme string, rsaPriv *rsa.PrivateKey, hpkePriv hpke.PrivateKey, info, wrapped []byte) (*secret.Bytes, error) {
	switch scheme {
	case WrappingRSAAES:
		return UnwrapRSAAES(rsaPriv, wrapped)
	case WrappingHPKE:
		if hpkePriv == nil {
			return nil, fmt.Errorf("%w: no HPKE private key", ErrInvalidKey)
		}
		if _, err := kemOfID(hpkePriv.KEM().ID()); err != nil {
			return nil, err
		}
		m, err := hpke.Open(hpkePriv, hpke.HKDFSHA256(), hpke.AES256GCM(), info, wrapped)
		if err != nil {
			return nil, ErrUnwrap
		}
		return secret.New(m), nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownWrapping, scheme)
}
