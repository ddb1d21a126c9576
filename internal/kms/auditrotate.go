package kms

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/store"
)

// Rotating the audit key (internal/audit/keys.go has the rules verifiers
// apply). POST /v1/audit/key/rotate makes a new key, stores it sealed in
// place of the current one, and appends the rotation record (carrying the
// new public key, signed by the current key as it is written) in one
// transaction; from then on this KMS signs with the new key, and every
// other replica once it re-reads the key (every Config.CertCheckInterval),
// so verifiers accept both. POST /v1/audit/key/retire, once every replica
// has had the time to switch (two intervals), appends a retirement record
// for each earlier key still trusted: a key suspected of a leak then signs
// nothing that verifies. The log's first key is kept (sealed, setting
// audit-key-anchor) for DIR/audit-key.pem: verifiers pin it, and the log
// itself brings in the keys it was rotated to.

// auditAnchorSetting holds the log's first key (an auditKeyRecord), from
// its first rotation on.
const auditAnchorSetting = "audit-key-anchor"

// auditKeys is the KMS's view of its audit keys.
type auditKeys struct {
	anchor kcrypto.LogVerifyKey // the log's first key, set by New and never changed

	mu    sync.Mutex        // serializes rotations, retirements and reloads; guards raw and owned
	raw   []byte            // the stored record of the key the Log signs with (nil: not opened from a store)
	owned []*kcrypto.LogKey // keys unsealed or made after start, wiped at Close
}

func (a *auditKeys) anchorKey() kcrypto.LogVerifyKey { return a.anchor }

// loaded records raw, the stored record of the key l signs with, and has
// l accept the earlier keys it names.
func (a *auditKeys) loaded(l *audit.Log, raw []byte) error {
	_, prev, err := parseAuditKeyRecord(raw)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.raw = raw
	l.AcceptOnly(prev...)
	return nil
}

func (a *auditKeys) wipe() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range a.owned {
		k.Wipe()
	}
	a.owned = nil
}

// parseAuditKeyRecord decodes a stored audit key record and its earlier
// keys still trusted.
func parseAuditKeyRecord(raw []byte) (auditKeyRecord, []kcrypto.LogVerifyKey, error) {
	var rec auditKeyRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return rec, nil, fmt.Errorf("kms: stored audit key: %w", err)
	}
	prev := make([]kcrypto.LogVerifyKey, 0, len(rec.Previous))
	for _, h := range rec.Previous {
		b, err := hex.DecodeString(h)
		if err != nil {
			return rec, nil, fmt.Errorf("kms: stored audit key: an earlier key %q: %w", h, err)
		}
		k, err := kcrypto.LogVerifyKeyFromBytes(b)
		if err != nil {
			return rec, nil, fmt.Errorf("kms: stored audit key: an earlier key %q: %w", h, err)
		}
		prev = append(prev, k)
	}
	return rec, prev, nil
}

// loadAuditAnchor returns the log's first key: the one stored apart at its
// first rotation (unsealed here, so that DIR/audit-key.pem never comes
// from the database unopened), or current's when it was never rotated.
func loadAuditAnchor(ctx context.Context, st store.Settings, sealer seal.Sealer, current *kcrypto.LogKey) (kcrypto.LogVerifyKey, error) {
	raw, err := st.GetSetting(ctx, auditAnchorSetting)
	if errors.Is(err, store.ErrNotFound) {
		return current.Public(), nil
	}
	if err != nil {
		return kcrypto.LogVerifyKey{}, err
	}
	key, err := openAuditKey(ctx, sealer, raw)
	if err != nil {
		return kcrypto.LogVerifyKey{}, fmt.Errorf("kms: the audit log's first key: %w", err)
	}
	defer key.Wipe()
	return key.Public(), nil
}

// auditKeyView is GET /v1/audit/key's answer.
func (k *KMS) auditKeyView() api.AuditKey {
	pub := k.AuditKey()
	return api.AuditKey{KeyID: pub.ID(), PublicKeyPEM: string(pub.PEM()), CurrentKeyID: k.AuditSigningKey().ID()}
}

// currentAuditKey reads the stored audit key record, which must be the one
// this KMS signs with (a replica that has not re-read a rotation yet must
// not rotate or retire on top of it). It returns the stored bytes, the
// record and its earlier keys still trusted. k.akeys.mu is held.
func (k *KMS) currentAuditKey(ctx context.Context) ([]byte, auditKeyRecord, []kcrypto.LogVerifyKey, error) {
	if k.akeys.raw == nil {
		return nil, auditKeyRecord{}, nil, api.Errorf(api.CodeUnavailable, "This KMS was not opened from a data dir, so it cannot change its audit key.")
	}
	raw, err := k.st.GetSetting(ctx, auditKeySetting)
	if err != nil {
		return nil, auditKeyRecord{}, nil, storeErr(err, "audit key")
	}
	if !bytes.Equal(raw, k.akeys.raw) {
		return nil, auditKeyRecord{}, nil, api.Errorf(api.CodeConflict, "The audit key changed in the database since this KMS read it (another replica rotated or retired keys): retry in a moment, once it has read it again.")
	}
	rec, prev, err := parseAuditKeyRecord(raw)
	return raw, rec, prev, err
}

// swapAuditKey replaces the stored audit key record raw by next in tx.
func swapAuditKey(ctx context.Context, tx store.Tx, raw, next []byte) error {
	if err := tx.SwapSetting(ctx, auditKeySetting, raw, next); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return api.Errorf(api.CodeConflict, "Another replica changed the audit key meanwhile: retry in a moment.")
		}
		return storeErr(err, "audit key")
	}
	return nil
}

