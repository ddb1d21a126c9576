package sidecar

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/keyring"
	"github.com/dcaas/dcaas/internal/ops"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/secret"
)

// ready returns the sidecar's identity, or why it cannot act.
func (s *Sidecar) ready() (*identity, error) {
	if s.revoked.Load() {
		return nil, errRevoked
	}
	id := s.id.Load()
	if id == nil {
		return nil, errNotEnrolled
	}
	return id, nil
}

// kmsErr turns an error of a KMS call into the sidecar's API error: the
// KMS's own refusal passes through with its code and sentence; a KMS that
// cannot be reached (every replica tried) is "unavailable".
func (s *Sidecar) kmsErr(err error) error {
	if err == nil {
		s.markReachable(true)
		return nil
	}
	var ce *client.Error
	if errors.As(err, &ce) && ce.Code != api.CodeUnavailable {
		s.markReachable(true)
		return &api.Error{Code: ce.Code, Message: ce.Message, Status: ce.Status}
	}
	s.markReachable(false)
	return api.Errorf(api.CodeUnavailable, "The KMS cannot be reached: %v", err)
}

// markReachable records whether the KMS answered, logging each change.
func (s *Sidecar) markReachable(ok bool) {
	if ok {
		s.lastCtc.Store(s.cfg.Now().UnixNano())
	}
	if was := s.reachable.Swap(ok); was != ok {
		if ok {
			s.log.Info("the KMS is reachable")
		} else {
			s.log.Warn("the KMS cannot be reached; serving loaded keys until their leases run out")
		}
	}
}

// ephemeral makes a fresh HPKE key pair for one load, derive or refresh:
// the KMS seals the keys to it, on top of mTLS, and it is dropped
// afterwards.
func (s *Sidecar) ephemeral(id *identity) (api.PublicKey, func(*api.WrappedKeys) ([]string, error), error) {
	priv, err := kcrypto.GenerateKEMKey(id.e.KEM)
	if err != nil {
		return api.PublicKey{}, nil, err
	}
	pub, err := kcrypto.MarshalKEMPublicKey(priv.PublicKey())
	if err != nil {
		return api.PublicKey{}, nil, err
	}
	load := func(w *api.WrappedKeys) ([]string, error) {
		if len(w.Batch) > 0 {
			return s.loadBatch(id, priv, w.Batch, false)
		}
		// An ephemeral key cannot be replayed to: a KMS of the
		// previous release answers in format 1, which is safe here.
		return s.loadLegacy(id, w.Keys, priv, format.TransportInfo(id.e.InstanceID))
	}
	return pub, load, nil
}

// LoadWithGrant runs the grant flow: the sidecar presents the custodian's
// grant and the EKBs (or retained key ids) to the KMS over mTLS with a
// fresh ephemeral key and loads what comes back. The caller keeps grant.
func (s *Sidecar) LoadWithGrant(ctx context.Context, grant *secret.Bytes, ekbs [][]byte, keyIDs []string) ([]string, error) {
	return s.fetchKeys(func(kms *client.KMS, to api.PublicKey) (*api.WrappedKeys, error) {
		return kms.LoadKeys(ctx, api.LoadRequest{Grant: string(grant.Expose()), EKBs: ekbs, KeyIDs: keyIDs, Recipient: to})
	})
}

// Derive runs seed derivation: the KMS derives each key from its seed
// (under the bound custodian's seed key with SeedKDF v2, the default, or
// under the tenant HMAC key with v1, as each seed asks) and seals it to a
// fresh ephemeral key. The caller keeps grant.
func (s *Sidecar) Derive(ctx context.Context, grant *secret.Bytes, seeds []api.Seed) ([]string, error) {
	return s.fetchKeys(func(kms *client.KMS, to api.PublicKey) (*api.WrappedKeys, error) {
		return kms.DeriveKeys(ctx, api.DeriveRequest{Grant: string(grant.Expose()), Seeds: seeds, Recipient: to})
	})
}

