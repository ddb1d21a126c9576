package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

// AEADKeySize is the key size of AEAD (AES-256).
const AEADKeySize = 32

// AEADOverhead is how much longer Seal's output is than its plaintext: the
// 12-byte nonce and the 16-byte tag.
const AEADOverhead = format.NonceLen + format.TagLen

// maxPlaintext bounds what one AES-GCM call may seal (the GCM limit,
// 2^36 - 32 bytes, rounded down), so outside input can never make GCM panic.
const maxPlaintext = 1 << 35

// AEAD is AES-256-GCM under one key, with a fresh random 96-bit nonce per
// message drawn inside the FIPS module (crypto/cipher.NewGCMWithRandomNonce).
// One key must seal at most 2^32 messages. An AEAD is safe for concurrent
// use. It keeps the AES key schedule, which the standard library gives no
// way to wipe; drop the AEAD when done with the key.
type AEAD struct {
	g cipher.AEAD
}

// NewAEAD returns an AEAD for key, which must be AEADKeySize bytes
// (ErrInvalidKey otherwise). The AEAD keeps no reference to key: the caller
// still owns it and may wipe it at once.
func NewAEAD(key *secret.Bytes) (*AEAD, error) {
	if key.Len() != AEADKeySize {
		return nil, fmt.Errorf("%w: AES-256-GCM key is %d bytes, want %d", ErrInvalidKey, key.Len(), AEADKeySize)
	}
	b, err := aes.NewCipher(key.Expose())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	g, err := cipher.NewGCMWithRandomNonce(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return &AEAD{g: g}, nil
}

// Seal encrypts and authenticates plaintext and authenticates aad, appends
// nonce(12) || ciphertext || tag(16) to dst and returns the extended slice.
// dst must not overlap plaintext. plaintext must be under 32 GiB (GCM's
// limit; Seal panics beyond it), which every caller's input limits ensure.
func (a *AEAD) Seal(dst, plaintext, aad []byte) []byte {
	return a.g.Seal(dst, nil, plaintext, aad)
}

// Open authenticates and decrypts sealed (as made by Seal) with aad, appends
// the plaintext to dst and returns the extended slice. Every failure is
// ErrDecrypt. dst must not overlap sealed. If the plaintext is secret, the
// caller owns and wipes it.
func (a *AEAD) Open(dst, sealed, aad []byte) ([]byte, error) {
	out, err := a.g.Open(dst, nil, sealed, aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return out, nil
}

// EncryptMessage encrypts plaintext into a format.Ciphertext naming keyID
// and version, appends its encoding to dst and returns the extended slice.
// The AEAD associated data is the ciphertext header (version, key id, key
// version) || u32 len(aad) || aad, so the ciphertext cannot be replayed under
// another key id or version. An invalid keyID or version is an error that
// wraps format.ErrMalformed. dst must not overlap plaintext.
func (a *AEAD) EncryptMessage(dst []byte, keyID string, version uint32, plaintext, aad []byte) ([]byte, error) {
	if err := format.CheckCiphertextKey(keyID, version); err != nil {
		return nil, err
	}
	if err := checkSizes(plaintext, aad); err != nil {
		return nil, err
	}
	start := len(dst)
	dst = (&format.Ciphertext{KeyID: keyID, KeyVersion: version}).AppendHeader(dst)
	return a.sealMessage(dst, dst[start:], plaintext, aad), nil
}

// DecryptMessage authenticates and decrypts ct with aad (see
// EncryptMessage), appends the plaintext to dst and returns the extended
// slice. A ct that fails ct.Validate is an error wrapping
// format.ErrMalformed; every authentication failure is ErrDecrypt.
func (a *AEAD) DecryptMessage(dst []byte, ct *format.Ciphertext, aad []byte) ([]byte, error) {
	if err := ct.Validate(); err != nil {
		return nil, err
	}
	var h [2 + format.MaxKeyIDLen + 4]byte
	return a.openMessage(dst, ct.AppendHeader(h[:0]), ct.Sealed, aad)
}

// sealMessage appends the sealing of plaintext to dst, which ends with
// header; the associated data is header || u32 len(aad) || aad.
func (a *AEAD) sealMessage(dst, header, plaintext, aad []byte) []byte {
	buf := getScratch()
	defer putScratch(buf)
	*buf = append((*buf)[:0], header...)
	*buf = appendMessageAAD(*buf, aad)
	return a.g.Seal(dst, nil, plaintext, *buf)
}

// openMessage opens sealed, whose ciphertext header was header.
func (a *AEAD) openMessage(dst, header, sealed, aad []byte) ([]byte, error) {
	if uint64(len(aad)) > math.MaxUint32 {
		return nil, ErrDecrypt
	}
	buf := getScratch()
	defer putScratch(buf)
	*buf = append((*buf)[:0], header...)
	*buf = appendMessageAAD(*buf, aad)
	return a.Open(dst, sealed, *buf)
}

func appendMessageAAD(b, aad []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(aad)))
	return append(b, aad...)
}

// checkSizes bounds what outside input may ask a message encryption to do.
func checkSizes(plaintext, aad []byte) error {
	if uint64(len(plaintext)) > maxPlaintext {
		return fmt.Errorf("%w: plaintext of %d bytes", ErrTooLarge, len(plaintext))
	}
	if uint64(len(aad)) > math.MaxUint32 {
		return fmt.Errorf("%w: associated data of %d bytes", ErrTooLarge, len(aad))
	}
	return nil
}

// scratch buffers hold message associated data (public, not wiped) so the
// hot path does not allocate.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

const maxPooledScratch = 64 << 10

func getScratch() *[]byte { return scratch.Get().(*[]byte) }

func putScratch(b *[]byte) {
	if cap(*b) <= maxPooledScratch {
		scratch.Put(b)
	}
}
