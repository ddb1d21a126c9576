package tpm

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/secret"
)

// lmkSize is the LMK's length: an AES-256 key.
const lmkSize = kcrypto.AEADKeySize

// localVersion is the first byte of a LocalSeal blob:
// localVersion || nonce(12) || AES-256-GCM ciphertext || tag(16).
const localVersion = 1

// Domain labels that start the AES-GCM associated data, so a LocalSeal blob
// and a Protect ciphertext (both under the LMK) are never confused.
const (
	localLabel   = "dcaas/v1 tpm local-seal\x00"
	protectLabel = "dcaas/v1 tpm protect\x00"
)

// openLMK unseals the LMK from its blob, sealing a new random one first if
// there is none, and keeps it as an AES-256-GCM key. Called by Open only.
func (e *Enclave) openLMK(ctx context.Context) error {
	o, err := e.objectFor(lmkFile, sealTemplate(), e.sealNewLMK)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	h, err := e.load(o)
	if err != nil {
		return err
	}
	defer e.flush(h.Handle)
	rsp, err := tpm2.Unseal{
		ItemHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: e.secretSession(encryptOut)},
	}.Execute(e.tpm)
	if err != nil {
		return fmt.Errorf("tpm: unseal LMK: %w", err)
	}
	key := secret.New(rsp.OutData.Buffer)
	defer key.Wipe()
	if key.Len() != lmkSize {
		return errors.New("tpm: unsealed LMK has the wrong size")
	}
	if e.lmk, err = kcrypto.NewAEAD(key); err != nil {
		return fmt.Errorf("tpm: LMK: %w", err)
	}
	return nil
}

// sealNewLMK seals 32 fresh random bytes under the SRK; they enter the TPM
// encrypted by the session.
func (e *Enclave) sealNewLMK() (*object, error) {
	lmk := secret.New(kcrypto.Random(lmkSize))
	defer lmk.Wipe()
	rsp, err := tpm2.Create{
		ParentHandle: e.parent(e.secretSession(encryptIn)),
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: lmk.Expose()}),
		}},
		InPublic: tpm2.New2B(sealTemplate()),
	}.Execute(e.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpm: seal LMK: %w", err)
	}
	return &object{pub: rsp.OutPublic, priv: rsp.OutPrivate}, nil
}

// LocalSeal encrypts plaintext under the LMK with AES-256-GCM, binding aad.
// The blob is localVersion || nonce || ciphertext || tag and opens with
// LocalOpen in this or any later Enclave over the same TPM and directory.
// The caller keeps ownership of plaintext.
func (e *Enclave) LocalSeal(ctx context.Context, plaintext *secret.Bytes, aad []byte) ([]byte, error) {
	if err := e.useLMK(ctx); err != nil {
		return nil, err
	}
	defer e.mu.RUnlock()
	return e.lmk.Seal([]byte{localVersion}, plaintext.Expose(), localAAD(aad)), nil
}

// LocalOpen reverses LocalSeal. Every failure to open (wrong version,
// truncation, tampering, other aad, another LMK) is enclave.ErrOpen. The
// caller owns and wipes the result.
func (e *Enclave) LocalOpen(ctx context.Context, blob, aad []byte) (*secret.Bytes, error) {
	if err := e.useLMK(ctx); err != nil {
		return nil, err
	}
	defer e.mu.RUnlock()
	if len(blob) < 1+kcrypto.AEADOverhead || blob[0] != localVersion {
		return nil, enclave.ErrOpen
	}
	pt, err := e.lmk.Open(nil, blob[1:], localAAD(aad))
	if err != nil {
		return nil, enclave.ErrOpen
	}
	return secret.New(pt), nil
}

// localAAD is the associated data of a LocalSeal blob: the label, the
// version and the caller's aad.
func localAAD(aad []byte) []byte {
	b := make([]byte, 0, len(localLabel)+1+len(aad))
	b = append(b, localLabel...)
	b = append(b, localVersion)
	return append(b, aad...)
}
