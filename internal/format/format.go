package format

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrMalformed is wrapped by every error of this package: bytes that are not
// a well-formed value of the format, or a value that cannot be marshaled.
var ErrMalformed = errors.New("format: malformed")

// Version is the format version byte every format of this package writes
// and the only one its parsers accept.
const Version = 1

// Limits shared by the formats.
const (
	MaxTenantLen   = 255                   // bytes of UTF-8 in a tenant name
	MaxKeyIDLen    = 128                   // bytes of UTF-8 in a key id
	MaxMetadataLen = 64 << 10              // bytes of EKB metadata
	MaxSealedLen   = 16 << 10              // bytes of an EKB's or wrapped key's sealed part
	MinSealedLen   = NonceLen + 1 + TagLen // an AEAD sealing of at least one byte
	MaxEncLen      = 4096                  // bytes of an HPKE encapsulated key
	NonceLen       = 12                    // AES-GCM nonce
	TagLen         = 16                    // AES-GCM tag
)

// malformed returns an error wrapping ErrMalformed about a value of kind
// what ("EKB", "wrapped key", …).
func malformed(what, format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", ErrMalformed, what, fmt.Sprintf(format, args...))
}

func checkString(what, field, s string, max int) error {
	if len(s) < 1 || len(s) > max {
		return malformed(what, "%s %d not in 1..%d", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return malformed(what, "%s is not UTF-8", field)
	}
	return nil
}

func checkVersion(what, field string, v uint32) error {
	if v == 0 {
		return malformed(what, "%s is 0", field)
	}
	return nil
}

func checkLen(what, field string, n, min, max int) error {
	if n < min || n > max {
		return malformed(what, "%s length %d not in %d..%d", field, n, min, max)
	}
	return nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// mustValid panics on err: a Marshal of an invalid value is a programming
// error (see the package comment).
func mustValid(err error) {
	if err != nil {
		panic("format: marshal of an invalid value: " + err.Error())
	}
}

// reader reads big-endian fields from b. The first short read sets err and
// every later read returns a zero value, so a parser checks err once, at the
// end or before it uses a value.
type reader struct {
	b    []byte
	what string
	err  error
}

func (r *reader) bytes(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = malformed(r.what, "truncated at %s", field)
		r.b = nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8(field string) uint8 {
	if b := r.bytes(1, field); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16(field string) uint16 {
	if b := r.bytes(2, field); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if b := r.bytes(8, field); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) u32(field string) uint32 {
	if b := r.bytes(4, field); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// prefix reads and checks a magic and the version byte (Version).
func (r *reader) prefix(magic string) { r.prefixVersion(magic, Version) }

// prefixVersion reads and checks a magic and a version byte.
func (r *reader) prefixVersion(magic string, version uint8) {
	if m := r.bytes(len(magic), "magic"); r.err == nil && string(m) != magic {
		r.err = malformed(r.what, "bad magic")
	}
	if v := r.u8("version"); r.err == nil && v != version {
		r.err = malformed(r.what, "unknown version %d", v)
	}
}

// lenPrefixed reads the n bytes of a length-prefixed field after checking
// that n is in min..max.
func (r *reader) lenPrefixed(field string, n, min, max int) []byte {
	if r.err != nil {
		return nil
	}
	if err := checkLen(r.what, field, n, min, max); err != nil {
		r.err = err
		return nil
	}
	return r.bytes(n, field)
}

// set records err if r has none yet.
func (r *reader) set(err error) {
	if r.err == nil {
		r.err = err
	}
}

// rest returns what is left of the input.
func (r *reader) rest() []byte {
	if r.err != nil {
		return nil
	}
	v := r.b
	r.b = nil
	return v
}

func appendU16(b []byte, v int) []byte    { return binary.BigEndian.AppendUint16(b, uint16(v)) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