// fetchKeys runs a grant load or a derive: fetch asks the KMS for keys
// sealed to a fresh ephemeral key (ephemeral), and fetchKeys loads them.
func (s *Sidecar) fetchKeys(fetch func(kms *client.KMS, to api.PublicKey) (*api.WrappedKeys, error)) ([]string, error) {
	id, err := s.ready()
	if err != nil {
		return nil, err
	}
	pub, load, err := s.ephemeral(id)
	if err != nil {
		return nil, err
	}
	out, err := fetch(id.kms, pub)
	if err != nil {
		return nil, s.kmsErr(err)
	}
	s.markReachable(true)
	return load(out)
}

// refreshKeys asks the KMS for versions newer than the loaded ones of
// keyIDs (rotation delivery) and loads them. Keys the KMS has nothing new
// for, or will not deliver (not registered there, like seed-derived keys),
// are left as they are.
func (s *Sidecar) refreshKeys(ctx context.Context, id *identity, keyIDs []string) error {
	var req api.RefreshRequest
	for _, k := range keyIDs {
		if v, ok := s.ring.Has(k, 0); ok {
			req.Keys = append(req.Keys, api.KeyVersionRef{KeyID: k, Version: v})
		}
	}
	if len(req.Keys) == 0 {
		return nil
	}
	pub, load, err := s.ephemeral(id)
	if err != nil {
		return err
	}
	req.Recipient = pub
	out, err := id.kms.RefreshKeys(ctx, req)
	if err != nil {
		return s.kmsErr(err)
	}
	s.markReachable(true)
	if len(out.Batch) == 0 && len(out.Keys) == 0 {
		return nil
	}
	ids, err := load(out)
	if err != nil {
		return err
	}
	for _, k := range out.Keys {
		s.audit.Record("kms", "keys.rotated", k.KeyID, "loaded", "")
		s.log.Info("new key version loaded", "key", k.KeyID, "version", k.Version)
	}
	s.metrics.rotations.Add(float64(len(ids)))
	return nil
}

// Seal moves keys to the stateless mode: every loaded version of each key
// is sealed under the enclave's local master key with its metadata and
// lease, and the key is evicted from memory. It returns one blob per
// version, oldest first; operations then carry a blob as sealed_key (the
// newest encrypts; each decrypts its own version). All or nothing.
func (s *Sidecar) Seal(ctx context.Context, keyIDs []string) ([]api.SealedKey, error) {
	if _, err := s.ready(); err != nil {
		return nil, err
	}
	if len(keyIDs) == 0 {
		return nil, api.Errorf(api.CodeInvalidArgument, "key_ids must name at least one loaded key.")
	}
	type version struct {
		id    string
		md    api.KeyMetadata
		until time.Time
		count int64 // the KMS's count of the version
		clear *secret.Bytes
	}
	var vers []version
	defer func() {
		for _, v := range vers {
			v.clear.Wipe()
		}
	}()
	// Every version of every key under one opening of the enclave's
	// protection key where it can (keyring.AllOf).
	loaded, err := s.ring.AllOf(keyIDs)
	for _, l := range loaded {
		id := l.MD.KeyID
		vers = append(vers, version{id, l.MD, l.LeaseUntil, s.ring.Reported(id, l.MD.Version), l.Material})
	}
	if err != nil {
		return nil, err
	}
	for _, l := range loaded {
		if lim := policy.Limits(l.MD.Policy); lim.MaxOperations > 0 || lim.MaxBytes > 0 {
			return nil, api.Errorf(api.CodeInvalidArgument, "Key %s cannot be sealed: its policy limits the operations or bytes per load, which a stateless sidecar cannot count. Keep it loaded.", l.MD.KeyID)
		}
	}
	// Every version under one opening of the local master key where the
	// enclave can (enclave.BatchSealer).
	headers := make([]*format.SealedKey, len(vers))
	clears := make([]*secret.Bytes, len(vers))
	aads := make([][]byte, len(vers))
	for i, v := range vers {
		mdJSON, err := format.MetadataAAD(&v.md)
		if err != nil {
			return nil, err
		}
		headers[i] = &format.SealedKey{Metadata: mdJSON}
		if !v.until.IsZero() {
			headers[i].LeaseUntil = v.until.UnixNano()
		}
		clears[i], aads[i] = v.clear, headers[i].Header()
	}
	blobs, err := s.localSealAll(ctx, clears, aads)
	if err != nil {
		return nil, err
	}
	out := make([]api.SealedKey, len(vers))
	for i, v := range vers {
		headers[i].Blob = blobs[i]
		out[i] = api.SealedKey{KeyID: v.id, Version: v.md.Version, SealedKey: headers[i].Marshal()}
	}
	for _, id := range keyIDs {
		s.ring.Evict(id)
	}
	// The sealed versions keep counting toward their safe limit from what
	// the KMS knew (unreported counts survive eviction), for good: a usage
	// report must not make the ring forget them.
	for _, v := range vers {
		s.ring.KeepSealed(v.id, v.md.Version, v.count)
	}
	return out, nil
}

