package crypto

import (
	"encoding/asn1"
	"encoding/pem"
	"fmt"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

// ML-DSA-65 (FIPS 204) comes from github.com/cloudflare/circl until the
// standard library exports its own (crypto/internal/fips140/mldsa). circl
// is not a validated module, so in FIPS mode every ml-dsa-65 operation is
// ErrNotApproved.
//
// Material is the 32-byte seed ξ of ML-DSA.KeyGen (FIPS 204 Algorithm 1),
// from which ML-DSA.KeyGen_internal derives the key pair deterministically.
// Signatures are the raw 3309-byte FIPS 204 encoding, made with the
// external (pure) interface, an empty context string and hedged
// (randomized) signing.

// oidMLDSA65 is id-ml-dsa-65 (NIST CSOR), the SubjectPublicKeyInfo
// algorithm of RFC 9881 §2, with absent parameters.
var oidMLDSA65 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18}

// MLDSA65SignatureSize is the size of an ml-dsa-65 signature.
const MLDSA65SignatureSize = mldsa65.SignatureSize

// mldsaAllowed refuses ml-dsa-65 in FIPS mode.
func mldsaAllowed() error {
	if FIPS() {
		return fmt.Errorf("%w: %s in FIPS 140-3 mode (its implementation, cloudflare/circl, is not a validated module)", ErrNotApproved, api.KeyMLDSA65)
	}
	return nil
}

// checkMLDSA refuses ml-dsa-65 in FIPS mode and material that is not a
// seed.
func checkMLDSA(material *secret.Bytes) error {
	if err := mldsaAllowed(); err != nil {
		return err
	}
	if material.Len() != mldsa65.SeedSize {
		return fmt.Errorf("%w: %s material is %d bytes, want %d", ErrInvalidKey, api.KeyMLDSA65, material.Len(), mldsa65.SeedSize)
	}
	return nil
}

// generateMLDSA returns a new ml-dsa-65 seed.
func generateMLDSA() (*secret.Bytes, error) {
	if err := mldsaAllowed(); err != nil {
		return nil, err
	}
	return secret.New(Random(mldsa65.SeedSize)), nil
}

// newMLDSA expands a checked seed into its key pair. The private key is
// secret; wipe it with wipeMLDSA.
func newMLDSA(material *secret.Bytes) (*mldsa65.PublicKey, *mldsa65.PrivateKey, error) {
	if err := checkMLDSA(material); err != nil {
		return nil, nil, err
	}
	var seed [mldsa65.SeedSize]byte
	copy(seed[:], material.Expose())
	pub, priv := mldsa65.NewKeyFromSeed(&seed)
	clear(seed[:])
	return pub, priv, nil
}

// wipeMLDSA overwrites an expanded private key (circl keeps it in plain
// arrays, so this reaches all of it).
func wipeMLDSA(priv *mldsa65.PrivateKey) {
	if priv != nil {
		*priv = mldsa65.PrivateKey{}
	}
}

// mldsaSign signs msg with hedged randomness and an empty context.
func mldsaSign(priv *mldsa65.PrivateKey, msg []byte) ([]byte, error) {
	sig := make([]byte, mldsa65.SignatureSize)
	if err := mldsa65.SignTo(priv, msg, nil, true, sig); err != nil {
		return nil, fmt.Errorf("crypto: ml-dsa-65 sign: %w", err)
	}
	return sig, nil
}

// mldsaVerify verifies sig on msg with an empty context.
func mldsaVerify(pub *mldsa65.PublicKey, msg, sig []byte) bool {
	if len(sig) != mldsa65.SignatureSize {
		return false
	}
	return mldsa65.Verify(pub, msg, nil, sig)
}

// mldsaPublicKeyPEM returns the PKIX PEM of the public key of a seed.
func mldsaPublicKeyPEM(material *secret.Bytes) (string, error) {
	pub, priv, err := newMLDSA(material)
	if err != nil {
		return "", err
	}
	wipeMLDSA(priv)
	der, err := marshalMLDSAPublicKey(pub)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// marshalMLDSAPublicKey returns the DER SubjectPublicKeyInfo of pub
// (RFC 9881 §4): AlgorithmIdentifier id-ml-dsa-65 without parameters, and
// the 1952-byte raw public key as the BIT STRING.
func marshalMLDSAPublicKey(pub *mldsa65.PublicKey) ([]byte, error) {
	raw := pub.Bytes()
	spki := struct {
		Algorithm struct{ Algorithm asn1.ObjectIdentifier }
		PublicKey asn1.BitString
	}{}
	spki.Algorithm.Algorithm = oidMLDSA65
	spki.PublicKey = asn1.BitString{Bytes: raw, BitLength: 8 * len(raw)}
	der, err := asn1.Marshal(spki)
	if err != nil {
		return nil, fmt.Errorf("crypto: marshal ml-dsa-65 public key: %w", err)
	}
	return der, nil
}
