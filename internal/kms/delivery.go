package kms

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/store"
)

// Rotation that reaches running sidecars (Day 2).
//
// The KMS keeps the EKB of every key version it makes (sealed under the
// tenant master key, like every EKB; retained or not, which still decides
// who may name a key by id) and records which versions it released to
// which sidecar instance. When a key gets a new version — by its owner
// (POST /v1/datakeys/{id}/versions), by its rotation period or by usage
// (the rotator below) — the store appends a key_rotated event to the feed
// in the same transaction. A sidecar that holds the key sees the event at
// its next poll and asks POST /v1/keys/refresh for the versions newer than
// its own; the KMS delivers them only to an instance it released the key
// to before, only while the key's policy still names the instance's
// custodian, sealed to a fresh ephemeral key of the sidecar. The custodian
// writes no code for it.

// recordRelease notes, through tx, what was sealed to an instance, before
// the answer leaves.
func (k *KMS) recordRelease(ctx context.Context, tx store.Releases, instanceID string, keys releasable) error {
	refs := make([]store.KeyRef, len(keys))
	for i, o := range keys {
		refs[i] = store.KeyRef{KeyID: o.md.KeyID, Version: o.md.Version}
	}
	if err := tx.RecordReleases(ctx, instanceID, refs, k.now()); err != nil {
		return storeErr(err, "release record")
	}
	return nil
}

