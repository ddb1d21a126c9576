package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/keyring"
	"github.com/dcaas/dcaas/internal/ops"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/wire"
)

// ImportKeys loads keys that the KMS's rewrap sealed to this sidecar's
// wrapping certificate: pass the rewrap answer unchanged. Every key is
// opened inside the enclave with the transport key and checked against its
// metadata; the batch is all or nothing. It returns the loaded key ids in
// order.
//
// A batch is refused after its expiry, when it names a key this sidecar
// has seen revoked or a retired version, and when it was imported before
// and a key of it has since left the sidecar: a saved answer cannot bring
// a key back. Importing the same batch again while its keys are loaded
// changes nothing and returns the same ids (a retry is safe). Legacy
// answers (format 1, api.WrappedKeys.Keys only) are refused unless
// Config.AcceptLegacyWrap is set.
func (s *Sidecar) ImportKeys(ctx context.Context, w *api.WrappedKeys) ([]string, error) {
	id, err := s.ready()
	if err != nil {
		return nil, err
	}
	tk, err := s.enc.TransportKey(ctx, id.e.KEM)
	if err != nil {
		return nil, err
	}
	switch {
	case w == nil || (len(w.Batch) == 0 && len(w.Keys) == 0):
		return nil, api.Errorf(api.CodeInvalidArgument, "The request holds no keys: pass the KMS's rewrap answer unchanged.")
	case len(w.Batch) > 0:
		return s.loadBatch(id, tk, w.Batch, true)
	case !s.cfg.AcceptLegacyWrap:
		return nil, api.Errorf(api.CodeInvalidArgument, "These keys are in the legacy wrapped-key format (version 1), which carries no issue time and could be replayed; this sidecar accepts format 2 only (rewrap again with an upgraded KMS, or start the sidecar with --accept-legacy-wrap).")
	}
	return s.loadLegacy(id, w.Keys, tk, format.TransportInfo(id.e.InstanceID))
}

// maxClockSkew is how far in the future a batch's issue time may be, for
// clocks that disagree between the KMS and the sidecar.
const maxClockSkew = 5 * time.Minute

// loadBatch opens a wrapped-key batch (format 2) sealed to priv for this
// instance and loads its keys, all or nothing. replayable says whether the
// batch was sealed to the long-lived transport key (rewrap), whose answers
// could be presented again, rather than to an ephemeral key.
func (s *Sidecar) loadBatch(id *identity, priv kcrypto.KEMPrivateKey, blob []byte, replayable bool) ([]string, error) {
	if s.revoked.Load() {
		return nil, errRevoked
	}
	b, keys, err := kcrypto.OpenBatch(priv, id.e.InstanceID, blob)
	if err != nil {
		if errors.Is(err, format.ErrMalformed) {
			return nil, api.Errorf(api.CodeInvalidArgument, "The batch is not a well-formed wrapped-key batch.")
		}
		return nil, api.Errorf(api.CodeDecryptFailed, "The batch does not open: it was not sealed to this sidecar instance, or it was modified.")
	}
	items := make([]keyring.Item, len(keys))
	for i := range keys {
		items[i].Material = keys[i]
	}
	defer func() {
		for _, it := range items {
			it.Material.Wipe()
		}
	}()
	now := s.cfg.Now()
	switch {
	case !now.Before(b.NotAfterTime()):
		return nil, api.Errorf(api.CodeExpired, "These keys were sealed to this sidecar at %s and could be imported until %s; ask the KMS again.", b.IssuedTime().UTC().Format(time.RFC3339), b.NotAfterTime().UTC().Format(time.RFC3339))
	case b.IssuedTime().After(now.Add(maxClockSkew)):
		return nil, api.Errorf(api.CodeInvalidArgument, "The batch was issued at %s, in this sidecar's future: check the clocks.", b.IssuedTime().UTC().Format(time.RFC3339))
	}
	refs := make([]api.KeyVersionRef, len(keys))
	seen := make(map[api.KeyVersionRef]bool, len(keys))
	for i := range b.Keys {
		md, err := decodeMetadata(b.Keys[i].Metadata)
		if err != nil {
			return nil, api.Errorf(api.CodeInvalidArgument, "Key %d of the batch has metadata this sidecar cannot read: %v", i, err)
		}
		ref := api.KeyVersionRef{KeyID: md.KeyID, Version: md.Version}
		if seen[ref] {
			return nil, api.Errorf(api.CodeInvalidArgument, "The batch holds version %d of key %s twice.", md.Version, md.KeyID)
		}
		seen[ref] = true
		if err := s.checkLoadable(&md, id.e.CustodianDN, now); err != nil {
			return nil, err
		}
		items[i].MD, items[i].Encryptions, refs[i] = md, b.Keys[i].Encryptions, ref
	}
	if replayable {
		again, err := s.replays.check(b.Enc, refs, s.ring)
		if err != nil || again {
			return distinctIDs(refs), err
		}
	}
	if err := s.ring.PutAll(items, now.Add(s.cfg.LeaseTTL)); err != nil {
		return nil, err
	}
	items = nil // PutAll took the material
	if replayable {
		s.replays.add(b.Enc, refs, b.NotAfterTime())
	}
	s.refresh.add(refs)
	s.metrics.keysImported.Add(float64(len(refs)))
	return distinctIDs(refs), nil
}