// rotateAuditKey is POST /v1/audit/key/rotate.
func (k *KMS) rotateAuditKey(ctx context.Context, c *call) (any, error) {
	if err := c.decodeOptional(); err != nil {
		return nil, err
	}
	k.akeys.mu.Lock()
	defer k.akeys.mu.Unlock()
	raw, rec, _, err := k.currentAuditKey(ctx)
	if err != nil {
		return nil, err
	}
	key, err := kcrypto.GenerateLogKey()
	if err != nil {
		return nil, err
	}
	seed := key.Seed()
	sealed, err := k.sealer.Seal(ctx, seed, auditKeyAAD())
	seed.Wipe()
	if err != nil {
		key.Wipe()
		return nil, sealErr(err)
	}
	old := k.audit.Public()
	next := auditKeyRecord{SealedSeed: sealed, CreatedAt: k.now(), Previous: append(slices.Clone(rec.Previous), hex.EncodeToString(old.Bytes()))}
	nextRaw, err := json.Marshal(next)
	if err != nil {
		key.Wipe()
		return nil, err
	}
	c.keyID = key.Public().ID()
	err = c.commit(ctx, func(tx store.Tx) error {
		// The first key, kept for DIR/audit-key.pem at its first rotation.
		if _, err := tx.PutSettingIfAbsent(ctx, auditAnchorSetting, raw); err != nil {
			return storeErr(err, "audit key")
		}
		if err := swapAuditKey(ctx, tx, raw, nextRaw); err != nil {
			return err
		}
		_, err := k.audit.Append(context.WithoutCancel(ctx), tx, audit.Event{
			Caller: c.caller.DN, Role: string(api.RoleAdmin), Action: audit.ActionKeyRotated, KeyID: audit.RotatedKeyID(key.Public()), Outcome: "ok",
		})
		return err
	})
	if err != nil {
		key.Wipe()
		return nil, err
	}
	k.audit.SetKey(key)
	k.akeys.raw, k.akeys.owned = nextRaw, append(k.akeys.owned, key)
	k.log.Info("audit key rotated", "from", old.ID(), "to", key.Public().ID(), "caller", c.caller.DN,
		"retire_after", next.CreatedAt.Add(k.retireWait()))
	return k.auditKeyView(), nil
}

// retireWait is how long after a rotation the earlier keys may be
// retired: two of the intervals at which replicas re-read the key.
func (k *KMS) retireWait() time.Duration { return 2 * k.cfg.CertCheckInterval }

// retireAuditKeys is POST /v1/audit/key/retire.
func (k *KMS) retireAuditKeys(ctx context.Context, c *call) (any, error) {
	if err := c.decodeOptional(); err != nil {
		return nil, err
	}
	k.akeys.mu.Lock()
	defer k.akeys.mu.Unlock()
	raw, rec, prev, err := k.currentAuditKey(ctx)
	if err != nil {
		return nil, err
	}
	if len(prev) == 0 {
		return nil, api.Errorf(api.CodeConflict, "No earlier audit key is still trusted: there is nothing to retire.")
	}
	if from := rec.CreatedAt.Add(k.retireWait()); k.now().Before(from) {
		return nil, api.Errorf(api.CodeConflict, "The audit key was rotated at %s and replicas re-read it every %s: retire the earlier keys from %s on, when none still signs with them.",
			rec.CreatedAt.Format(time.RFC3339), k.cfg.CertCheckInterval, from.Format(time.RFC3339))
	}
	next := rec
	next.Previous = nil
	nextRaw, err := json.Marshal(next)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(prev))
	for i, p := range prev {
		ids[i] = p.ID()
	}
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := swapAuditKey(ctx, tx, raw, nextRaw); err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := k.audit.Append(context.WithoutCancel(ctx), tx, audit.Event{
				Caller: c.caller.DN, Role: string(api.RoleAdmin), Action: audit.ActionKeyRetired, KeyID: id, Outcome: "ok",
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	k.audit.Retire(ids...)
	k.akeys.raw = nextRaw
	k.log.Info("audit keys retired", "keys", ids, "caller", c.caller.DN)
	return k.auditKeyView(), nil
}

// reloadAuditKey re-reads the stored audit key (every CertCheckInterval,
// with the CA state): after another replica rotated it this KMS signs
// with the new key, after a retirement it no longer accepts the retired
// ones at the log's head.
func (k *KMS) reloadAuditKey(ctx context.Context) error {
	k.akeys.mu.Lock()
	defer k.akeys.mu.Unlock()
	if k.akeys.raw == nil {
		return nil
	}
	raw, err := k.st.GetSetting(ctx, auditKeySetting)
	if err != nil || bytes.Equal(raw, k.akeys.raw) {
		return err
	}
	_, prev, err := parseAuditKeyRecord(raw)
	if err != nil {
		return err
	}
	key, err := openAuditKey(ctx, k.sealer, raw)
	if err != nil {
		return err
	}
	old := k.audit.Public()
	if key.Public().Equal(old) {
		key.Wipe()
	} else {
		k.audit.SetKey(key)
		k.akeys.owned = append(k.akeys.owned, key)
		k.log.Info("audit key rotated by another replica: signing with the new key", "from", old.ID(), "to", key.Public().ID())
	}
	// The earlier keys still trusted, and no retired one.
	k.audit.AcceptOnly(prev...)
	k.akeys.raw = raw
	return nil
}
