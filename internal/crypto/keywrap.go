package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/dcaas/dcaas/internal/secret"
)

// ErrUnwrap is the one opaque error of every failed key unwrap, whatever
// its cause: wrong key-encryption key, tampered or truncated input, a bad
// integrity check value, length or padding, an RSA-OAEP failure. It wraps
// ErrDecrypt, so errors.Is(err, ErrDecrypt) also holds.
var ErrUnwrap = fmt.Errorf("crypto: key unwrap failed: %w", ErrDecrypt)

// kwpAIV is the high half of the RFC 5649 alternative initial value; the
// low half is the 32-bit big-endian length of the key data (MLI).
var kwpAIV = [4]byte{0xa6, 0x59, 0x59, 0xa6}

// kwpMaxLen is the largest key data RFC 5649 can wrap: the MLI is 32 bits.
const kwpMaxLen = math.MaxUint32

// WrapKeyPadded wraps plaintext (1 to 2^32-1 bytes of key data) under kek
// with the AES key wrap with padding of RFC 5649 (NIST SP 800-38F KWP-AE)
// and returns the result, 8 to 15 bytes longer than plaintext, in a new
// slice the caller owns (not secret). kek is an AES key of 16, 24 or 32
// bytes (ErrInvalidKey otherwise); it and plaintext stay the caller's.
//
// The construction: AIV = A65959A6 || uint32 length; the key data is padded
// with zeros to a multiple of 8 bytes; 8 bytes of padded data are one AES
// block encryption of AIV || data, more are the RFC 3394 wrapping process W
// with AIV as its initial value. Deterministic: the same kek and plaintext
// always give the same output.
//
// FIPS 140-3: KWP is an approved mode (SP 800-38F), but this construction
// runs outside the Go module's boundary, on its approved AES block cipher.
// The AES key schedule cannot be wiped (see AEAD).
func WrapKeyPadded(kek *secret.Bytes, plaintext []byte) ([]byte, error) {
	if len(plaintext) == 0 {
		return nil, fmt.Errorf("%w: key wrap of empty key data", ErrInvalidKey)
	}
	if uint64(len(plaintext)) > kwpMaxLen {
		return nil, fmt.Errorf("%w: key wrap of %d bytes (at most 2^32-1)", ErrTooLarge, len(plaintext))
	}
	b, err := kwpCipher(kek)
	if err != nil {
		return nil, err
	}
	n := (len(plaintext) + 7) / 8 // semiblocks of padded key data
	out := make([]byte, 8*(n+1))
	copy(out[:4], kwpAIV[:])
	binary.BigEndian.PutUint32(out[4:8], uint32(len(plaintext)))
	copy(out[8:], plaintext) // the rest of out is already the zero padding
	kwpSeal(b, out)
	return out, nil
}

// kwpSeal encrypts buf = A || R[1..n] in place (n >= 1): one block
// encryption if n = 1, else the RFC 3394 wrapping process W (§2.2.1,
// index-based) with initial value A.
func kwpSeal(b cipher.Block, buf []byte) {
	n := len(buf)/8 - 1
	if n == 1 {
		b.Encrypt(buf, buf)
		return
	}
	var blk [16]byte
	for j := range 6 {
		for i := 1; i <= n; i++ {
			copy(blk[:8], buf[:8])
			copy(blk[8:], buf[8*i:8*i+8])
			b.Encrypt(blk[:], blk[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(buf[:8], binary.BigEndian.Uint64(blk[:8])^t)
			copy(buf[8*i:8*i+8], blk[8:])
		}
	}
	clear(blk[:])
}

// kwpOpen reverses kwpSeal in place.
func kwpOpen(b cipher.Block, buf []byte) {
	n := len(buf)/8 - 1
	if n == 1 {
		b.Decrypt(buf, buf)
		return
	}
	var blk [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(blk[:8], binary.BigEndian.Uint64(buf[:8])^t)
			copy(blk[8:], buf[8*i:8*i+8])
			b.Decrypt(blk[:], blk[:])
			copy(buf[:8], blk[:8])
			copy(buf[8*i:8*i+8], blk[8:])
		}
	}
	clear(blk[:])
}

// UnwrapKeyPadded reverses WrapKeyPadded (NIST SP 800-38F KWP-AD): it
// returns the key data that wrapped holds, a new secret the caller owns and
// wipes. kek is an AES key of 16, 24 or 32 bytes (ErrInvalidKey otherwise);
// it and wrapped stay the caller's. Every other failure, from a length under
// 16 bytes or not a multiple of 8, through another kek, to a wrong
// integrity check value, length indicator or non-zero padding, is the bare
// ErrUnwrap. The checks of the unwrapped value run in constant time.
func UnwrapKeyPadded(kek *secret.Bytes, wrapped []byte) (*secret.Bytes, error) {
	b, err := kwpCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < 16 || len(wrapped)%8 != 0 || uint64(len(wrapped)) > 8*((kwpMaxLen+7)/8+1) {
		return nil, ErrUnwrap
	}
	n := len(wrapped)/8 - 1
	buf := make([]byte, len(wrapped)) // A || R[1..n]; R is the secret key data
	copy(buf, wrapped)
	kwpOpen(b, buf)
	// RFC 5649 §3: the high half of A is the AIV constant, the MLI is in
	// 8(n-1)+1 .. 8n, and the 8n-MLI padding bytes are zero.
	ok := subtle.ConstantTimeCompare(buf[:4], kwpAIV[:])
	mli := uint64(binary.BigEndian.Uint32(buf[4:8]))
	ok &= ctLessOrEq(uint64(8*(n-1)+1), mli) & ctLessOrEq(mli, uint64(8*n))
	var pad byte
	for k := 8 * n; k < 8*n+8; k++ { // the last semiblock of key data
		// buf[k] is key data byte k-8; it is padding iff k-8 >= mli.
		isPad := ctLessOrEq(mli, uint64(k-8))
		pad |= buf[k] & byte(-isPad)
	}
	ok &= subtle.ConstantTimeByteEq(pad, 0)
	if ok != 1 {
		clear(buf)
		return nil, ErrUnwrap
	}
	key := secret.Copy(buf[8 : 8+mli])
	clear(buf)
	return key, nil
}

// kwpCipher returns the AES block cipher of a key-encryption key.
func kwpCipher(kek *secret.Bytes) (cipher.Block, error) {
	switch kek.Len() {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: AES key-encryption key is %d bytes, want 16, 24 or 32", ErrInvalidKey, kek.Len())
	}
	b, err := aes.NewCipher(kek.Expose())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return b, nil
}

// ctLessOrEq returns 1 if x <= y and 0 otherwise, in constant time, for
// x and y below 2^63.
func ctLessOrEq(x, y uint64) int {
	return int(1 ^ ((y - x) >> 63))
}
