package sidecar

import (
	"context"
	"crypto/hpke"
	"encoding/json"
	"fmt"
	"math"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/ops"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/secret"
)

// ImportKeys loads keys that the KMS's rewrap sealed to this sidecar's
// wrapping certificate. Each key is opened inside the enclave with the
// transport key and checked against its metadata; the batch is all or
// nothing. It returns the loaded key ids in order.
func (s *Sidecar) ImportKeys(ctx context.Context, keys []api.WrappedKey) ([]string, error) {
	tk, err := s.enc.TransportKey(ctx, s.enrolled.KEM)
	if err != nil {
		return nil, err
	}
	return s.unwrapAndLoad(keys, tk)
}

// unwrapAndLoad opens every wrapped key with priv and loads them into the
// keyring, all or nothing.
func (s *Sidecar) unwrapAndLoad(keys []api.WrappedKey, priv hpke.PrivateKey) ([]string, error) {
	if s.revoked.Load() {
		return nil, errRevoked
	}
	if len(keys) == 0 {
		return nil, api.Errorf(api.CodeInvalidArgument, "keys must hold at least one wrapped key.")
	}
	u := kcrypto.NewUnwrapper(priv, format.TransportInfo(s.enrolled.InstanceID))
	defer u.Close()
	lease := s.cfg.Now().Add(s.cfg.LeaseTTL)
	// Open everything first, so a bad item loads nothing.
	mats := make([]pending, 0, len(keys))
	defer func() {
		for _, p := range mats {
			p.material.Wipe()
		}
	}()
	for i := range keys {
		k := &keys[i]
		md := k.Metadata
		if md.KeyID != k.KeyID || md.Version != k.Version {
			return nil, api.Errorf(api.CodeInvalidArgument, "Key %d: key_id/version disagree with its metadata.", i)
		}
		if !policy.Releasable(md.Policy, md.Owner, s.enrolled.CustodianDN) {
			return nil, api.Errorf(api.CodePolicyDenied, "Key %s: its policy does not name this sidecar's custodian.", md.KeyID)
		}
		if floor := s.ring.MinVersion(md.KeyID); md.Version < floor {
			return nil, api.Errorf(api.CodeRevoked, "Key %s: version %d is retired (its minimum decryption version is %d).", md.KeyID, md.Version, floor)
		}
		aad, err := format.MetadataAAD(&md)
		if err != nil {
			return nil, err
		}
		dek, err := u.Unwrap(k.Wrapped, aad)
		if err != nil {
			return nil, api.Errorf(api.CodeDecryptFailed, "Key %s does not unwrap: it was not sealed to this sidecar, or it or its metadata was modified.", md.KeyID)
		}
		mats = append(mats, pending{md: md, material: dek, encryptions: k.Encryptions})
		// Check the key is usable before anything is loaded.
		if md.Version < 1 || md.Version > math.MaxUint32 {
			return nil, api.Errorf(api.CodeInvalidArgument, "Key %s: version %d is out of range.", md.KeyID, md.Version)
		}
		probe, err := kcrypto.NewKey(md.Type, md.KeyID, uint32(md.Version), dek)
		if err != nil {
			return nil, api.Errorf(api.CodeInvalidArgument, "Key %s (%s) cannot be loaded: %v", md.KeyID, md.Type, err)
		}
		probe.Wipe()
	}
	ids := make([]string, 0, len(mats))
	for i, p := range mats {
		s.ring.SetReported(p.md.KeyID, p.md.Version, p.encryptions)
		if err := s.ring.Put(p.md, p.material, lease); err != nil {
			for _, q := range mats[:i] { // all or nothing
				s.ring.Evict(q.md.KeyID)
			}
			return nil, fmt.Errorf("sidecar: loading key %s: %w", p.md.KeyID, err)
		}
		if len(ids) == 0 || ids[len(ids)-1] != p.md.KeyID {
			ids = append(ids, p.md.KeyID)
		}
	}
	s.metrics.keysImported.Add(float64(len(mats)))
	return ids, nil
}

// Evict removes every version of a key from the sidecar and wipes it.
func (s *Sidecar) Evict(keyID string) bool { return s.ring.Evict(keyID) }

// Keys lists the loaded key versions (metadata and leases, never secrets).
func (s *Sidecar) Keys() []api.LoadedKey { return s.ring.List() }

// Encrypt seals plaintext under the current version of a loaded AES key
// and returns a self-describing dcaas ciphertext.
func (s *Sidecar) Encrypt(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error) {
	r, err := s.engine.Encrypt(ctx, &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: keyID}, Plaintext: plaintext, AAD: aad})
	if err != nil {
		return nil, err
	}
	return r.Ciphertext, nil
}

// Decrypt opens a dcaas ciphertext with the key version it names.
func (s *Sidecar) Decrypt(ctx context.Context, ciphertext, aad []byte) ([]byte, error) {
	r, err := s.engine.Decrypt(ctx, &api.DecryptRequest{Ciphertext: ciphertext, AAD: aad})
	if err != nil {
		return nil, err
	}
	return r.Plaintext, nil
}

