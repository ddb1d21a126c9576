// Package format implements dcaas's byte formats: the encrypted key blob
// (EKB), the HPKE-wrapped key and the self-describing ciphertext. It parses
// and marshals them and does no cryptography (bar the SHA-256 digest an EKB
// is named by); internal/crypto fills in the sealed parts.
//
// Start with [EKB], [WrappedKey] and [Ciphertext], and their parsers
// [ParseEKB], [ParseWrappedKey] and [ParseCiphertext]. docs/formats.md has
// the byte-level layouts.
//
// All integers are big-endian. Every length read from the input is bounded
// before it is used, so parsers never panic and never allocate more than
// their input. Every parse error wraps [ErrMalformed]. A value that parses
// marshals back to exactly the bytes it was parsed from.
//
// Marshal and Header panic on a value that its Validate method rejects: such
// a value can only come from a programming error, since parsers and
// internal/crypto produce valid values only.
package format
