package sidecar

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/keyring"
	"github.com/dcaas/dcaas/internal/ops"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/secret"
)

// ephemeral makes a fresh HPKE key pair for one load or derive: the KMS
// seals the keys to it, on top of mTLS, and it is dropped afterwards.
func (s *Sidecar) ephemeral() (api.PublicKey, func([]api.WrappedKey) ([]string, error), error) {
	priv, err := kcrypto.GenerateKEMKey(s.enrolled.KEM)
	if err != nil {
		return api.PublicKey{}, nil, err
	}
	pub, err := kcrypto.MarshalKEMPublicKey(priv.PublicKey())
	if err != nil {
		return api.PublicKey{}, nil, err
	}
	return pub, func(keys []api.WrappedKey) ([]string, error) { return s.unwrapAndLoad(keys, priv) }, nil
}

// LoadWithGrant runs the grant flow (DESIGN.md §4.1): the sidecar presents
// the custodian's grant and the EKBs (or retained key ids) to the KMS over
// mTLS with a fresh ephemeral key and loads what comes back.
func (s *Sidecar) LoadWithGrant(ctx context.Context, grant string, ekbs [][]byte, keyIDs []string) ([]string, error) {
	if s.revoked.Load() {
		return nil, errRevoked
	}
	pub, load, err := s.ephemeral()
	if err != nil {
		return nil, err
	}
	var out api.WrappedKeys
	req := api.LoadRequest{Grant: grant, EKBs: ekbs, KeyIDs: keyIDs, Recipient: pub}
	if err := s.kmsDo(ctx, http.MethodPost, "/v1/keys/load", req, &out); err != nil {
		return nil, err
	}
	return load(out.Keys)
}

// Derive runs seed derivation (DESIGN.md §4.3): the KMS derives each key
// from its seed under the tenant HMAC key and seals it to a fresh
// ephemeral key.
func (s *Sidecar) Derive(ctx context.Context, grant string, seeds []api.Seed) ([]string, error) {
	if s.revoked.Load() {
		return nil, errRevoked
	}
	pub, load, err := s.ephemeral()
	if err != nil {
		return nil, err
	}
	var out api.WrappedKeys
	req := api.DeriveRequest{Grant: grant, Seeds: seeds, Recipient: pub}
	if err := s.kmsDo(ctx, http.MethodPost, "/v1/keys/derive", req, &out); err != nil {
		return nil, err
	}
	return load(out.Keys)
}

// kmsDo calls the KMS as this instance, tracking reachability, and turns
// transport failures into an "unavailable" API error.
func (s *Sidecar) kmsDo(ctx context.Context, method, path string, in, out any) error {
	err := s.kms.Do(ctx, method, path, in, out)
	var ae *api.Error
	if err != nil && !errors.As(err, &ae) {
		s.reachable.Store(false)
		return api.Errorf(api.CodeUnavailable, "The KMS cannot be reached: %v", err)
	}
	s.reachable.Store(true)
	s.lastContact.Store(s.cfg.Now().UnixNano())
	if api.CodeOf(err) == api.CodeRevoked && ae != nil && ae.Status == http.StatusForbidden && strings.HasPrefix(path, "/v1/revocations") {
		s.selfRevoke("the KMS refused this instance")
	}
	return err
}

