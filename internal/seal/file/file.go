// Package file is the embedded-default root of trust: a 32-byte root key
// kept in dir/root.key, created on first use, either protected by file
// permissions alone (mode 0, the development default) or wrapped under a
// passphrase (mode 1). Start with Open. Mode 0 leaves the root key in
// clear on disk: it is for development; production uses a passphrase or
// an HSM (seal/pkcs11).
//
// Sealed blobs are
//
//	version (1) | nonce (12) | AES-256-GCM ciphertext and tag
//
// under HKDF-SHA-256(root key, no salt, info "dcaas/v1 seal", 32 bytes),
// with additional data version | aad. A key sees few seals (master keys,
// HMAC keys, the CA key), far below the 2^32 limit of random nonces.
package file

import (
	"context"
	"errors"
	"fmt"
	"sync"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/secret"
)

// Errors of Open and ChangePassphrase (test with errors.Is).
var (
	// ErrPassphrase: a passphrase was given for a file that has none, or
	// the passphrase of a protected file is missing or wrong.
	ErrPassphrase = errors.New("seal/file: passphrase mismatch")
	// ErrCorrupt: root.key is not a root key file.
	ErrCorrupt = errors.New("seal/file: corrupt root key file")
	// ErrPermissions: root.key is not a regular file or others than its
	// owner may access it.
	ErrPermissions = errors.New("seal/file: unsafe root key file")
	// ErrClosed: the Sealer was closed.
	ErrClosed = errors.New("seal/file: sealer closed")
)

const (
	version  byte = 1
	sealInfo      = "dcaas/v1 seal"
	overhead      = 1 + 12 + 16
)

// Sealer is the file-backed seal.Sealer. It is safe for concurrent use.
type Sealer struct {
	protected bool

	mu   sync.RWMutex
	aead *kcrypto.AEAD // holds the seal key's AES schedule; nil once closed
}

var _ seal.Sealer = (*Sealer)(nil)

// Open returns the Sealer of the root key in dir, creating dir (mode 0700)
// and dir/root.key (mode 0600, written atomically) with a fresh root key on
// first use. A nil or empty passphrase means none: a new file is then
// protected by file permissions only; otherwise it is wrapped under the
// passphrase. Opening an existing file requires the passphrase it was
// created with, and no passphrase for an unprotected one (ErrPassphrase).
// The caller keeps ownership of passphrase.
func Open(dir string, passphrase *secret.Bytes) (*Sealer, error) {
	root, protected, err := loadOrCreate(dir, passphrase)
	if err != nil {
		return nil, err
	}
	defer root.Wipe()
	return newSealer(root, protected)
}

// newSealer is the Sealer of root (which the caller keeps and wipes).
func newSealer(root *secret.Bytes, protected bool) (*Sealer, error) {
	key, err := kcrypto.HKDF(root, nil, []byte(sealInfo), kcrypto.AEADKeySize)
	if err != nil {
		return nil, fmt.Errorf("seal/file: deriving the seal key: %w", err)
	}
	defer key.Wipe()
	aead, err := kcrypto.NewAEAD(key)
	if err != nil {
		return nil, fmt.Errorf("seal/file: %w", err)
	}
	return &Sealer{protected: protected, aead: aead}, nil
}

// Protected reports whether the root key file is wrapped under a
// passphrase (mode 1).
func (s *Sealer) Protected() bool { return s.protected }

// Name is "file".
func (s *Sealer) Name() string { return "file" }

// Seal encrypts plaintext (nil is empty) and binds aad. The caller keeps
// ownership of plaintext; the result is not secret.
func (s *Sealer) Seal(ctx context.Context, plaintext *secret.Bytes, aad []byte) ([]byte, error) {
	if err := s.useKey(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := make([]byte, 1, overhead+plaintext.Len())
	out[0] = version
	return s.aead.Seal(out, plaintext.Expose(), additionalData(aad)), nil
}

// Open decrypts what Seal returned for the same aad. Every failure to
// authenticate is seal.ErrOpen. The caller owns and wipes the result.
func (s *Sealer) Open(ctx context.Context, sealed, aad []byte) (*secret.Bytes, error) {
	if err := s.useKey(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if len(sealed) < overhead || sealed[0] != version {
		return nil, seal.ErrOpen
	}
	pt, err := s.aead.Open(nil, sealed[1:], additionalData(aad))
	if err != nil {
		return nil, seal.ErrOpen
	}
	return secret.New(pt), nil
}

// useKey reports a done ctx or ErrClosed, or takes s.mu for reading (the
// key stays until Close): the caller calls s.mu.RUnlock when it returns
// nil.
func (s *Sealer) useKey(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.aead == nil {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// additionalData is version | aad.
func additionalData(aad []byte) []byte {
	return append([]byte{version}, aad...)
}

// Close drops the seal key; later calls fail with ErrClosed. The root key
// and the derived key bytes are wiped as soon as Open has built the
// cipher; the AES key schedule inside crypto/aes cannot be wiped and is
// left to the garbage collector. Close is idempotent.
func (s *Sealer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aead = nil
	return nil
}