// localSealAll seals each plaintext with its aad under the enclave's local
// master key, in one batch where the enclave offers it.
func (s *Sidecar) localSealAll(ctx context.Context, plaintexts []*secret.Bytes, aads [][]byte) ([][]byte, error) {
	if bs, ok := s.enc.(enclave.BatchSealer); ok {
		return bs.LocalSealAll(ctx, plaintexts, aads)
	}
	blobs := make([][]byte, len(plaintexts))
	for i, p := range plaintexts {
		var err error
		if blobs[i], err = s.enc.LocalSeal(ctx, p, aads[i]); err != nil {
			return nil, err
		}
	}
	return blobs, nil
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
	md, err := decodeMetadata(sk.Metadata)
	if err != nil {
		return nil, nil, bad
	}
	if s.ring.Revoked(md.KeyID) {
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
	case !policy.Allows(md.Policy, md.Owner, s.ring.BoundDN(), action):
		return nil, nil, api.Errorf(api.CodePolicyDenied, "The policy of key %s does not allow %s for %s.", md.KeyID, action, s.ring.BoundDN())
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

// poll reads the revocation feed: it evicts revoked keys and retired
// versions for good, stops serving if this instance was revoked, fetches
// new versions of rotated keys it holds, and renews leases and reports
// usage when the KMS answered.
func (s *Sidecar) poll() {
	id, err := s.ready()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	feed, err := id.kms.PollRevocations(ctx, s.cursor, s.ring.Len())
	if err = s.kmsErr(err); err != nil {
		switch api.CodeOf(err) {
		case api.CodeRevoked:
			s.selfRevoke("the KMS refused this instance")
		case api.CodeUnavailable:
		default:
			s.log.Warn("revocation poll refused", "err", err)
		}
		return
	}
	for _, inst := range feed.Instances {
		if inst == id.e.InstanceID {
			s.selfRevoke("the revocation feed lists this instance")
			return
		}
	}
	for _, k := range feed.Keys {
		if s.ring.Revoke(k) {
			s.metrics.revoked.Inc()
			s.audit.Record("kms", "keys.revoked", k, "evicted", "")
			s.log.Info("key revoked by the KMS: evicted", "key", k)
		}
	}
	for _, kv := range feed.KeyVersions {
		// Sealed blobs of the retired versions stop working too.
		if n := s.ring.Retire(kv.KeyID, kv.MinDecryptionVersion); n > 0 {
			s.audit.Record("kms", "keys.retired", kv.KeyID, "evicted", "")
			s.log.Info("key versions retired by the KMS: evicted", "key", kv.KeyID, "min_decryption_version", kv.MinDecryptionVersion, "evicted", n)
		}
	}
	for _, r := range feed.Rotated {
		if v, ok := s.ring.Has(r.KeyID, 0); ok && v < r.Version {
			s.refresh.addID(r.KeyID)
		}
	}
	s.cursor = feed.Cursor
	s.setRevokedCerts(feed.RevokedCertificates)
	s.ring.RenewAll(s.cfg.Now().Add(s.cfg.LeaseTTL))
	if s.polls%trustEvery == 0 {
		s.followTrust(ctx, id)
	}
	s.polls++
	if ids := s.refresh.take(); len(ids) > 0 {
		if err := s.refreshKeys(ctx, id, ids); err != nil {
			s.log.Warn("fetching new key versions failed; retrying at the next poll", "keys", len(ids), "err", err)
			for _, k := range ids {
				s.refresh.addID(k)
			}
		}
	}
	s.reportUsage(ctx, s.polls%usageEvery == 0)
}

// trustEvery is how many revocation polls pass between two reads of the
// KMS's trust bundle (followTrust): once a minute at the default 10 s
// poll, the first at the first poll. A CA rotation's steps are minutes
// apart; a GET a poll would double the requests a fleet sends.
const trustEvery = 6

// followTrust reads the KMS's trust bundle (GET /v1/ca, over TLS verified
// against what the sidecar trusts already) and, when it is not the one the
// identity holds, installs the identity again with it and stores it with
// the enrollment: a CA that a rotation prepared is trusted for the KMS's TLS
// certificate before it is activated, and callers whose certificates chain
// only to a CA the rotation retired are refused from then on (verifyClient)
// — with no restart and no new enrollment.
func (s *Sidecar) followTrust(ctx context.Context, id *identity) {
	tr, err := id.kms.CA(ctx)
	if err != nil || tr.BundlePEM == "" || tr.BundlePEM == id.e.CAPEM && id.e.ConfigCA == s.configCA {
		return // unchanged, or the next poll asks again
	}
	e := id.e
	e.CAPEM, e.ConfigCA = tr.BundlePEM, s.configCA
	next, err := s.newIdentity(ctx, e)
	if err != nil {
		s.log.Warn("the KMS's trust bundle changed but does not take this sidecar's certificates; keeping the previous bundle until the next renewal", "err", err)
		return
	}
	next.got = id.got // the same certificates: renewal stays due when it was
	if !s.id.CompareAndSwap(id, next) {
		next.kms.Close() // a renewal installed newer certificates meanwhile
		return
	}
	id.kms.Close()
	if err := s.persist(e); err != nil {
		s.log.Warn("storing the KMS's new trust bundle failed; the sidecar reads it again after a restart", "err", err)
	}
	s.audit.Record("kms", "trust.changed", "", "ok", "")
	s.log.Info("the KMS's trust bundle changed: callers and the KMS are verified against it", "cas", len(tr.CAs), "phase", tr.Phase)
}

// usageEvery is how many revocation polls pass between two usage reports:
// once a minute at the default 10 s poll. Each report is an audited write
// at the KMS; one per poll would put 8,640 records a day per busy sidecar
// into its audit log. The KMS's totals lag by at most that minute (a
// version near its limit is reported at once, usageUrgent), while the
// sidecar counts every encryption against the limit itself.
const usageEvery = 6

// usageUrgent: an unreported count of at least 1/usageUrgent of the safe
// limit is reported at the next poll, not the next minute.
const usageUrgent = 1024

// reportUsage sends the KMS the encryption counts it has not heard of yet
// (POST /v1/usage), so its per-version totals include this sidecar's:
// when due (every usageEvery polls, and at Close) or when a count is
// urgent. A failed report is retried at the next poll; one whose answer
// was lost is counted twice, which errs on the safe side.
func (s *Sidecar) reportUsage(ctx context.Context, due bool) {
	id := s.id.Load()
	counts := s.ring.Unreported()
	if id == nil || len(counts) == 0 {
		return
	}
	if !due {
		limit := s.cfg.MaxEncryptions
		if limit <= 0 {
			limit = ops.DefaultMaxEncryptions
		}
		if !slices.ContainsFunc(counts, func(c api.UsageCount) bool { return c.Encryptions >= max(1, limit/usageUrgent) }) {
			return
		}
	}
	_, err := id.kms.ReportUsage(ctx, api.UsageReport{Counts: counts})
	if err = s.kmsErr(err); err != nil {
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