// Seal moves keys to the stateless mode (DESIGN.md §4.4): each key's
// current version is sealed under the enclave's local master key with its
// metadata and lease, and evicted from memory. Operations then carry the
// blob as sealed_key.
func (s *Sidecar) Seal(ctx context.Context, keyIDs []string) ([]api.SealedKey, error) {
	if len(keyIDs) == 0 {
		return nil, api.Errorf(api.CodeInvalidArgument, "key_ids must name at least one loaded key.")
	}
	out := make([]api.SealedKey, 0, len(keyIDs))
	known := make([]int64, 0, len(keyIDs)) // the KMS's count of each sealed version
	vers := make([]int, 0, len(keyIDs))
	for _, id := range keyIDs {
		md, material, until, err := s.ring.Current(id)
		if err != nil {
			return nil, err
		}
		if l := policy.Limits(md.Policy); l.MaxOperations > 0 || l.MaxBytes > 0 {
			material.Wipe()
			return nil, api.Errorf(api.CodeInvalidArgument, "Key %s cannot be sealed: its policy limits the operations or bytes per load, which a stateless sidecar cannot count. Keep it loaded.", id)
		}
		blob, err := s.sealOne(ctx, md, material, until)
		material.Wipe()
		if err != nil {
			return nil, err
		}
		out = append(out, api.SealedKey{KeyID: id, SealedKey: blob})
		known = append(known, s.ring.Reported(id, md.Version))
		vers = append(vers, md.Version)
	}
	for i, id := range keyIDs {
		s.ring.Evict(id)
		// The sealed version keeps counting toward its safe limit from
		// what the KMS knew (unreported counts survive eviction).
		if known[i] > 0 {
			s.ring.SetReported(id, vers[i], known[i])
		}
	}
	return out, nil
}

func (s *Sidecar) sealOne(ctx context.Context, md api.KeyMetadata, material *secret.Bytes, until time.Time) ([]byte, error) {
	mdJSON, err := format.MetadataAAD(&md)
	if err != nil {
		return nil, err
	}
	sk := &format.SealedKey{Metadata: mdJSON}
	if !until.IsZero() {
		sk.LeaseUntil = until.UnixNano()
	}
	if sk.Blob, err = s.enc.LocalSeal(ctx, material, sk.Header()); err != nil {
		return nil, err
	}
	return sk.Marshal(), nil
}

// openSealed opens a sealed_key for one operation; the key is wiped when
// the operation releases it.
func (s *Sidecar) openSealed(ctx context.Context, ref api.KeyRef, version int, action api.Action) (*kcrypto.Key, ops.Releaser, error) {
	bad := api.Errorf(api.CodeInvalidSealedKey, "The sealed_key does not open in this sidecar: it was sealed by another sidecar, or by this one before a restart (a software enclave's local master key does not survive restarts; a TPM's does), or it was modified.")
	sk, err := format.ParseSealedKey(ref.SealedKey)
	if err != nil {
		return nil, nil, bad
	}
	material, err := s.enc.LocalOpen(ctx, sk.Blob, sk.Header())
	if errors.Is(err, enclave.ErrOpen) {
		return nil, nil, bad
	}
	if err != nil {
		return nil, nil, err
	}
	defer material.Wipe()
	md, err := parseMetadata(sk.Metadata)
	if err != nil {
		return nil, nil, bad
	}
	if _, revoked := s.revokedKeys.Load(md.KeyID); revoked {
		return nil, nil, api.Errorf(api.CodeRevoked, "Key %s has been revoked by the KMS.", md.KeyID)
	}
	if floor := s.ring.MinVersion(md.KeyID); md.Version < floor {
		return nil, nil, api.Errorf(api.CodeRevoked, "Version %d of key %s is retired: its minimum decryption version is %d.", md.Version, md.KeyID, floor)
	}
	switch {
	case ref.KeyID != "" && ref.KeyID != md.KeyID:
		return nil, nil, api.Errorf(api.CodeInvalidArgument, "The sealed_key is key %s, not %s.", md.KeyID, ref.KeyID)
	case version != 0 && version != md.Version:
		return nil, nil, api.Errorf(api.CodeNotFound, "The sealed_key is version %d of key %s, not version %d.", md.Version, md.KeyID, version)
	case !policy.Allows(md.Policy, md.Owner, s.enrolled.CustodianDN, action):
		return nil, nil, api.Errorf(api.CodePolicyDenied, "The policy of key %s does not allow %s for %s.", md.KeyID, action, s.enrolled.CustodianDN)
	}
	now := s.cfg.Now()
	if (sk.LeaseUntil != 0 && now.UnixNano() >= sk.LeaseUntil) || (md.ExpiresAt != nil && !now.Before(*md.ExpiresAt)) {
		return nil, nil, api.Errorf(api.CodeExpired, "The lease of sealed key %s has run out; load and seal it again.", md.KeyID)
	}
	key, err := kcrypto.NewKey(md.Type, md.KeyID, uint32(md.Version), material)
	if err != nil {
		return nil, nil, err
	}
	return key, &sealedHandle{k: key, ring: s.ring, md: md}, nil
}

