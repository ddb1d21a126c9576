package tr31

import (
	"errors"
	"fmt"
)

var (
	// ErrFormat: the key block is malformed or a header field holds a value
	// ANSI X9.143 does not define.
	ErrFormat = errors.New("tr31: malformed key block")
	// ErrUnsupported: a well-formed key block this package does not handle
	// (a version other than D, a KBPK that is not AES).
	ErrUnsupported = errors.New("tr31: unsupported key block")
	// ErrAuth: the key block does not authenticate under the key block
	// protection key (wrong KBPK, or header or key data modified). It says
	// nothing more, on purpose.
	ErrAuth = errors.New("tr31: the key block does not authenticate under this key block protection key")
)

// FieldError is a refusal of one part of a key block: Field names it (for
// example "key usage", "optional block KS"), Value is what the block held
// there (header characters, never key material; empty when there was
// nothing), Reason says why. It wraps ErrFormat or ErrUnsupported.
type FieldError struct {
	Field, Value, Reason string
	Err                  error
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("tr31: %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("tr31: %s %q: %s", e.Field, e.Value, e.Reason)
}

func (e *FieldError) Unwrap() error { return e.Err }

func formatErr(field, value, reason string, args ...any) error {
	return &FieldError{Field: field, Value: clip(value), Reason: fmt.Sprintf(reason, args...), Err: ErrFormat}
}

func unsupported(field, value, reason string, args ...any) error {
	return &FieldError{Field: field, Value: clip(value), Reason: fmt.Sprintf(reason, args...), Err: ErrUnsupported}
}

// clip keeps error values short.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