// stillReleasable checks again, through tx, that each registered key of
// a release is live and each version not retired: release runs it in the
// transaction that records the release, after the call's audit record
// (call.commitChecked), so it sees every revocation committed before the
// release record. The revocation feed tells an instance only about the
// keys released to it, as recorded when it polls; without this check a
// key disabled (or a version retired) after openForRelease's checks but
// before the record committed could reach a sidecar whose poll, in
// between, skipped the event as not its business. With it, either the
// record was there for that poll, or the disable committed before the
// check and the release is refused. (A rotation racing the same way is
// not announced to the sidecar: it fetches the new version at the key's
// next feed event, or reloads it.)
//
// Every change that could refuse a release (a disable, a retirement)
// appends an event to the revocation feed in its own transaction, and the
// feed's numbers commit in order. A key whose registry entry was read after
// the feed stood at feedSeq (openForRelease notes it) needs a second look
// only if an event after feedSeq names it: the check reads the tenant's
// events since then (one statement, usually no row) and re-reads just the
// keys they name, or every key of the release when there are too many
// events to look through.
func stillReleasable(ctx context.Context, tx reader, keys releasable) error {
	lowest := map[string]int{} // key id → the lowest version released now
	var ids []string
	tenant, since := "", int64(math.MaxInt64)
	for _, o := range keys {
		if o.ekb == nil {
			continue // seed-derived keys have no registry entry and no events
		}
		tenant, since = o.md.Tenant, min(since, o.feedSeq)
		if v, ok := lowest[o.md.KeyID]; !ok {
			ids = append(ids, o.md.KeyID)
			lowest[o.md.KeyID] = o.md.Version
		} else {
			lowest[o.md.KeyID] = min(v, o.md.Version)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	const maxEvents = 256
	evs, err := tx.RevocationsAfter(ctx, tenant, since, maxEvents)
	if err != nil {
		return storeErr(err, "revocation feed")
	}
	if len(evs) < maxEvents {
		named := map[string]bool{}
		for _, ev := range evs {
			id, _, _ := strings.Cut(ev.Subject, ":") // key id, or "<key id>:<version>"
			if _, ok := lowest[id]; ok {
				named[id] = true
			}
		}
		ids = slices.DeleteFunc(ids, func(id string) bool { return !named[id] })
		if len(ids) == 0 {
			return nil
		}
	}
	got, err := tx.GetKeys(ctx, ids)
	if err != nil {
		return storeErr(err, "key")
	}
	for _, id := range ids {
		key, ok := got[id]
		if !ok {
			return storeErr(store.ErrNotFound, "key")
		}
		if key.DisabledAt != nil {
			return api.Errorf(api.CodeRevoked, "Key %s has been disabled.", id)
		}
		if v := lowest[id]; v < key.MinDecryptionVersion {
			return api.Errorf(api.CodeRevoked, "Version %d of key %s is retired: its minimum decryption version is %d.", v, id, key.MinDecryptionVersion)
		}
	}
	return nil
}

// refreshKeys serves POST /v1/keys/refresh: a sidecar asks for the
// versions newer than the ones it holds of keys released to it before.
// Keys it was never given, keys of other tenants, disabled keys and keys
// with nothing newer are left out of the answer without a word, so the
// answer says nothing about keys that are not the sidecar's business.
func (k *KMS) refreshKeys(ctx context.Context, c *call) (any, error) {
	var req api.RefreshRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := k.checkBatch(len(req.Keys), "keys must name at least one key the sidecar holds.", "keys"); err != nil {
		return nil, err
	}
	have := make(map[string]int, len(req.Keys))
	ids := make([]string, 0, len(req.Keys))
	for i, r := range req.Keys {
		if r.KeyID == "" || r.Version < 1 {
			return nil, prefixItem(api.Errorf(api.CodeInvalidArgument, "Each key needs a key_id and the version held (at least 1)."), "key", i, len(req.Keys))
		}
		if _, dup := have[r.KeyID]; !dup {
			ids = append(ids, r.KeyID)
		}
		have[r.KeyID] = max(have[r.KeyID], r.Version)
	}
	to, err := k.sidecarRecipient(c.caller, req.Recipient)
	if err != nil {
		return nil, err
	}
	in := c.caller.Instance
	released, err := k.st.ReleasedVersions(ctx, in.ID, ids)
	if err != nil {
		return nil, storeErr(err, "release record")
	}
	var keys releasable
	defer func() { keys.wipe() }()
	for _, id := range ids {
		if _, ok := released[id]; !ok {
			continue
		}
		got, err := k.newerVersions(ctx, in, id, have[id])
		if err != nil {
			return nil, err
		}
		keys = append(keys, got...)
	}
	if len(keys) == 0 {
		return &api.WrappedKeys{Keys: []api.WrappedKey{}}, nil
	}
	c.keyID = keys[len(keys)-1].md.KeyID
	return k.release(ctx, c, nil, to, keys, "refresh")
}

// newerVersions opens the versions of key id above have that in may hold:
// registered with their EKB, not retired, and released to in's custodian
// by their policy. A version that cannot be released now is skipped.
func (k *KMS) newerVersions(ctx context.Context, in *store.Instance, id string, have int) (releasable, error) {
	key, err := k.st.GetKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr(err, "key")
	}
	if key.Tenant != in.Tenant || key.DisabledAt != nil || key.CurrentVersion <= have {
		return nil, nil
	}
	vs, err := k.st.ListKeyVersions(ctx, id)
	if err != nil {
		return nil, storeErr(err, "key")
	}
	var out releasable
	for _, v := range vs {
		if v.Version <= have || v.Version < key.MinDecryptionVersion || len(v.EKB) == 0 {
			continue
		}
		o, err := k.openEKB(ctx, key.Tenant, v.EKB)
		if err != nil {
			out.wipe()
			return nil, err
		}
		if err := k.checkReleasable(ctx, o); err != nil || !policy.Releasable(o.md.Policy, o.md.Owner, in.CustodianDN) ||
			k.releaseAllowed(o.md.KeyID, o.md.Policy, in) != nil { // release conditions: release_attest.go
			o.material.Wipe()
			continue
		}
		out = append(out, o)
	}
	return out, nil
}

// rotateDue rotates the keys whose rotation is due (rotation period or
// three quarters of the safe encryptions) and whose current EKB the KMS
// holds: the new versions reach the sidecars that hold the keys through
// the feed. It is called periodically by the janitor.
func (k *KMS) rotateDue(ctx context.Context) {
	due, err := k.st.KeysDueForRotation(ctx, k.now(), string(api.KeyAES256GCM), warnAt(k.cfg.MaxEncryptions), 1000)
	if err != nil {
		if ctx.Err() == nil {
			k.log.Warn("listing keys due for rotation failed", "err", err)
		}
		return
	}
	for _, key := range due {
		if _, err := k.rotate(ctx, key); err != nil && ctx.Err() == nil {
			k.log.Warn("automatic rotation failed", "key", key.KeyID, "err", err)
		}
	}
}

// rotate makes the next version of key if its rotation is due and the KMS
// holds the current EKB; it reports whether the key has a newer version
// now (made here, or by a request or replica that raced it). Two replicas
// racing to rotate make one new version.
func (k *KMS) rotate(ctx context.Context, key store.Key) (bool, error) {
	cur, err := k.st.GetKeyVersion(ctx, key.KeyID, key.CurrentVersion)
	if err != nil {
		return false, storeErr(err, "key version")
	}
	why := k.rotationDue(key, cur)
	if why == "" || len(cur.EKB) == 0 || key.DisabledAt != nil {
		return false, nil
	}
	o, err := k.openEKB(ctx, key.Tenant, cur.EKB)
	if err != nil {
		return false, err
	}
	o.material.Wipe()
	if o.md.ExpiresAt != nil && !k.now().Before(*o.md.ExpiresAt) {
		return false, nil // expired: refused later, not renewed
	}
	_, v, err := k.nextVersion(ctx, key, &o.md)
	if err != nil {
		return false, err
	}
	err = k.storeRecorded(ctx, audit.Event{Action: "datakey.rotate_automatic", Tenant: key.Tenant, KeyID: key.KeyID}, func(tx store.Tx) error {
		return addVersion(ctx, tx, v)
	})
	switch {
	case api.CodeOf(err) == api.CodeConflict: // another request or replica rotated it
		return true, nil
	case err != nil:
		return false, err
	}
	k.log.Info("key rotated automatically", "key", key.KeyID, "version", key.CurrentVersion+1, "why", why)
	k.mx.rotations.Inc()
	return true, nil
}

// renewInstance serves POST /v1/instances/self/renew: a live sidecar,
// authenticated by its current identity certificate, gets new identity
// and wrapping certificates (a revoked one was refused by authenticate).
// The CSR proves possession of the identity key; the wrapping key must be
// of the instance's KEM. The previous certificates stay valid until they
// expire, so nothing in flight breaks.
func (k *KMS) renewInstance(ctx context.Context, c *call) (any, error) {
	var req api.RenewInstanceRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	csr, err := parseCSR(req.CSRPEM)
	if err != nil {
		return nil, err
	}
	in := c.caller.Instance
	if req.WrappingPublicKey.KEM != api.KEM(in.WrappingKEM) {
		return nil, api.Errorf(api.CodeInvalidArgument, "wrapping_public_key must be a %s key, the KEM this instance enrolled with.", in.WrappingKEM)
	}
	if _, err := kcrypto.ParseKEMPublicKey(req.WrappingPublicKey); err != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "wrapping_public_key is not usable: %v", err)
	}
	if !sameKEMKey(in.WrappingPublic, req.WrappingPublicKey.PublicKey) {
		// The store keeps one transport key per instance, which rewrap
		// seals to; a sidecar keeps its enclave's key for its whole life.
		return nil, api.Errorf(api.CodeInvalidArgument, "wrapping_public_key differs from the instance's transport key; a sidecar renews with the key it enrolled with.")
	}
	authority := k.authority()
	idDER, idCert, err := authority.IssueInstance(csr.PublicKey, in.ID, in.Tenant, in.CustodianDN, k.cfg.InstanceCertTTL)
	if err != nil {
		return nil, err
	}
	wDER, wCert, err := authority.IssueWrapping(csr.PublicKey, req.WrappingPublicKey.KEM, req.WrappingPublicKey.PublicKey, in.ID, in.Tenant, in.CustodianDN, k.cfg.InstanceCertTTL)
	if err != nil {
		return nil, err
	}
	certs := []store.Cert{
		{Serial: ca.SerialString(idCert), Kind: store.CertInstance, Tenant: in.Tenant, Subject: in.ID, NotAfter: idCert.NotAfter},
		{Serial: ca.SerialString(wCert), Kind: store.CertWrapping, Tenant: in.Tenant, Subject: in.ID, NotAfter: wCert.NotAfter},
	}
	err = c.commit(ctx, func(tx store.Tx) error {
		return instanceWriteErr(tx.RenewInstance(ctx, in.ID, certs[0].Serial, certs[1].Serial, certs), in.ID)
	})
	if err != nil {
		return nil, err
	}
	k.mx.renewals.Inc()
	k.log.Info("sidecar certificates renewed", "instance", in.ID, "not_after", idCert.NotAfter)
	return &api.Enrollment{
		InstanceID: in.ID, CertPEM: pemCert(idDER), WrappingCertPEM: pemCert(wDER),
		CAPEM: authority.BundlePEM(), CustodianDN: in.CustodianDN,
	}, nil
}

func sameKEMKey(a, b []byte) bool { return string(a) == string(b) }

// currentWrapping checks that a wrapping certificate registered for an
// instance carries the instance's transport key: certificates from before
// a renewal keep working until they expire.
func currentWrapping(in store.Instance, rec store.Cert, info ca.WrappingInfo) bool {
	return rec.Kind == store.CertWrapping && rec.Subject == in.ID &&
		string(info.KEM) == in.WrappingKEM && sameKEMKey(info.PublicKey, in.WrappingPublic)
}

// instanceWriteErr maps the error of a write to instance id: a conflict
// means the instance was revoked meanwhile.
func instanceWriteErr(err error, id string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrConflict):
		return api.Errorf(api.CodeRevoked, "Sidecar instance %s has been revoked.", id)
	}
	return storeErr(err, "instance")
}
