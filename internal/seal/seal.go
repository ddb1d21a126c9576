// Package seal defines the KMS root of trust: a Sealer encrypts the
// material the KMS stores (tenant master keys, tenant HMAC keys, the CA
// key) under a root key that it never hands out.
//
// Implementations: file/ (a root key in a sealed file in the data dir, the
// embedded default) and pkcs11/ (the root key is a non-extractable key
// inside an HSM). sealtest/ is the conformance suite both pass;
// sealmigrate/ moves a KMS store from one to the other.
package seal

import (
	"context"
	"errors"

	"github.com/dcaas/dcaas/internal/secret"
)

// ErrOpen is the one opaque error for a sealed blob that does not open:
// wrong root key, tampered bytes, or other associated data.
var ErrOpen = errors.New("seal: sealed data does not open")

// Sealer protects KMS material under a root key.
type Sealer interface {
	// Seal encrypts plaintext, binding aad (which is not stored). The
	// caller keeps ownership of plaintext.
	Seal(ctx context.Context, plaintext *secret.Bytes, aad []byte) ([]byte, error)
	// Open decrypts what Seal returned for the same aad; the caller owns
	// (and wipes) the result. Any failure to authenticate is ErrOpen.
	Open(ctx context.Context, sealed, aad []byte) (*secret.Bytes, error)
	// Name names the backend ("file", "pkcs11") for /healthz and logs.
	Name() string
	// Close releases the root key (wipes it, or closes the HSM session).
	Close() error
}
