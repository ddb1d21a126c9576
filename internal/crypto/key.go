package crypto

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

// Key is an operation handle on one version of a data key: the only way
// dcaas uses a data key. Which methods work depends on its type; the others
// return ErrWrongKeyType:
//
//   - aes-256-gcm: Encrypt, Decrypt (format.Ciphertext naming the key);
//   - hmac-sha256: MAC, VerifyMAC;
//   - ed25519, ecdsa-p256, ml-dsa-65: Sign, Verify.
//
// A Key is safe for concurrent use, except Wipe, which its owner calls once
// every other call has returned. It never prints its material: String,
// Format, GoString and MarshalJSON show only type, key id and version.
type Key struct {
	typ      api.KeyType
	keyID    string
	version  uint32
	material *secret.Bytes // a copy the Key owns; nil once wiped

	header []byte              // aes: the format.Ciphertext header naming keyID, version
	aead   *AEAD               // aes
	ed     ed25519.PrivateKey  // ed25519: seed || public key
	edPub  ed25519.PublicKey   // ed25519
	ec     *ecdsa.PrivateKey   // ecdsa-p256
	ml     *mldsa65.PrivateKey // ml-dsa-65
	mlPub  *mldsa65.PublicKey  // ml-dsa-65
}

// NewKey returns a handle on version of the data key keyID of type t with
// the given material (see GenerateKey for encodings). It copies material,
// which stays the caller's. keyID and version must be valid for a
// format.Ciphertext (errors wrap format.ErrMalformed); bad material is
// ErrInvalidKey, an unimplemented type ErrUnsupported.
func NewKey(t api.KeyType, keyID string, version uint32, material *secret.Bytes) (*Key, error) {
	if err := format.CheckCiphertextKey(keyID, version); err != nil {
		return nil, err
	}
	if err := CheckMaterial(t, material); err != nil {
		return nil, err
	}
	if t == api.KeyAES256KBPK {
		return nil, fmt.Errorf("%w: an aes-256-kbpk key only protects TR-31 key blocks, in the KMS", ErrWrongKeyType)
	}
	k := &Key{typ: t, keyID: keyID, version: version, material: material.Clone()}
	switch t {
	case api.KeyAES256GCM:
		a, err := NewAEAD(k.material)
		if err != nil {
			k.Wipe()
			return nil, err
		}
		k.aead = a
		k.header = (&format.Ciphertext{KeyID: keyID, KeyVersion: version}).Header()
	case api.KeyEd25519:
		k.ed = ed25519.NewKeyFromSeed(k.material.Expose())
		k.edPub = k.ed.Public().(ed25519.PublicKey)
	case api.KeyECDSAP256:
		ec, err := parseECDSA(k.material)
		if err != nil {
			k.Wipe()
			return nil, err
		}
		k.ec = ec
	case api.KeyMLDSA65:
		pub, priv, err := newMLDSA(k.material)
		if err != nil {
			k.Wipe()
			return nil, err
		}
		k.ml, k.mlPub = priv, pub
	}
	return k, nil
}

// Type is the key's type.
func (k *Key) Type() api.KeyType { return k.typ }

// KeyID is the key's id.
func (k *Key) KeyID() string { return k.keyID }

// Version is the key's version.
func (k *Key) Version() uint32 { return k.version }

// check returns ErrClosed after Wipe and ErrWrongKeyType unless the key is
// of type t.
func (k *Key) check(t api.KeyType, op string) error {
	if k.material == nil {
		return ErrClosed
	}
	if k.typ != t {
		return fmt.Errorf("%w: cannot %s with a %s key", ErrWrongKeyType, op, k.typ)
	}
	return nil
}

// Encrypt encrypts plaintext with aad (aes-256-gcm keys), appends the
// format.Ciphertext encoding to dst and returns the extended slice; see
// AEAD.EncryptMessage for the construction. dst must not overlap plaintext.
func (k *Key) Encrypt(dst, plaintext, aad []byte) ([]byte, error) {
	if err := k.check(api.KeyAES256GCM, "encrypt"); err != nil {
		return nil, err
	}
	if err := checkSizes(plaintext, aad); err != nil {
		return nil, err
	}
	start := len(dst)
	dst = append(dst, k.header...)
	return k.aead.sealMessage(dst, dst[start:], plaintext, aad), nil
}

