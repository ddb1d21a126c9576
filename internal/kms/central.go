package kms

import (
	"context"
	"errors"
	"strconv"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/ops"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/store"
)

// The central path: the operations of docs/api.md served by the KMS itself,
// with the key named by an EKB or a retained key id. It is what dcaas
// replaces (every operation pays a network round trip and an EKB open) and
// the baseline the sidecar is measured against; applications switch by
// changing their base URL.

// centralResolver resolves keys for the caller of the request in ctx.
type centralResolver struct{ k *KMS }

// keyHandle is a key opened for one central operation; Release wipes it.
// It counts the request's encryptions (ops.Meter) and carries the key's
// rotation warning (ops.Warner).
type keyHandle struct {
	key     *kcrypto.Key
	c       *call
	limit   int64 // safe encryptions of the version; 0: not counted
	stored  int64 // the version's registry count when acquired
	warning string
}

func (h *keyHandle) Release()        { h.key.Wipe() }
func (h *keyHandle) Warning() string { return h.warning }

func (h *keyHandle) Charge(n int) error {
	if h.limit == 0 {
		return nil
	}
	return h.c.usage.charge(h.key.KeyID(), int(h.key.Version()), h.stored, h.limit, n)
}

func (r centralResolver) Acquire(ctx context.Context, ref api.KeyRef, version int, action api.Action) (*kcrypto.Key, ops.Releaser, error) {
	c, _ := ctx.Value(ctxKey{}).(*call)
	if c == nil || c.caller == nil {
		return nil, nil, errors.New("kms: central operation without a caller")
	}
	k, who := r.k, c.caller
	if len(ref.SealedKey) > 0 {
		return nil, nil, api.Errorf(api.CodeInvalidArgument, "sealed_key is a sidecar's local blob; the KMS takes ekb or a retained key_id.")
	}
	raw := ref.EKB
	if len(raw) == 0 {
		// Named by id: only a key the caller owns or whose policy names
		// it exists for it (keyids.go).
		key, err := k.namedKey(ctx, who.Tenant, who.DN, ref.KeyID, true)
		if err != nil {
			return nil, nil, err
		}
		if version == 0 {
			// The current version is asked for: a retained key whose
			// rotation is due is rotated first (the KMS holds its EKBs).
			if key, err = k.rotateIfDue(ctx, key); err != nil {
				return nil, nil, err
			}
			version = key.CurrentVersion
		}
		v, err := k.st.GetKeyVersion(ctx, ref.KeyID, version)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, api.Errorf(api.CodeNotFound, "Key %s has no version %d.", ref.KeyID, version)
		}
		if err != nil {
			return nil, nil, storeErr(err, "key")
		}
		raw = v.EKB
	}
	o, err := k.openCentral(ctx, who.Tenant, raw)
	if err != nil {
		return nil, nil, err
	}
	defer o.material.Wipe()
	c.keyID = o.md.KeyID
	if ref.KeyID != "" && ref.KeyID != o.md.KeyID {
		return nil, nil, api.Errorf(api.CodeInvalidArgument, "The EKB is for key %s, not %s.", o.md.KeyID, ref.KeyID)
	}
	if version != 0 && version != o.md.Version {
		return nil, nil, api.Errorf(api.CodeInvalidArgument, "The EKB is version %d of key %s; the ciphertext needs version %d.", o.md.Version, o.md.KeyID, version)
	}
	reg, v, err := k.registryEntry(ctx, &o.md)
	if err != nil {
		return nil, nil, err
	}
	if !policy.Allows(o.md.Policy, o.md.Owner, who.DN, action) {
		return nil, nil, api.Errorf(api.CodePolicyDenied, "The policy of key %s does not allow %s for %s.", o.md.KeyID, action, who.DN)
	}
	if o.md.Type == api.KeyAES256KBPK {
		return nil, nil, api.Errorf(api.CodeWrongKeyType, "Key %s is a key-block protection key (aes-256-kbpk): it wraps and unwraps TR-31 key blocks only.", o.md.KeyID)
	}
	h := &keyHandle{c: c, stored: v.Encryptions}
	if usageLimited(reg.Type) {
		h.limit = k.cfg.MaxEncryptions
	}
	if v.Version == reg.CurrentVersion {
		if why := k.rotationDue(reg, v); why != "" {
			h.warning = rotationWarning(reg.KeyID, why)
		}
	}
	if h.key, err = kcrypto.NewKey(o.md.Type, o.md.KeyID, uint32(o.md.Version), o.material); err != nil {
		return nil, nil, err
	}
	return h.key, h, nil
}