// Sign signs message with the current version of a loaded signing key.
func (s *Sidecar) Sign(ctx context.Context, keyID string, message []byte) ([]byte, error) {
	r, err := s.engine.Sign(ctx, &api.SignRequest{KeyRef: api.KeyRef{KeyID: keyID}, Message: message})
	if err != nil {
		return nil, err
	}
	return r.Signature, nil
}

// Verify checks a signature with the current version of a loaded key.
func (s *Sidecar) Verify(ctx context.Context, keyID string, message, signature []byte) (bool, error) {
	r, err := s.engine.Verify(ctx, &api.VerifyRequest{KeyRef: api.KeyRef{KeyID: keyID}, Message: message, Signature: signature})
	if err != nil {
		return false, err
	}
	return r.Valid, nil
}

// MAC computes HMAC-SHA-256 with the current version of a loaded HMAC key.
func (s *Sidecar) MAC(ctx context.Context, keyID string, message []byte) ([]byte, error) {
	r, err := s.engine.MAC(ctx, &api.MACRequest{KeyRef: api.KeyRef{KeyID: keyID}, Message: message})
	if err != nil {
		return nil, err
	}
	return r.MAC, nil
}

// VerifyMAC checks an HMAC tag in constant time.
func (s *Sidecar) VerifyMAC(ctx context.Context, keyID string, message, tag []byte) (bool, error) {
	r, err := s.engine.MACVerify(ctx, &api.MACVerifyRequest{KeyRef: api.KeyRef{KeyID: keyID}, Message: message, MAC: tag})
	if err != nil {
		return false, err
	}
	return r.Valid, nil
}

// Batch runs many operations in one call (see api.BatchRequest).
func (s *Sidecar) Batch(ctx context.Context, req *api.BatchRequest) (*api.BatchResponse, error) {
	return s.engine.Batch(ctx, req)
}

// pending is an unwrapped key waiting to enter the keyring.
type pending struct {
	md          api.KeyMetadata
	material    *secret.Bytes
	encryptions int64 // what the KMS counted for the version
}

var errRevoked = api.Errorf(api.CodeRevoked, "This sidecar instance has been revoked by the KMS; it serves nothing.")

// resolver resolves loaded key ids and sealed keys for the operation
// engine.
type resolver struct{ s *Sidecar }

func (r resolver) Acquire(ctx context.Context, ref api.KeyRef, version int, action api.Action) (*kcrypto.Key, ops.Releaser, error) {
	if r.s.revoked.Load() {
		return nil, nil, errRevoked
	}
	switch {
	case len(ref.EKB) > 0:
		return nil, nil, api.Errorf(api.CodeInvalidArgument, "ekb is for the KMS's central path; a sidecar takes key_id or sealed_key.")
	case len(ref.SealedKey) > 0:
		return r.s.openSealed(ctx, ref, version, action)
	}
	h, err := r.s.ring.Acquire(ref.KeyID, version, action)
	if err != nil {
		if api.CodeOf(err) == api.CodeExpired {
			r.s.metrics.leaseExpired.Inc()
		}
		return nil, nil, err
	}
	return h.Key, h.Releaser(), nil
}

func parseMetadata(b []byte) (api.KeyMetadata, error) {
	var md api.KeyMetadata
	err := json.Unmarshal(b, &md)
	return md, err
}

// EncryptAppend is Encrypt for hot paths: it appends the ciphertext to dst
// (which may be reused across calls, so nothing is allocated per
// operation) and returns the extended slice. Policy, lease and revocation
// checks are the same as Encrypt's.
func (s *Sidecar) EncryptAppend(dst []byte, keyID string, plaintext, aad []byte) ([]byte, error) {
	if s.revoked.Load() {
		return dst, errRevoked
	}
	h, err := s.ring.Acquire(keyID, 0, api.ActionEncrypt)
	if err != nil {
		return dst, err
	}
	defer h.Release()
	if err := h.Charge(len(plaintext)); err != nil {
		return dst, err
	}
	return h.Key.Encrypt(dst, plaintext, aad)
}

// DecryptAppend is Decrypt appending the plaintext to dst.
func (s *Sidecar) DecryptAppend(dst, ciphertext, aad []byte) ([]byte, error) {
	if s.revoked.Load() {
		return dst, errRevoked
	}
	id, ver, err := format.PeekCiphertextKey(ciphertext)
	if err != nil {
		return dst, api.Errorf(api.CodeInvalidCiphertext, "The ciphertext is not a dcaas ciphertext.")
	}
	h, err := s.ring.Acquire(id, int(ver), api.ActionDecrypt)
	if err != nil {
		return dst, err
	}
	defer h.Release()
	out, err := h.Key.Decrypt(dst, ciphertext, aad)
	if err != nil {
		return dst, api.Errorf(api.CodeDecryptFailed, "The ciphertext does not decrypt: wrong key, wrong associated data, or modified ciphertext.")
	}
	return out, nil
}
