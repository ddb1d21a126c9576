package kms

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/wire"
)

const (
	maxLabels     = 32
	maxLabelLen   = 256
	maxPurposeLen = 256
	keyIDPrefix   = "key_"
	// The upper bound of rotation_period_seconds (the lower one is
	// Config.MinRotationPeriod).
	maxRotationPeriod = 100 * 365 * 24 * time.Hour
	instancePrefix    = "ins_"
)

func pemCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func (k *KMS) createDataKey(ctx context.Context, c *call) (any, error) {
	var req api.CreateDataKeyRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	md, err := k.newMetadata(c.caller, req, k.now())
	if err != nil {
		return nil, err
	}
	c.keyID = md.KeyID
	material, err := kcrypto.GenerateKey(req.Type)
	if err != nil {
		return nil, err
	}
	defer material.Wipe()
	return k.storeNewKey(ctx, c, md, material, req.Retain)
}

// storeNewKey seals material into version 1 of a new key of the caller's
// tenant (newKey), registers it in a transaction of its own (createKey)
// and counts it: a key generated here or imported from a TR-31 block.
func (k *KMS) storeNewKey(ctx context.Context, c *call, md *api.KeyMetadata, material *secret.Bytes, retain bool) (*api.DataKey, error) {
	dk, key, v, err := k.newKey(ctx, c.caller.Tenant, md, material, retain)
	if err != nil {
		return nil, err
	}
	if err := c.commit(ctx, func(tx store.Tx) error { return createKey(ctx, tx, key, v) }); err != nil {
		return nil, err
	}
	k.mx.created.WithLabelValues(key.Type).Inc()
	return dk, nil
}

// newKey seals material (generated or imported) with version 1's
// metadata into an EKB under the tenant's current master key, and returns
// the key and the registry entries to store with createKey.
func (k *KMS) newKey(ctx context.Context, tenant string, md *api.KeyMetadata, material *secret.Bytes, retain bool) (*api.DataKey, store.Key, store.KeyVersion, error) {
	t, err := k.st.GetTenant(ctx, tenant)
	if err != nil {
		return nil, store.Key{}, store.KeyVersion{}, storeErr(err, "tenant")
	}
	if md.Type.Signing() {
		if md.PublicKeyPEM, err = kcrypto.PublicKeyPEM(md.Type, material); err != nil {
			return nil, store.Key{}, store.KeyVersion{}, err
		}
	}
	kcv, err := kcvOf(md.Type, material)
	if err != nil {
		return nil, store.Key{}, store.KeyVersion{}, err
	}
	ekb, err := k.sealEKB(ctx, t.Name, t.MasterKeyVersion, md, material)
	if err != nil {
		return nil, store.Key{}, store.KeyVersion{}, err
	}
	key := store.Key{KeyID: md.KeyID, Tenant: t.Name, Owner: md.Owner, Type: string(md.Type), CurrentVersion: 1, Retained: retain, CreatedAt: md.CreatedAt,
		RotationPeriod: time.Duration(md.RotationPeriodSeconds) * time.Second}
	// The KMS keeps every version's EKB (retained or not: retain decides
	// who may name the key by id), so it can rotate the key by period or
	// usage and deliver new versions to the sidecars that hold it.
	v := store.KeyVersion{KeyID: md.KeyID, Version: 1, CreatedAt: md.CreatedAt, EKB: ekb, KCV: kcv}
	return &api.DataKey{KeyID: md.KeyID, Version: 1, EKB: ekb, Metadata: *md, PublicKeyPEM: md.PublicKeyPEM, KCV: kcv}, key, v, nil
}

// createKey registers a new key (newKey's entries) through tx.
func createKey(ctx context.Context, tx store.Keys, key store.Key, v store.KeyVersion) error {
	if err := tx.CreateKey(ctx, key, v); err != nil {
		return storeErr(err, "key")
	}
	return nil
}

