package crypto

import (
	"crypto/ecdh"
	"crypto/hpke"
	"fmt"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

// KEMPrivateKey and KEMPublicKey are the HPKE (RFC 9180) key handles of
// crypto/hpke, named here so that code outside this package and the
// enclaves can hold, pass and store them without importing the primitive.
type (
	KEMPrivateKey = hpke.PrivateKey
	KEMPublicKey  = hpke.PublicKey
)

// HPKE KEM identifiers (RFC 9180 §7.1, draft-ietf-hpke-pq).
const (
	KEMIDP256           uint16 = 0x0010
	KEMIDX25519         uint16 = 0x0020
	KEMIDMLKEM768P256   uint16 = 0x0050
	KEMIDMLKEM768X25519 uint16 = 0x647a
)

// kemSuite is one KEM dcaas offers. HPKE always runs with HKDF-SHA-256 and
// AES-256-GCM.
type kemSuite struct {
	name     api.KEM
	id       uint16
	kem      func() hpke.KEM
	approved bool // FIPS 140-3 approved
}

var kemSuites = []kemSuite{
	{api.KEMX25519, KEMIDX25519, func() hpke.KEM { return hpke.DHKEM(ecdh.X25519()) }, false},
	{api.KEMP256, KEMIDP256, func() hpke.KEM { return hpke.DHKEM(ecdh.P256()) }, true},
	{api.KEMMLKEM768X25519, KEMIDMLKEM768X25519, hpke.MLKEM768X25519, false},
	{api.KEMMLKEM768P256, KEMIDMLKEM768P256, hpke.MLKEM768P256, true},
}

// KEMOf returns the HPKE KEM named k: x25519 is DHKEM(X25519, HKDF-SHA256),
// p256 DHKEM(P-256, HKDF-SHA256), mlkem768-x25519 the X-Wing hybrid and
// mlkem768-p256 the ML-KEM-768 + P-256 hybrid. In FIPS mode the two X25519
// KEMs are ErrNotApproved. An unknown name is ErrUnknownKEM.
func KEMOf(k api.KEM) (hpke.KEM, error) {
	for _, s := range kemSuites {
		if s.name == k {
			if !s.approved && FIPS() {
				return nil, fmt.Errorf("%w: KEM %s in FIPS 140-3 mode (use %s or %s)", ErrNotApproved, k, api.KEMP256, api.KEMMLKEM768P256)
			}
			return s.kem(), nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownKEM, string(k))
}

// KEMName returns the name of the KEM with HPKE identifier id, whether or
// not it is approved; ErrUnknownKEM if dcaas does not offer it.
func KEMName(id uint16) (api.KEM, error) {
	for _, s := range kemSuites {
		if s.id == id {
			return s.name, nil
		}
	}
	return "", fmt.Errorf("%w: id 0x%04x", ErrUnknownKEM, id)
}

// kemOfID is KEMOf by identifier.
func kemOfID(id uint16) (hpke.KEM, error) {
	name, err := KEMName(id)
	if err != nil {
		return nil, err
	}
	return KEMOf(name)
}

// DefaultKEM is the KEM a new sidecar uses unless told otherwise: x25519,
// or p256 in FIPS mode.
func DefaultKEM() api.KEM {
	if FIPS() {
		return api.KEMP256
	}
	return api.KEMX25519
}

// GenerateKEMKey returns a new HPKE private key for KEM k (see KEMOf for
// errors). The private key is secret; crypto/hpke gives no way to wipe it.
func GenerateKEMKey(k api.KEM) (hpke.PrivateKey, error) {
	kem, err := KEMOf(k)
	if err != nil {
		return nil, err
	}
	priv, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("crypto: generate %s key: %w", k, err)
	}
	return priv, nil
}

// ParseKEMPublicKey returns the HPKE public key pk describes (see KEMOf for
// the KEM errors); a key that does not decode is ErrInvalidKey.
func ParseKEMPublicKey(pk api.PublicKey) (hpke.PublicKey, error) {
	kem, err := KEMOf(pk.KEM)
	if err != nil {
		return nil, err
	}
	pub, err := kem.NewPublicKey(pk.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %s public key does not decode", ErrInvalidKey, pk.KEM)
	}
	return pub, nil
}

// MarshalKEMPublicKey returns the wire form of pub, e.g. the public half
// of a GenerateKEMKey result for an enrollment request. A KEM dcaas does
// not offer is ErrUnknownKEM. The result's bytes are the caller's.
func MarshalKEMPublicKey(pub hpke.PublicKey) (api.PublicKey, error) {
	name, err := KEMName(pub.KEM().ID())
	if err != nil {
		return api.PublicKey{}, err
	}
	return api.PublicKey{KEM: name, PublicKey: pub.Bytes()}, nil
}

// CheckKEMPublicKey reports whether key is a valid public key of KEM k,
// whether or not k is approved in FIPS mode (a certificate may carry a
// key its holder cannot use here): ErrUnknownKEM for a KEM dcaas does not
// offer, otherwise the decoding error.
func CheckKEMPublicKey(k api.KEM, key []byte) error {
	for _, s := range kemSuites {
		if s.name == k {
			_, err := s.kem().NewPublicKey(key)
			return err
		}
	}
	return fmt.Errorf("%w: %q", ErrUnknownKEM, string(k))
}

// HPKESeal is single-shot HPKE base mode (RFC 9180 §6.1) to pub with
// HKDF-SHA-256 and AES-256-GCM: enc || ciphertext, the construction of
// WrappingHPKE and of the enclave transport keys. plaintext stays the
// caller's; the result is the caller's. pub's KEM is not checked against
// what dcaas offers: its holder (ParseKEMPublicKey, an enclave) did that.
func HPKESeal(pub KEMPublicKey, info, plaintext []byte) ([]byte, error) {
	out, err := hpke.Seal(pub, hpke.HKDFSHA256(), hpke.AES256GCM(), info, plaintext)
	if err != nil {
		return nil, fmt.Errorf("crypto: HPKE seal: %w", err)
	}
	return out, nil
}

// HPKEOpen reverses HPKESeal with priv. Every failure to open is
// ErrDecrypt. The result is a new secret the caller owns and wipes.
func HPKEOpen(priv KEMPrivateKey, info, sealed []byte) (*secret.Bytes, error) {
	pt, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(), info, sealed)
	if err != nil {
		return nil, ErrDecrypt
	}
	return secret.New(pt), nil
}
