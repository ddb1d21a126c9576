package crypto

import "errors"

// Errors to branch on with errors.Is. Errors about inputs wrap them with
// detail; ErrDecrypt is returned bare so it reveals nothing.
var (
	// ErrDecrypt is the one opaque error of every failed authentication:
	// wrong key, tampered ciphertext, tag, associated data, key id or
	// version, wrong HPKE recipient or info.
	ErrDecrypt = errors.New("crypto: message authentication failed")
	// ErrUnsupported: the key type is unknown or not implemented yet.
	ErrUnsupported = errors.New("crypto: unsupported key type")
	// ErrWrongKeyType: the operation does not exist for the key's type.
	ErrWrongKeyType = errors.New("crypto: operation not available for this key type")
	// ErrInvalidKey: key material or a public key has the wrong length or
	// encoding.
	ErrInvalidKey = errors.New("crypto: invalid key")
	// ErrNotApproved: the algorithm is not FIPS 140-3 approved and the
	// process runs in FIPS mode.
	ErrNotApproved = errors.New("crypto: algorithm not FIPS 140-3 approved")
	// ErrUnknownKEM: the HPKE KEM name or id is not one dcaas offers.
	ErrUnknownKEM = errors.New("crypto: unknown KEM")
	// ErrTooLarge: an input exceeds what the construction allows.
	ErrTooLarge = errors.New("crypto: input too large")
	// ErrClosed: the Key was wiped or the Unwrapper closed.
	ErrClosed = errors.New("crypto: key wiped or closed")
)