// entryOf checks md's key and version in registry rows read already
// (GetKeysAndVersions): see checkEntry.
func (k *KMS) entryOf(md *api.KeyMetadata, keys map[string]store.Key, versions map[store.KeyRef]store.KeyVersion) (store.Key, store.KeyVersion, error) {
	reg, regOK := keys[md.KeyID]
	v, vOK := versions[store.KeyRef{KeyID: md.KeyID, Version: md.Version}]
	return k.checkEntry(md, reg, regOK, v, vOK)
}

// checkEntry checks md's key and version against their registry rows
// (regOK, vOK: found): registered, not disabled, not expired, the version
// registered and not retired.
func (k *KMS) checkEntry(md *api.KeyMetadata, reg store.Key, regOK bool, v store.KeyVersion, vOK bool) (store.Key, store.KeyVersion, error) {
	if !regOK {
		return reg, store.KeyVersion{}, k.usable(md, reg, store.ErrNotFound)
	}
	if err := k.usable(md, reg, nil); err != nil {
		return reg, store.KeyVersion{}, err
	}
	if md.Version < reg.MinDecryptionVersion {
		return reg, store.KeyVersion{}, retired(reg, md.Version)
	}
	if !vOK {
		return reg, v, versionErr(reg, md.Version, store.ErrNotFound)
	}
	return reg, v, nil
}

// centralRoutes mounts the operation engine on the KMS for custodians.
func (k *KMS) centralRoutes() {
	engine := &ops.Engine{R: centralResolver{k: k}}
	for _, rt := range engine.Routes() {
		limit := k.cfg.BodyLimit
		if rt.Batch {
			limit = k.cfg.BatchBodyLimit
		}
		serve := rt.Serve
		k.handle(rt.Pattern, rt.Name, []api.Role{api.RoleCustodian}, limit, func(ctx context.Context, c *call) (any, error) {
			c.usage, c.readsKept = &centralUsage{}, true
			resp, err := serve(context.WithValue(ctx, ctxKey{}, c), c.decode)
			if err != nil {
				return nil, err // nothing is answered, so nothing encrypted needs counting
			}
			if err := k.flushUsage(ctx, c); err != nil {
				return nil, err
			}
			return resp, nil
		})
	}
}