// Decrypt decrypts ciphertext, a format.Ciphertext encoding, with aad
// (aes-256-gcm keys), appends the plaintext to dst and returns the extended
// slice. A malformed ciphertext is an error wrapping format.ErrMalformed;
// one naming another key id or version, or failing authentication, is
// ErrDecrypt. dst must not overlap ciphertext.
func (k *Key) Decrypt(dst, ciphertext, aad []byte) ([]byte, error) {
	if err := k.check(api.KeyAES256GCM, "decrypt"); err != nil {
		return nil, err
	}
	header, sealed, err := format.SplitCiphertext(ciphertext)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(header, k.header) {
		return nil, ErrDecrypt
	}
	return k.aead.openMessage(dst, header, sealed, aad)
}

// Sign signs msg (ed25519, ecdsa-p256, ml-dsa-65 keys) and returns the
// signature in a new slice the caller owns: Ed25519's 64 bytes, ECDSA over
// SHA-256 in ASN.1 DER, or ML-DSA-65's 3309 bytes (FIPS 204, pure, empty
// context, hedged).
func (k *Key) Sign(msg []byte) ([]byte, error) {
	if k.material == nil {
		return nil, ErrClosed
	}
	switch k.typ {
	case api.KeyEd25519:
		return ed25519.Sign(k.ed, msg), nil
	case api.KeyECDSAP256:
		d := sha256.Sum256(msg)
		sig, err := ecdsa.SignASN1(rand.Reader, k.ec, d[:])
		if err != nil {
			return nil, fmt.Errorf("crypto: ecdsa sign: %w", err)
		}
		return sig, nil
	case api.KeyMLDSA65:
		return mldsaSign(k.ml, msg)
	}
	return nil, fmt.Errorf("%w: cannot sign with a %s key", ErrWrongKeyType, k.typ)
}

// Verify reports whether sig is a valid signature of msg (ed25519,
// ecdsa-p256, ml-dsa-65 keys; see Sign). An invalid signature is
// (false, nil).
func (k *Key) Verify(msg, sig []byte) (bool, error) {
	if k.material == nil {
		return false, ErrClosed
	}
	switch k.typ {
	case api.KeyEd25519:
		return ed25519.Verify(k.edPub, msg, sig), nil
	case api.KeyECDSAP256:
		d := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(&k.ec.PublicKey, d[:], sig), nil
	case api.KeyMLDSA65:
		return mldsaVerify(k.mlPub, msg, sig), nil
	}
	return false, fmt.Errorf("%w: cannot verify with a %s key", ErrWrongKeyType, k.typ)
}

// MAC returns the HMAC-SHA-256 of msg (hmac-sha256 keys), 32 bytes in a new
// slice the caller owns.
func (k *Key) MAC(msg []byte) ([]byte, error) {
	if err := k.check(api.KeyHMACSHA256, "compute a MAC"); err != nil {
		return nil, err
	}
	return k.mac(msg), nil
}

func (k *Key) mac(msg []byte) []byte {
	h := hmac.New(sha256.New, k.material.Expose())
	h.Write(msg)
	return h.Sum(make([]byte, 0, sha256.Size))
}

// VerifyMAC reports, in constant time, whether tag is the HMAC-SHA-256 of
// msg (hmac-sha256 keys). A wrong tag, truncated ones included, is
// (false, nil).
func (k *Key) VerifyMAC(msg, tag []byte) (bool, error) {
	if err := k.check(api.KeyHMACSHA256, "verify a MAC"); err != nil {
		return false, err
	}
	return hmac.Equal(k.mac(msg), tag), nil
}

// Wipe overwrites the key's material and its Ed25519 and ML-DSA-65 private
// keys and drops every reference to key state. What the standard library
// keeps cannot be wiped: the AES key schedule inside the AEAD and the
// ecdsa.PrivateKey internals become garbage for the collector. After Wipe
// every method returns ErrClosed. Wipe is idempotent.
func (k *Key) Wipe() {
	k.material.Wipe()
	k.material = nil
	clear(k.ed)
	wipeMLDSA(k.ml)
	k.ed, k.edPub, k.ec, k.aead, k.ml, k.mlPub = nil, nil, nil, nil, nil, nil
}

// String describes the key without its material.
func (k Key) String() string {
	return fmt.Sprintf("crypto.Key{%s %q v%d [REDACTED]}", k.typ, k.keyID, k.version)
}

// GoString describes the key without its material.
func (k Key) GoString() string { return k.String() }

// Format prints String for every verb, so no formatting exposes material.
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// MarshalJSON encodes the key's type, id and version, never its material.
func (k Key) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Type    api.KeyType `json:"type"`
		KeyID   string      `json:"key_id"`
		Version uint32      `json:"version"`
	}{k.typ, k.keyID, k.version})
}