// sealedHandle releases a key opened from a sealed blob (it wipes it) and
// counts its encryptions toward the version's safe limit like a loaded
// key's (implements ops.Meter).
type sealedHandle struct {
	k    *kcrypto.Key
	ring *keyring.Ring
	md   api.KeyMetadata
}

func (h *sealedHandle) Release()           { h.k.Wipe() }
func (h *sealedHandle) Charge(n int) error { return h.ring.ChargeSealed(&h.md, n) }

// poll reads the revocation feed: it evicts revoked keys, stops serving if
// this instance was revoked, and renews leases when the KMS answered.
func (s *Sidecar) poll() {
	if s.revoked.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	path := "/v1/revocations"
	if s.cursor != "" {
		path += "?since=" + url.QueryEscape(s.cursor)
	}
	var feed api.RevocationFeed
	if err := s.kmsDo(ctx, http.MethodGet, path, nil, &feed); err != nil {
		if api.CodeOf(err) != api.CodeUnavailable {
			s.log.Warn("revocation poll refused", "err", err)
		}
		return
	}
	for _, id := range feed.Instances {
		if id == s.enrolled.InstanceID {
			s.selfRevoke("the revocation feed lists this instance")
			return
		}
	}
	for _, id := range feed.Keys {
		s.revokedKeys.Store(id, true) // sealed blobs of it stop working too
		if s.ring.Evict(id) {
			s.metrics.revoked.Inc()
			s.audit.Record("kms", "keys.revoked", id, "evicted", "")
			s.log.Info("key revoked by the KMS: evicted", "key", id)
		}
	}
	for _, kv := range feed.KeyVersions {
		// Sealed blobs of the retired versions stop working too.
		if n := s.ring.Retire(kv.KeyID, kv.MinDecryptionVersion); n > 0 {
			s.audit.Record("kms", "keys.retired", kv.KeyID, "evicted", "")
			s.log.Info("key versions retired by the KMS: evicted", "key", kv.KeyID, "min_decryption_version", kv.MinDecryptionVersion, "evicted", n)
		}
	}
	s.cursor = feed.Cursor
	s.ring.RenewAll(s.cfg.Now().Add(s.cfg.LeaseTTL))
	s.reportUsage(ctx)
}

// reportUsage sends the KMS the encryption counts it has not heard of yet
// (POST /v1/usage), so its per-version totals include this sidecar's. A
// failed report is retried at the next poll; one whose answer was lost is
// counted twice, which errs on the safe side.
func (s *Sidecar) reportUsage(ctx context.Context) {
	counts := s.ring.Unreported()
	if len(counts) == 0 {
		return
	}
	var out api.UsageAccepted
	if err := s.kmsDo(ctx, http.MethodPost, "/v1/usage", api.UsageReport{Counts: counts}, &out); err != nil {
		if api.CodeOf(err) != api.CodeUnavailable {
			s.log.Warn("usage report refused", "err", err)
		}
		return
	}
	s.ring.MarkReported(counts)
}

// selfRevoke stops serving for good: every key is wiped and every
// operation answers 403 revoked.
func (s *Sidecar) selfRevoke(why string) {
	if s.revoked.Swap(true) {
		return
	}
	s.log.Warn("this sidecar instance was revoked: evicting every key", "why", why)
	s.audit.Record("kms", "instance.revoked", "", "stopped", string(api.CodeRevoked))
	s.ring.Close()
}
