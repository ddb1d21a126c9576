package software

import (
	"context"
	"errors"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/secret"
)

const (
	lmkSize = 32 // AES-256
	// localVersion is the first byte of a LocalSeal blob:
	// version || nonce (12) || AES-256-GCM ciphertext || tag (16).
	localVersion byte = 1
	// maxLocalSeals keeps random 96-bit nonces under one LMK within the
	// NIST bound of 2^32 messages.
	maxLocalSeals = 1 << 32
)

// LocalSeal encrypts plaintext under the local master key with
// AES-256-GCM and a random nonce, binding aad and the format version. The
// caller keeps ownership of plaintext; the returned blob is the caller's.
// The LMK is random per process: blobs do not survive a restart.
func (e *Enclave) LocalSeal(ctx context.Context, plaintext *secret.Bytes, aad []byte) ([]byte, error) {
	blobs, err := e.LocalSealAll(ctx, []*secret.Bytes{plaintext}, [][]byte{aad})
	if err != nil {
		return nil, err
	}
	return blobs[0], nil
}

// LocalSealAll is LocalSeal of each plaintext with its aad, under one
// opening of the local master key (enclave.BatchSealer): one memguard
// open and its system calls per batch instead of per key. All or nothing.
func (e *Enclave) LocalSealAll(ctx context.Context, plaintexts []*secret.Bytes, aads [][]byte) ([][]byte, error) {
	if len(plaintexts) != len(aads) {
		return nil, wrapf("%d plaintexts but %d associated data", len(plaintexts), len(aads))
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.ready(ctx); err != nil {
		return nil, err
	}
	if e.lmkSeals.Add(uint64(len(plaintexts))) > maxLocalSeals {
		return nil, wrapf("local master key exhausted (%d seals); restart the sidecar", uint64(maxLocalSeals))
	}
	blobs := make([][]byte, len(plaintexts))
	err := e.lmk.withLocked(func(lmk []byte) error {
		aead, err := newLocalAEAD(lmk)
		if err != nil {
			return err
		}
		for i, p := range plaintexts {
			blob := make([]byte, 1, 1+kcrypto.AEADOverhead+p.Len())
			blob[0] = localVersion
			blobs[i] = aead.Seal(blob, p.Expose(), localAAD(aads[i]))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return blobs, nil
}

// LocalOpen reverses LocalSeal. Every failure to open (wrong aad, altered
// or truncated blob, another process's blob) is enclave.ErrOpen; after
// Close it is enclave.ErrClosed. The caller owns and wipes the result.
func (e *Enclave) LocalOpen(ctx context.Context, blob, aad []byte) (*secret.Bytes, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.ready(ctx); err != nil {
		return nil, err
	}
	if len(blob) < 1 || blob[0] != localVersion {
		return nil, enclave.ErrOpen
	}
	var out *secret.Bytes
	err := e.lmk.withLocked(func(lmk []byte) error {
		aead, err := newLocalAEAD(lmk)
		if err != nil {
			return err
		}
		pt, err := aead.Open(nil, blob[1:], localAAD(aad))
		if err != nil {
			return enclave.ErrOpen
		}
		out = secret.New(pt)
		return nil
	})
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, enclave.ErrOpen):
		return nil, err
	default:
		return nil, wrapf("%w: %w", enclave.ErrOpen, err)
	}
}

// newLocalAEAD is AES-256-GCM with random nonces under lmk, a view of
// the locked buffer: the AEAD keeps no reference to it, and the view is
// not wiped here (the enclave owns the buffer).
func newLocalAEAD(lmk []byte) (*kcrypto.AEAD, error) {
	return kcrypto.NewAEAD(secret.New(lmk))
}

// localAAD binds the version byte along with the caller's aad.
func localAAD(aad []byte) []byte {
	return append([]byte{localVersion}, aad...)
}