// newMetadata validates a data-key request and builds version 1's metadata.
func (k *KMS) newMetadata(who *caller, req api.CreateDataKeyRequest, now time.Time) (*api.KeyMetadata, error) {
	switch {
	case req.Type == "":
		return nil, api.Errorf(api.CodeInvalidArgument, "The key type is required: one of aes-256-gcm, hmac-sha256, ed25519, ecdsa-p256, ml-dsa-65.")
	case req.Type == api.KeyMLDSA65 && kcrypto.FIPS():
		return nil, api.Errorf(api.CodeInvalidArgument, "Key type ml-dsa-65 is not offered in FIPS 140-3 mode: its implementation (cloudflare/circl) is not a validated module.")
	case !req.Type.Valid():
		return nil, api.Errorf(api.CodeInvalidArgument, "Unknown key type %q: use aes-256-gcm, hmac-sha256, ed25519, ecdsa-p256 or ml-dsa-65.", req.Type)
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(now) {
		return nil, api.Errorf(api.CodeInvalidArgument, "expires_at must be in the future.")
	}
	if p, lo := req.RotationPeriodSeconds, int64(k.cfg.MinRotationPeriod/time.Second); p != 0 && (p < lo || p > int64(maxRotationPeriod/time.Second)) {
		return nil, api.Errorf(api.CodeInvalidArgument, "rotation_period_seconds must be 0 (no automatic rotation) or between %d and %d (a hundred years).",
			lo, int64(maxRotationPeriod/time.Second))
	}
	if len(req.Purpose) > maxPurposeLen || !utf8.ValidString(req.Purpose) {
		return nil, api.Errorf(api.CodeInvalidArgument, "purpose must be valid UTF-8 of at most %d bytes.", maxPurposeLen)
	}
	if len(req.Labels) > maxLabels {
		return nil, api.Errorf(api.CodeInvalidArgument, "A key may carry at most %d labels.", maxLabels)
	}
	for name, v := range req.Labels {
		if name == "" || len(name) > maxLabelLen || len(v) > maxLabelLen || !utf8.ValidString(name) || !utf8.ValidString(v) {
			return nil, api.Errorf(api.CodeInvalidArgument, "Label names must be non-empty and names and values valid UTF-8 of at most %d bytes.", maxLabelLen)
		}
	}
	var pol *api.Policy
	if req.Policy != nil {
		var err error
		if pol, err = policy.Normalize(req.Policy); err != nil {
			return nil, api.Errorf(api.CodeInvalidArgument, "%v", err)
		}
	}
	md := &api.KeyMetadata{
		KeyID:      kcrypto.RandomID(keyIDPrefix),
		Version:    1,
		Tenant:     who.Tenant,
		Type:       req.Type,
		Owner:      who.DN,
		Purpose:    req.Purpose,
		Labels:     req.Labels,
		CreatedAt:  now,
		Policy:     pol,
		Retained:   req.Retain,
		Exportable: req.Exportable,

		RotationPeriodSeconds: req.RotationPeriodSeconds,
	}
	if req.ExpiresAt != nil {
		exp := req.ExpiresAt.UTC()
		md.ExpiresAt = &exp
	}
	return md, nil
}

// sealEKB encrypts material under the tenant's master key version and
// binds md into the EKB.
func (k *KMS) sealEKB(ctx context.Context, tenant string, tmkVersion int, md *api.KeyMetadata, material *secret.Bytes) ([]byte, error) {
	mdJSON, err := json.Marshal(md)
	if err != nil {
		return nil, err
	}
	tmk, err := k.masterKey(ctx, tenant, tmkVersion)
	if err != nil {
		return nil, err
	}
	defer tmk.Wipe()
	e := &format.EKB{Tenant: tenant, TMKVersion: uint32(tmkVersion), KeyID: md.KeyID, KeyVersion: uint32(md.Version), Metadata: mdJSON}
	if err := kcrypto.SealEKB(tmk, e, material); err != nil {
		return nil, err
	}
	return e.Marshal(), nil
}

// openedKey is an EKB that opened: its metadata and material (owned by the
// caller of openEKB, who wipes it).
type openedKey struct {
	ekb      *format.EKB
	md       api.KeyMetadata
	material *secret.Bytes

	encryptions int64  // the version's registry count (release only)
	warning     string // rotation warning for the custodian (release only)
	// feedSeq is where the revocation feed stood before the key's registry
	// entry was read for a release (0: unknown); see stillReleasable.
	feedSeq int64
}

// metadataBytes is the key's metadata as the KMS wrote it: the EKB's exact
// bytes, or for a key that has no EKB (seed-derived) its encoding now.
func (o *openedKey) metadataBytes() ([]byte, error) {
	if o.ekb != nil {
		return o.ekb.Metadata, nil
	}
	return json.Marshal(&o.md)
}

// openEKB parses and opens an EKB presented by a caller of tenant. Any EKB
// that is malformed, tampered or not openable is one invalid_ekb error; an
// EKB of another tenant is wrong_tenant.
func (k *KMS) openEKB(ctx context.Context, tenant string, raw []byte) (*openedKey, error) {
	e, err := format.ParseEKB(raw)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidEKB, "The EKB is malformed.")
	}
	if e.Tenant != tenant {
		return nil, api.Errorf(api.CodeWrongTenant, "The EKB belongs to another tenant.")
	}
	tmk, err := k.masterKey(ctx, tenant, int(e.TMKVersion))
	if errors.Is(err, errNoMasterKey) {
		return nil, api.Errorf(api.CodeInvalidEKB, "The EKB names a master key version that does not exist.")
	}
	if err != nil {
		return nil, err
	}
	material, err := kcrypto.OpenEKB(tmk, e)
	tmk.Wipe()
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidEKB, "The EKB does not open: it was modified or is not from this KMS.")
	}
	var md api.KeyMetadata
	if !decodeMetadata(e.Metadata, &md) || md.KeyID != e.KeyID || md.Version != int(e.KeyVersion) || md.Tenant != e.Tenant {
		material.Wipe()
		return nil, api.Errorf(api.CodeInvalidEKB, "The EKB's metadata is inconsistent.")
	}
	return &openedKey{ekb: e, md: md, material: material}, nil
}

