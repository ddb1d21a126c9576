package format

import (
	"encoding/binary"
	"unicode/utf8"
)

const ctWhat = "ciphertext"

// MinCiphertextSealed is the smallest Sealed of a Ciphertext: nonce and tag
// around an empty plaintext.
const MinCiphertextSealed = NonceLen + TagLen

// Ciphertext is what an encrypt operation returns: self-describing (format
// version, key id, key version) so decrypt needs nothing but it and the
// associated data. It has no magic, to stay small. Layout (docs/formats.md):
//
//	version u8 | key_id u8-len | key_version u32 | nonce [12] | ciphertext || tag
//
// The header (version, key id, key version) is bound into the AEAD's
// associated data by internal/crypto, so a ciphertext cannot be replayed
// under another key id or version. Nothing in it is secret.
type Ciphertext struct {
	KeyID      string // 1..MaxKeyIDLen bytes of UTF-8
	KeyVersion uint32 // >= 1
	// Sealed is the nonce, the AES-GCM ciphertext and the tag: at least
	// MinCiphertextSealed bytes. It is the output of an AEAD that draws its
	// nonce and puts it first (crypto/cipher.NewGCMWithRandomNonce).
	Sealed []byte
}

// CheckCiphertextKey reports whether a ciphertext header can name keyID and
// version; the error wraps ErrMalformed.
func CheckCiphertextKey(keyID string, version uint32) error {
	return firstErr(
		checkString(ctWhat, "key_id", keyID, MaxKeyIDLen),
		checkVersion(ctWhat, "key_version", version),
	)
}

// Validate reports whether c can be marshaled; the error wraps ErrMalformed.
func (c *Ciphertext) Validate() error {
	if err := CheckCiphertextKey(c.KeyID, c.KeyVersion); err != nil {
		return err
	}
	if len(c.Sealed) < MinCiphertextSealed {
		return malformed(ctWhat, "sealed length %d < %d", len(c.Sealed), MinCiphertextSealed)
	}
	return nil
}

// Header returns the header of c (version, key id, key version) in a new
// slice the caller owns. Sealed need not be set. It panics if the key id or
// version is invalid (see CheckCiphertextKey).
func (c *Ciphertext) Header() []byte {
	return c.AppendHeader(make([]byte, 0, 1+1+len(c.KeyID)+4))
}

// AppendHeader appends the header of c to dst and returns the extended
// slice. Sealed need not be set. It panics if the key id or version is
// invalid (see CheckCiphertextKey).
func (c *Ciphertext) AppendHeader(dst []byte) []byte {
	mustValid(CheckCiphertextKey(c.KeyID, c.KeyVersion))
	return appendCiphertextHeader(dst, c.KeyID, c.KeyVersion)
}

func appendCiphertextHeader(b []byte, keyID string, version uint32) []byte {
	b = append(b, Version, byte(len(keyID)))
	b = append(b, keyID...)
	return appendU32(b, version)
}

// Marshal returns the encoding of c in a new slice the caller owns. It
// panics if c is invalid (see Validate).
func (c *Ciphertext) Marshal() []byte {
	return c.AppendMarshal(make([]byte, 0, 1+1+len(c.KeyID)+4+len(c.Sealed)))
}

// AppendMarshal appends the encoding of c to dst and returns the extended
// slice; it allocates only if dst lacks capacity. It panics if c is invalid
// (see Validate).
func (c *Ciphertext) AppendMarshal(dst []byte) []byte {
	mustValid(c.Validate())
	dst = appendCiphertextHeader(dst, c.KeyID, c.KeyVersion)
	return append(dst, c.Sealed...)
}

// SplitCiphertext checks the ciphertext b and splits it, without copying or
// allocating, into its header (version, key id, key version: the bytes
// Header would produce) and Sealed (nonce, ciphertext, tag). Both alias b.
// Every error wraps ErrMalformed.
func SplitCiphertext(b []byte) (header, sealed []byte, err error) {
	if len(b) < 2 {
		return nil, nil, malformed(ctWhat, "truncated at header")
	}
	if b[0] != Version {
		return nil, nil, malformed(ctWhat, "unknown version %d", b[0])
	}
	n := int(b[1])
	if n < 1 || n > MaxKeyIDLen {
		return nil, nil, malformed(ctWhat, "key_id length %d not in 1..%d", n, MaxKeyIDLen)
	}
	hl := 2 + n + 4
	if len(b) < hl+MinCiphertextSealed {
		return nil, nil, malformed(ctWhat, "length %d too short", len(b))
	}
	if !utf8.Valid(b[2 : 2+n]) {
		return nil, nil, malformed(ctWhat, "key_id is not UTF-8")
	}
	if binary.BigEndian.Uint32(b[2+n:hl]) == 0 {
		return nil, nil, malformed(ctWhat, "key_version is 0")
	}
	return b[:hl:hl], b[hl:], nil
}

// ParseCiphertext parses a ciphertext. For speed, the result's Sealed
// aliases b: the caller must not modify b while it uses the result. Every
// error wraps ErrMalformed.
func ParseCiphertext(b []byte) (*Ciphertext, error) {
	h, sealed, err := SplitCiphertext(b)
	if err != nil {
		return nil, err
	}
	return &Ciphertext{
		KeyID:      string(h[2 : len(h)-4]),
		KeyVersion: binary.BigEndian.Uint32(h[len(h)-4:]),
		Sealed:     sealed,
	}, nil
}

// PeekCiphertextKey returns the key id and version a ciphertext names, to
// route it to its key, after the same checks as ParseCiphertext. It
// allocates only the key id string. Errors wrap ErrMalformed.
func PeekCiphertextKey(b []byte) (keyID string, version uint32, err error) {
	h, _, err := SplitCiphertext(b)
	if err != nil {
		return "", 0, err
	}
	return string(h[2 : len(h)-4]), binary.BigEndian.Uint32(h[len(h)-4:]), nil
}
