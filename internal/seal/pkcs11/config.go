// Package pkcs11 is the production root of trust: the root key is a
// non-extractable, sensitive AES-256 key inside a PKCS#11 token (an HSM),
// found by its label, and sealing and opening run CKM_AES_GCM inside the
// token, so the KMS never holds the root key. Start with Open; Config says
// what to name. It is tested against SoftHSM2 (scripts/softhsm.sh and the
// pkcs11test package).
//
// Sealed blobs are
//
//	format (1 byte, 0x02) | IV (12) | AES-256-GCM ciphertext and tag (16)
//
// with GCM additional data format | aad. The file seal's blobs start with
// 0x01, so a blob names the seal that made it. The IV is 96 bits from
// crypto/rand, or the token's own when it replaces the caller's (as some
// HSMs in FIPS mode do); either way it is read back and stored.
//
// A process may open several Sealers, on one token or several: PKCS#11
// initializes a module and logs a token in once per process, so the
// module is initialized on the first Open and finalized on the last Close,
// and a token is logged in by its first Sealer and logged out when its
// last one closes. Every Sealer of one token must give the same PIN.
//
// What this package cannot wipe: the PIN reaches C_Login as a Go string,
// and a decrypted plaintext passes through a C buffer of
// github.com/miekg/pkcs11 that is freed without zeroing.
//
// The package needs cgo; a binary built without it has an Open that always
// fails with ErrModule.
package pkcs11

import (
	"errors"

	"github.com/dcaas/dcaas/internal/secret"
)

// DefaultKeyLabel is the root key's CKA_LABEL when Config.KeyLabel is "".
const DefaultKeyLabel = "dcaas-root"

// Errors of Open (test with errors.Is); the underlying PKCS#11 error, if
// any, stays wrapped for logs.
var (
	// ErrModule: the PKCS#11 module does not load or initialize.
	ErrModule = errors.New("seal/pkcs11: PKCS#11 module unusable")
	// ErrToken: no token, or more than one, has the configured label.
	ErrToken = errors.New("seal/pkcs11: token not found")
	// ErrPIN: the PIN is missing, wrong, locked or expired, or differs from
	// the PIN another Sealer of this process logged the token in with.
	ErrPIN = errors.New("seal/pkcs11: PIN refused")
	// ErrNoKey: the token holds no key with the label, and Config.Create
	// is false.
	ErrNoKey = errors.New("seal/pkcs11: root key not found")
	// ErrKey: the key with the label is not a sensitive, non-extractable
	// AES-256 key allowed to encrypt and decrypt, or several keys have
	// the label.
	ErrKey = errors.New("seal/pkcs11: unsuitable root key")
	// ErrClosed: the Sealer was closed.
	ErrClosed = errors.New("seal/pkcs11: sealer closed")
)

// Config names the token and the root key. The zero value of each
// optional field means its default.
type Config struct {
	// ModulePath is the PKCS#11 library to load, e.g.
	// /usr/lib/softhsm/libsofthsm2.so. Required.
	ModulePath string
	// TokenLabel selects the token by its label. Required.
	TokenLabel string
	// PIN is the token's user PIN. Required; the caller keeps ownership.
	PIN *secret.Bytes
	// KeyLabel is the root key's CKA_LABEL; "" means DefaultKeyLabel.
	KeyLabel string
	// Create makes Open generate the root key inside the token when the
	// token holds none with KeyLabel; otherwise that is ErrNoKey. Create
	// from one process only: two processes creating at once may make two
	// keys with the label, which Open then refuses (ErrKey).
	Create bool
	// MaxSessions bounds the token sessions, and so the concurrent
	// operations, of one Sealer; 0 means 8.
	MaxSessions int
}