// decodeMetadata reads the metadata an EKB authenticates (the fast codec,
// or encoding/json for what it leaves) and reports whether it is JSON.
func decodeMetadata(raw []byte, md *api.KeyMetadata) bool {
	return wire.Decode(raw, md) || json.Unmarshal(raw, md) == nil
}

// checkUsable checks the key registry for a key about to be used or
// released: it must exist, not be disabled, and not be expired.
func (k *KMS) checkUsable(ctx context.Context, md *api.KeyMetadata) (store.Key, error) {
	key, err := k.st.GetKey(ctx, md.KeyID)
	return key, k.usable(md, key, err)
}

// openOwnEKB opens the EKB of key keyID that the caller presents to change
// the key: it must be the key's EKB, the caller its owner (what names the
// change, for the refusal of anyone else), and the key usable
// (checkUsable). The caller wipes the returned material; on an error
// openOwnEKB has wiped it.
func (k *KMS) openOwnEKB(ctx context.Context, c *call, keyID string, raw []byte, what string) (*openedKey, store.Key, error) {
	o, err := k.openEKB(ctx, c.caller.Tenant, raw)
	if err != nil {
		return nil, store.Key{}, err
	}
	var key store.Key
	switch {
	case o.md.KeyID != keyID:
		err = api.Errorf(api.CodeInvalidArgument, "The EKB is for key %s, not %s.", o.md.KeyID, keyID)
	case o.md.Owner != c.caller.DN:
		err = api.Errorf(api.CodeForbidden, "Only the key's owner may %s.", what)
	default:
		key, err = k.checkUsable(ctx, &o.md)
	}
	if err != nil {
		o.material.Wipe()
		return nil, store.Key{}, err
	}
	return o, key, nil
}

