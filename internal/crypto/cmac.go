package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"fmt"

	"github.com/dcaas/dcaas/internal/secret"
)

// CMACSize is the length of a full AES-CMAC tag.
const CMACSize = aes.BlockSize

// CMAC is AES-CMAC (RFC 4493, NIST SP 800-38B) under one key: the MAC of
// key check values (ANSI X9.24-1) and of TR-31 / ANSI X9.143 key blocks.
// Go's standard library has no exported CMAC, so this is the one hand-made
// mode in the module, built on crypto/aes and proven by the RFC 4493 and
// SP 800-38B examples (cmac_test.go) and by OpenSSL's own CMAC.
//
// FIPS 140-3: CMAC is an approved MAC (SP 800-38B), but this construction
// runs outside the Go module's boundary, on its approved AES block cipher.
// A CMAC holds the AES key schedule and the two subkeys; it is safe for
// concurrent use (Sum keeps its state on the stack).
type CMAC struct {
	b      cipher.Block
	k1, k2 [aes.BlockSize]byte
}

// NewCMAC returns the CMAC of an AES key of 16, 24 or 32 bytes
// (ErrInvalidKey otherwise). key stays the caller's.
func NewCMAC(key *secret.Bytes) (*CMAC, error) {
	k := key.Expose()
	switch len(k) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: an AES-CMAC key is 16, 24 or 32 bytes, not %d", ErrInvalidKey, len(k))
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	c := &CMAC{b: b}
	// Subkeys (RFC 4493 §2.3): L = AES(K, 0^128); K1 = L·x, K2 = K1·x in
	// GF(2^128) with the polynomial x^128 + x^7 + x^2 + x + 1 (Rb = 0x87).
	var l [aes.BlockSize]byte
	b.Encrypt(l[:], l[:])
	double(&c.k1, &l)
	double(&c.k2, &c.k1)
	clear(l[:])
	return c, nil
}

// double sets dst to src·x in GF(2^128), in constant time.
func double(dst, src *[aes.BlockSize]byte) {
	carry := src[0] >> 7
	for i := 0; i < aes.BlockSize-1; i++ {
		dst[i] = src[i]<<1 | src[i+1]>>7
	}
	dst[aes.BlockSize-1] = src[aes.BlockSize-1]<<1 ^ (0-carry)&0x87 // 0xff·0x87 when the top bit was set
}

// Sum returns the 16-byte tag of msg (RFC 4493 §2.4).
func (c *CMAC) Sum(msg []byte) [CMACSize]byte {
	var x, last [aes.BlockSize]byte
	n := (len(msg) + aes.BlockSize - 1) / aes.BlockSize
	complete := n > 0 && len(msg)%aes.BlockSize == 0
	if n == 0 {
		n = 1
	}
	for i := 0; i < n-1; i++ {
		subtle.XORBytes(x[:], x[:], msg[i*aes.BlockSize:(i+1)*aes.BlockSize])
		c.b.Encrypt(x[:], x[:])
	}
	tail := msg[(n-1)*aes.BlockSize:]
	if complete {
		subtle.XORBytes(last[:], tail, c.k1[:])
	} else {
		copy(last[:], tail)
		last[len(tail)] = 0x80
		subtle.XORBytes(last[:], last[:], c.k2[:])
	}
	subtle.XORBytes(x[:], x[:], last[:])
	c.b.Encrypt(x[:], x[:])
	return x
}

// Verify reports, in constant time, whether tag is the first len(tag) bytes
// of msg's CMAC. Tags shorter than 8 bytes are refused (SP 800-38B
// appendix A advises at least 64 bits).
func (c *CMAC) Verify(msg, tag []byte) bool {
	if len(tag) < 8 || len(tag) > CMACSize {
		return false
	}
	sum := c.Sum(msg)
	return subtle.ConstantTimeCompare(sum[:len(tag)], tag) == 1
}