// checkLoadable checks one key about to be loaded: not revoked or retired
// here, not expired, and released to this sidecar's custodian by its
// policy.
func (s *Sidecar) checkLoadable(md *api.KeyMetadata, custodian string, now time.Time) error {
	switch {
	case md.KeyID == "" || md.Version < 1 || md.Version > math.MaxUint32:
		return api.Errorf(api.CodeInvalidArgument, "Key %q: version %d is out of range.", md.KeyID, md.Version)
	case s.ring.Revoked(md.KeyID):
		return api.Errorf(api.CodeRevoked, "Key %s has been revoked by the KMS; this sidecar will not load it again.", md.KeyID)
	case md.Version < s.ring.MinVersion(md.KeyID):
		return api.Errorf(api.CodeRevoked, "Key %s: version %d is retired (its minimum decryption version is %d).", md.KeyID, md.Version, s.ring.MinVersion(md.KeyID))
	case md.ExpiresAt != nil && !now.Before(*md.ExpiresAt):
		return api.Errorf(api.CodeExpired, "Key %s expired at %s.", md.KeyID, md.ExpiresAt.UTC().Format(time.RFC3339))
	case !policy.Releasable(md.Policy, md.Owner, custodian):
		return api.Errorf(api.CodePolicyDenied, "Key %s: its policy does not name this sidecar's custodian.", md.KeyID)
	}
	return nil
}

// decodeMetadata reads a key's metadata strictly: a field this sidecar
// does not know could be a restriction it would fail to enforce.
func decodeMetadata(b []byte) (api.KeyMetadata, error) {
	var md api.KeyMetadata
	if wire.Decode(b, &md) { // takes only what the strict decoder reads the same
		return md, nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&md); err != nil {
		return md, err
	}
	if d.More() {
		return md, errors.New("trailing data")
	}
	return md, nil
}

func distinctIDs(refs []api.KeyVersionRef) []string {
	ids := make([]string, 0, len(refs))
	for _, r := range refs {
		if len(ids) == 0 || ids[len(ids)-1] != r.KeyID {
			ids = append(ids, r.KeyID)
		}
	}
	return ids
}

// loadLegacy opens format-1 wrapped keys with priv and loads them into the
// keyring, all or nothing.
func (s *Sidecar) loadLegacy(id *identity, keys []api.WrappedKey, priv kcrypto.KEMPrivateKey, info []byte) ([]string, error) {
	if s.revoked.Load() {
		return nil, errRevoked
	}
	u := kcrypto.NewUnwrapper(priv, info)
	defer u.Close()
	now := s.cfg.Now()
	items := make([]keyring.Item, 0, len(keys))
	defer func() {
		for _, it := range items {
			it.Material.Wipe()
		}
	}()
	refs := make([]api.KeyVersionRef, 0, len(keys))
	for i := range keys {
		k := &keys[i]
		md := k.Metadata
		if md.KeyID != k.KeyID || md.Version != k.Version {
			return nil, api.Errorf(api.CodeInvalidArgument, "Key %d: key_id/version disagree with its metadata.", i)
		}
		if err := s.checkLoadable(&md, id.e.CustodianDN, now); err != nil {
			return nil, err
		}
		aad, err := format.MetadataAAD(&md)
		if err != nil {
			return nil, err
		}
		dek, err := u.Unwrap(k.Wrapped, aad)
		if err != nil {
			return nil, api.Errorf(api.CodeDecryptFailed, "Key %s does not unwrap: it was not sealed to this sidecar, or it or its metadata was modified.", md.KeyID)
		}
		items = append(items, keyring.Item{MD: md, Material: dek, Encryptions: k.Encryptions})
		refs = append(refs, api.KeyVersionRef{KeyID: md.KeyID, Version: md.Version})
	}
	if err := s.ring.PutAll(items, now.Add(s.cfg.LeaseTTL)); err != nil {
		return nil, err
	}
	items = nil
	s.refresh.add(refs)
	s.metrics.keysImported.Add(float64(len(refs)))
	return distinctIDs(refs), nil
}

// Evict removes every version of a key from the sidecar and wipes it. The
// rewrap answers that brought it cannot be imported again.
func (s *Sidecar) Evict(keyID string) bool { return s.ring.Evict(keyID) }

// Keys lists the loaded key versions (metadata and leases, never
// secrets); none once the sidecar is revoked.
func (s *Sidecar) Keys() []api.LoadedKey {
	if s.revoked.Load() {
		return []api.LoadedKey{} // even while selfRevoke is still evicting them
	}
	return s.ring.List()
}

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

var errRevoked = api.Errorf(api.CodeRevoked, "This sidecar instance has been revoked by the KMS; it serves nothing.")

// resolver resolves loaded key ids and sealed keys for the operation
// engine.
type resolver struct{ s *Sidecar }

func (r resolver) Acquire(ctx context.Context, ref api.KeyRef, version int, action api.Action) (*kcrypto.Key, ops.Releaser, error) {
	if r.s.revoked.Load() {
		return nil, nil, errRevoked
	}
	if r.s.id.Load() == nil {
		return nil, nil, errNotEnrolled
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