// revocations serves GET /v1/revocations to sidecars: the revocation
// events after a cursor that concern the calling instance — of the keys
// released to it, and of itself. A revoked sidecar cannot call it
// (authentication refuses it), which is how it learns it was revoked.
func (k *KMS) revocations(ctx context.Context, c *call) (any, error) {
	// What the sidecar says it holds (keys_loaded), for the fleet view;
	// -1: it did not say.
	loaded := -1
	if s := c.r.URL.Query().Get("keys_loaded"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > maxKeysLoaded {
			return nil, api.Errorf(api.CodeInvalidArgument, "keys_loaded must be the number of keys the sidecar holds (0 to %d).", maxKeysLoaded)
		}
		loaded = v
	}
	after, err := c.cursor("since", "since must be a cursor returned by this endpoint.")
	if err != nil {
		return nil, err
	}
	// The feed's end is read before the events, so an event committed
	// between the two reads is delivered next time instead of skipped.
	last := int64(0)
	if after == 0 {
		if last, err = k.st.LastRevocation(ctx); err != nil {
			return nil, storeErr(err, "revocations")
		}
	}
	evs, err := k.st.RevocationsAfter(ctx, c.caller.Tenant, after, 1000)
	if err != nil {
		return nil, storeErr(err, "revocations")
	}
	// A sidecar hears of the keys released to it and of itself, nothing
	// else (issue 12): the feed would otherwise tell every sidecar of the
	// tenant the ids of other custodians' keys and of other sidecars. The
	// cursor still moves past every event. (Releases are read after the
	// events; a release racing a disable is settled by stillReleasable.)
	held, err := k.heldKeys(ctx, c.caller.Instance.ID, evs)
	if err != nil {
		return nil, err
	}
	feed := api.RevocationFeed{Instances: []string{}, Keys: []string{}}
	for _, e := range evs {
		after = e.Seq
		switch e.Kind {
		case store.RevocationInstance:
			if e.Subject == c.caller.Instance.ID {
				feed.Instances = append(feed.Instances, e.Subject)
			}
		case store.RevocationKey:
			if held[e.Subject] {
				feed.Keys = append(feed.Keys, e.Subject)
			}
		case store.RevocationKeyVersion:
			if f, ok := parseFloor(e.Subject); ok && held[f.KeyID] {
				feed.KeyVersions = append(feed.KeyVersions, f)
			}
		case store.RevocationKeyRotated:
			if f, ok := parseFloor(e.Subject); ok && held[f.KeyID] {
				feed.Rotated = append(feed.Rotated, api.KeyVersionRef{KeyID: f.KeyID, Version: f.MinDecryptionVersion})
			}
		}
	}
	if len(evs) == 0 && after == 0 {
		// A first poll with nothing to report starts the cursor at the
		// feed's end, so the next poll skips other tenants' history.
		after = last
	}
	feed.Cursor = strconv.FormatInt(after, 10)
	if feed.RevokedCertificates, err = k.revokedCustodianCerts(ctx, c.caller.Instance.CustodianDN); err != nil {
		return nil, err
	}
	// The poll is the instance's sign of life: its time and the count it
	// gave. A poll that delivers nothing is answered quietly, its time
	// stored later with others' (polls.go); one that delivers events
	// stores it with the call's audit record.
	if len(feed.Instances) == 0 && len(feed.Keys) == 0 && len(feed.KeyVersions) == 0 && len(feed.Rotated) == 0 {
		k.polls.note(c.caller.Instance.ID, pollNote{at: k.now(), loaded: loaded})
		c.quiet = true
		return feed, nil
	}
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := tx.NotePoll(ctx, c.caller.Instance.ID, k.now(), loaded); err != nil {
			return storeErr(err, "instance")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return feed, nil
}

// revokedCustodianCerts are the serials of the custodian dn's client
// certificates that are revoked and not expired (the revocation feed's
// revoked_certificates): a sidecar bound to that custodian refuses them at
// its mutual-TLS listener, which checks chains, not the KMS's registry.
func (k *KMS) revokedCustodianCerts(ctx context.Context, dn string) ([]string, error) {
	out, err := k.st.RevokedAppCerts(ctx, dn, k.now())
	if err != nil {
		return nil, storeErr(err, "certificates")
	}
	return out, nil
}

// maxKeysLoaded bounds the count a sidecar reports at its poll.
const maxKeysLoaded = 1 << 30

// heldKeys returns the set of the key ids that events name which were
// ever released to the instance.
func (k *KMS) heldKeys(ctx context.Context, instanceID string, evs []store.Revocation) (map[string]bool, error) {
	var ids []string
	for _, e := range evs {
		switch e.Kind {
		case store.RevocationKey:
			ids = append(ids, e.Subject)
		case store.RevocationKeyVersion, store.RevocationKeyRotated:
			if f, ok := parseFloor(e.Subject); ok {
				ids = append(ids, f.KeyID)
			}
		}
	}
	held := map[string]bool{}
	if len(ids) == 0 {
		return held, nil
	}
	released, err := k.st.ReleasedVersions(ctx, instanceID, ids)
	if err != nil {
		return nil, storeErr(err, "release record")
	}
	for id := range released {
		held[id] = true
	}
	return held, nil
}

// disableKey serves DELETE /v1/datakeys/{key_id}: the key's owner or an
// admin disables it everywhere (the KMS refuses to release it; sidecars
// evict it at their next revocation poll).
func (k *KMS) disableKey(ctx context.Context, c *call) (any, error) {
	key, err := k.ownedKey(ctx, c)
	if err != nil {
		return nil, err
	}
	id := key.KeyID
	use, err := k.approvalFor(ctx, c, api.ApprovalDisable, key.Tenant, id, nil)
	if err != nil {
		return nil, err
	}
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := use.consumeIn(ctx, tx); err != nil {
			return err
		}
		if err := tx.DisableKey(ctx, id, k.now()); err != nil {
			return storeErr(err, "key")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return api.Disabled{Disabled: true}, nil
}
