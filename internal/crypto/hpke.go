package crypto

import (
	"crypto/ecdh"
	"crypto/hpke"
	"fmt"

	"github.com/dcaas/dcaas/api"
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
