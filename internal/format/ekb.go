package format

import (
	"crypto/sha256"
	"unicode/utf8"
)

const (
	ekbMagic = "DEKB"
	ekbWhat  = "EKB"
)

// EKB is an encrypted key blob: a data key sealed under a tenant master key,
// with its metadata bound as associated data. Layout (docs/formats.md):
//
//	"DEKB" | version u8 | tenant u16-len | tmk_version u32 | key_id u16-len |
//	key_version u32 | metadata u32-len | salt [32] | sealed (rest)
//
// Nothing in an EKB is secret: Sealed is ciphertext. internal/crypto's
// SealEKB fills Salt and Sealed; OpenEKB opens them.
type EKB struct {
	Tenant     string // 1..MaxTenantLen bytes of UTF-8
	TMKVersion uint32 // tenant master key version, >= 1
	KeyID      string // 1..MaxKeyIDLen bytes of UTF-8
	KeyVersion uint32 // >= 1
	Metadata   []byte // 0..MaxMetadataLen bytes: canonical JSON of api.KeyMetadata
	Salt       [32]byte
	Sealed     []byte // nonce || ciphertext || tag, MinSealedLen..MaxSealedLen bytes
}

// ValidateHeader reports whether the fields of e other than Sealed can be
// marshaled (see Header); the error wraps ErrMalformed.
func (e *EKB) ValidateHeader() error {
	return firstErr(
		checkString(ekbWhat, "tenant", e.Tenant, MaxTenantLen),
		checkVersion(ekbWhat, "tmk_version", e.TMKVersion),
		checkString(ekbWhat, "key_id", e.KeyID, MaxKeyIDLen),
		checkVersion(ekbWhat, "key_version", e.KeyVersion),
		checkLen(ekbWhat, "metadata", len(e.Metadata), 0, MaxMetadataLen),
	)
}

// Validate reports whether e can be marshaled; the error wraps ErrMalformed.
func (e *EKB) Validate() error {
	return firstErr(e.ValidateHeader(), checkLen(ekbWhat, "sealed", len(e.Sealed), MinSealedLen, MaxSealedLen))
}

func (e *EKB) headerLen() int {
	return 4 + 1 + 2 + len(e.Tenant) + 4 + 2 + len(e.KeyID) + 4 + 4 + len(e.Metadata) + len(e.Salt)
}

func (e *EKB) appendHeader(b []byte) []byte {
	b = append(b, ekbMagic...)
	b = append(b, Version)
	b = appendU16(b, len(e.Tenant))
	b = append(b, e.Tenant...)
	b = appendU32(b, e.TMKVersion)
	b = appendU16(b, len(e.KeyID))
	b = append(b, e.KeyID...)
	b = appendU32(b, e.KeyVersion)
	b = appendU32(b, uint32(len(e.Metadata)))
	b = append(b, e.Metadata...)
	return append(b, e.Salt[:]...)
}

// Header returns the bytes of e before Sealed, in a new slice the caller
// owns. It is the AEAD associated data of the EKB, so changing any bit of the
// header (metadata included) makes the EKB fail to open. Sealed need not be
// set yet. It panics if the header fields are invalid (see ValidateHeader).
func (e *EKB) Header() []byte {
	mustValid(e.ValidateHeader())
	return e.appendHeader(make([]byte, 0, e.headerLen()))
}

// Marshal returns the encoding of e in a new slice the caller owns. It
// panics if e is invalid (see Validate).
func (e *EKB) Marshal() []byte {
	mustValid(e.Validate())
	b := e.appendHeader(make([]byte, 0, e.headerLen()+len(e.Sealed)))
	return append(b, e.Sealed...)
}

// Digest is the SHA-256 of Marshal(): the name authorization grants bind an
// EKB by. It panics if e is invalid (see Validate).
func (e *EKB) Digest() [32]byte {
	return sha256.Sum256(e.Marshal())
}

// ParseEKB parses an EKB. The result does not alias b: the caller may reuse
// b. Every error wraps ErrMalformed. ParseEKB does not authenticate anything;
// that is internal/crypto's OpenEKB.
func ParseEKB(b []byte) (*EKB, error) {
	r := &reader{b: b, what: ekbWhat}
	r.prefix(ekbMagic)
	var e EKB
	tenant := r.lenPrefixed("tenant", int(r.u16("tenant length")), 1, MaxTenantLen)
	e.TMKVersion = r.u32("tmk_version")
	keyID := r.lenPrefixed("key_id", int(r.u16("key_id length")), 1, MaxKeyIDLen)
	e.KeyVersion = r.u32("key_version")
	md := r.lenPrefixed("metadata", int(r.u32("metadata length")), 0, MaxMetadataLen)
	salt := r.bytes(len(e.Salt), "salt")
	sealed := r.rest()
	if r.err != nil {
		return nil, r.err
	}
	r.set(checkVersion(ekbWhat, "tmk_version", e.TMKVersion))
	r.set(checkVersion(ekbWhat, "key_version", e.KeyVersion))
	if !utf8.Valid(tenant) {
		r.set(malformed(ekbWhat, "tenant is not UTF-8"))
	}
	if !utf8.Valid(keyID) {
		r.set(malformed(ekbWhat, "key_id is not UTF-8"))
	}
	r.set(checkLen(ekbWhat, "sealed", len(sealed), MinSealedLen, MaxSealedLen))
	if r.err != nil {
		return nil, r.err
	}
	e.Tenant = string(tenant)
	e.KeyID = string(keyID)
	e.Metadata = append([]byte(nil), md...)
	copy(e.Salt[:], salt)
	e.Sealed = append([]byte(nil), sealed...)
	return &e, nil
}
