// Package secret provides Bytes, the one type dcaas uses for secret byte
// strings (keys, tokens, seeds) outside an enclave.
//
// A Bytes has exactly one owner, who calls Wipe when done, normally in a
// defer next to where the value was made. It never prints its contents:
// String, Format, GoString, MarshalJSON and MarshalText all redact. Raw
// access is explicit and greppable: Expose.
package secret

import (
	"crypto/subtle"
	"fmt"
)

// Bytes holds secret bytes. The zero value is an empty secret.
//
// The bytes sit behind one more pointer than they need to: when fmt
// reaches a Bytes through reflection (a field of a printed struct, a
// dereferenced copy, a verb a pointer does not take), it prints a nested
// pointer as an address, never what it points to.
type Bytes struct {
	p *[]byte
}

// New takes ownership of b: the caller must not use b afterwards except
// through the returned value. b is wiped when the secret is.
func New(b []byte) *Bytes { return &Bytes{p: &b} }

// Copy returns a new secret holding a copy of b; b stays the caller's.
func Copy(b []byte) *Bytes {
	c := make([]byte, len(b))
	copy(c, b)
	return &Bytes{p: &c}
}

// Expose returns the secret bytes themselves (not a copy). The slice is
// valid until Wipe; callers must not retain it or log it.
func (s *Bytes) Expose() []byte {
	if s == nil || s.p == nil {
		return nil
	}
	return *s.p
}

// Len is the length of the secret.
func (s *Bytes) Len() int { return len(s.Expose()) }

// Clone returns an independent copy, with its own owner.
func (s *Bytes) Clone() *Bytes { return Copy(s.Expose()) }

// Wipe overwrites the secret with zeros and forgets it. It is safe to call
// more than once and on nil.
func (s *Bytes) Wipe() {
	if s == nil || s.p == nil {
		return
	}
	Zero(*s.p)
	s.p = nil
}

// Equal compares two secrets in constant time (for equal lengths).
func (s *Bytes) Equal(o *Bytes) bool {
	return subtle.ConstantTimeCompare(s.Expose(), o.Expose()) == 1
}

// Zero overwrites b with zeros. Use it on transient buffers that held a
// secret and are not owned by a Bytes.
func Zero(b []byte) {
	clear(b)
}

const redacted = "[REDACTED]"

// The printing methods have value receivers so that a copy of a Bytes
// (which fmt reaches when it is a field of a printed struct, or when
// someone dereferences it) redacts as well as a pointer does.

// String redacts.
func (s Bytes) String() string { return redacted }

// GoString redacts.
func (s Bytes) GoString() string { return redacted }

// Format redacts for every verb.
func (s Bytes) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON redacts.
func (s Bytes) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText redacts.
func (s Bytes) MarshalText() ([]byte, error) { return []byte(redacted), nil }