// usable is checkUsable's verdict on the registry's answer for md's key:
// key and err as GetKey returned them.
func (k *KMS) usable(md *api.KeyMetadata, key store.Key, err error) error {
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return api.Errorf(api.CodeInvalidEKB, "Key %s is not registered at this KMS.", md.KeyID)
		}
		return storeErr(err, "key")
	}
	if key.DisabledAt != nil {
		return api.Errorf(api.CodeRevoked, "Key %s has been disabled.", md.KeyID)
	}
	if md.ExpiresAt != nil && !k.now().Before(*md.ExpiresAt) {
		return api.Errorf(api.CodeExpired, "Key %s expired at %s.", md.KeyID, md.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

func (k *KMS) newKeyVersion(ctx context.Context, c *call) (any, error) {
	keyID := c.r.PathValue("key_id")
	c.keyID = keyID
	var req api.NewVersionRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if len(req.EKB) == 0 {
		return nil, api.Errorf(api.CodeInvalidArgument, "ekb is required: the EKB of the key's current version.")
	}
	old, key, err := k.openOwnEKB(ctx, c, keyID, req.EKB, "create new versions")
	if err != nil {
		return nil, err
	}
	old.material.Wipe()
	if key.CurrentVersion != old.md.Version {
		return nil, api.Errorf(api.CodeConflict, "The EKB is version %d but the current version is %d.", old.md.Version, key.CurrentVersion)
	}
	dk, v, err := k.nextVersion(ctx, key, &old.md)
	if err != nil {
		return nil, err
	}
	if err := c.commit(ctx, func(tx store.Tx) error { return addVersion(ctx, tx, v) }); err != nil {
		return nil, err
	}
	return dk, nil
}

// nextVersion generates the version after cur (the current version's
// metadata) of key and seals it under the tenant's current master key; it
// returns the key and the version to register with addVersion.
func (k *KMS) nextVersion(ctx context.Context, key store.Key, cur *api.KeyMetadata) (*api.DataKey, store.KeyVersion, error) {
	t, err := k.st.GetTenant(ctx, key.Tenant)
	if err != nil {
		return nil, store.KeyVersion{}, storeErr(err, "tenant")
	}
	material, err := kcrypto.GenerateKey(cur.Type)
	if err != nil {
		return nil, store.KeyVersion{}, err
	}
	defer material.Wipe()
	md := *cur
	md.Version++
	md.CreatedAt = k.now()
	md.PublicKeyPEM = ""
	if md.Type.Signing() {
		if md.PublicKeyPEM, err = kcrypto.PublicKeyPEM(md.Type, material); err != nil {
			return nil, store.KeyVersion{}, err
		}
	}
	kcv, err := kcvOf(md.Type, material)
	if err != nil {
		return nil, store.KeyVersion{}, err
	}
	ekb, err := k.sealEKB(ctx, t.Name, t.MasterKeyVersion, &md, material)
	if err != nil {
		return nil, store.KeyVersion{}, err
	}
	v := store.KeyVersion{KeyID: md.KeyID, Version: md.Version, CreatedAt: md.CreatedAt, EKB: ekb, KCV: kcv}
	return &api.DataKey{KeyID: md.KeyID, Version: md.Version, EKB: ekb, Metadata: md, PublicKeyPEM: md.PublicKeyPEM, KCV: kcv}, v, nil
}

// addVersion registers v through tx. store.ErrConflict (as an API
// conflict) means another request added that version first.
func addVersion(ctx context.Context, tx store.Keys, v store.KeyVersion) error {
	if err := tx.AddKeyVersion(ctx, v); err != nil {
		return storeErr(err, "key version")
	}
	return nil
}

// rotateDataKey serves POST /v1/datakeys/{key_id}/rotate: a new version of
// a key the KMS retains, made from the EKB it holds, on demand (what the
// rotation period does on a schedule). The owner or an admin asks (the
// web console's "rotate"); a key the KMS does not retain is rotated by its
// owner with POST /v1/datakeys/{key_id}/versions and its current EKB.
func (k *KMS) rotateDataKey(ctx context.Context, c *call) (any, error) {
	key, err := k.ownedKey(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := c.decodeOptional(); err != nil {
		return nil, err
	}
	id := key.KeyID
	cur, err := k.st.GetKeyVersion(ctx, id, key.CurrentVersion)
	if err != nil {
		return nil, storeErr(err, "key version")
	}
	if !key.Retained || len(cur.EKB) == 0 {
		return nil, api.Errorf(api.CodeInvalidArgument, "Key %s is not retained by the KMS: its owner makes a new version with POST /v1/datakeys/%s/versions and the current EKB.", id, id)
	}
	o, err := k.openEKB(ctx, key.Tenant, cur.EKB)
	if err != nil {
		return nil, err
	}
	o.material.Wipe()
	if _, err := k.checkUsable(ctx, &o.md); err != nil {
		return nil, err
	}
	dk, v, err := k.nextVersion(ctx, key, &o.md)
	if err != nil {
		return nil, err
	}
	if err := c.commit(ctx, func(tx store.Tx) error { return addVersion(ctx, tx, v) }); err != nil {
		return nil, err
	}
	k.log.Info("key rotated", "key", id, "version", dk.Version, "by", c.caller.DN)
	k.mx.rotations.Inc()
	return dk, nil
}
