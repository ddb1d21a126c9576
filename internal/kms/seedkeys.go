package kms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
)

// A custodian seed key is the 32-byte key SeedKDF v2 derives a custodian's
// seed keys under (docs/formats.md §7, "Custodian seed key"): each
// custodian has its own, so two custodians of one tenant never derive the
// same key from the same seed. It is made at the custodian's registration,
// or on first use for custodians registered before SeedKDF v2, and kept
// sealed in a setting named seedKeySetting(tenant, custodian DN).

// seedKeySettingPrefix prefixes the settings that hold custodian seed keys.
const seedKeySettingPrefix = "custodian-seed-key:"

// seedKeySetting names the setting of a custodian's seed key. Tenant names
// hold no ':' (namePattern), so the name splits back unambiguously.
func seedKeySetting(tenant, custodianDN string) string {
	return seedKeySettingPrefix + tenant + ":" + custodianDN
}

// splitSeedKeySetting is seedKeySetting's inverse.
func splitSeedKeySetting(name string) (tenant, custodianDN string, ok bool) {
	rest, ok := strings.CutPrefix(name, seedKeySettingPrefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ":")
}

func seedKeyAAD(tenant, custodianDN string) []byte {
	return []byte("dcaas/v1 custodian-seed-key\x00" + tenant + "\x00" + custodianDN)
}

// seedKeyRecord is how a custodian seed key is stored. It holds nothing
// secret in clear.
type seedKeyRecord struct {
	SealedKey []byte    `json:"sealed_key"`
	CreatedAt time.Time `json:"created_at"`
}

// newSeedKeyRecord makes and seals a custodian seed key and returns its
// stored form.
func (k *KMS) newSeedKeyRecord(ctx context.Context, tenant, custodianDN string) ([]byte, error) {
	key := secret.New(kcrypto.Random(kcrypto.SeedKeyLen))
	defer key.Wipe()
	sealed, err := k.sealer.Seal(ctx, key, seedKeyAAD(tenant, custodianDN))
	if err != nil {
		return nil, sealErr(err)
	}
	return json.Marshal(seedKeyRecord{SealedKey: sealed, CreatedAt: k.now().UTC()})
}

// storeSeedKey stores a custodian seed key record made by newSeedKeyRecord
// through tx unless the custodian has one, and returns the record stored
// afterwards: of replicas (or requests) making a custodian's first key at
// once, one stores it and all use it.
func storeSeedKey(ctx context.Context, tx store.Settings, tenant, custodianDN string, raw []byte) ([]byte, error) {
	stored, err := tx.PutSettingIfAbsent(ctx, seedKeySetting(tenant, custodianDN), raw)
	if err != nil {
		return nil, storeErr(err, "custodian seed key")
	}
	return stored, nil
}

// seedKeyCreated is the audit action of a custodian seed key made on first
// use; its record's KeyID is "seed-key:" and the custodian's DN.
const seedKeyCreated = "custodian.seed_key_created"

// custodianSeedKey returns the unsealed seed key of a custodian, making it
// first if the custodian has none (registered before SeedKDF v2): in its
// own transaction, with an audit record by the KMS if this call's key is
// the one stored. The caller wipes the key.
func (k *KMS) custodianSeedKey(ctx context.Context, tenant, custodianDN string) (*secret.Bytes, error) {
	raw, err := k.st.GetSetting(ctx, seedKeySetting(tenant, custodianDN))
	if errors.Is(err, store.ErrNotFound) {
		raw, err = k.makeSeedKey(ctx, tenant, custodianDN)
	} else if err != nil {
		err = storeErr(err, "custodian seed key")
	}
	if err != nil {
		return nil, err
	}
	var rec seedKeyRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("kms: stored seed key of custodian %q: %w", custodianDN, err)
	}
	key, err := k.sealer.Open(ctx, rec.SealedKey, seedKeyAAD(tenant, custodianDN))
	if err != nil {
		return nil, sealErr(err)
	}
	if len(key.Expose()) != kcrypto.SeedKeyLen {
		key.Wipe()
		return nil, fmt.Errorf("kms: the stored seed key of custodian %q is not %d bytes", custodianDN, kcrypto.SeedKeyLen)
	}
	return key, nil
}

// makeSeedKey makes, stores and returns the seed key record of a custodian
// that has none, or the record another replica or request stored first.
func (k *KMS) makeSeedKey(ctx context.Context, tenant, custodianDN string) ([]byte, error) {
	made, err := k.newSeedKeyRecord(ctx, tenant, custodianDN)
	if err != nil {
		return nil, err
	}
	var stored []byte
	var rec store.AuditRecord
	err = k.db.InTx(ctx, func(tx store.Tx) error {
		var err error
		if stored, err = storeSeedKey(ctx, tx, tenant, custodianDN, made); err != nil || !bytes.Equal(stored, made) {
			return err // or another made it, and recorded it
		}
		rec, err = k.audit.Append(context.WithoutCancel(ctx), tx, audit.Event{
			Caller: kmsCaller, Action: seedKeyCreated, Tenant: tenant, KeyID: "seed-key:" + custodianDN, Outcome: "ok",
		})
		return err
	})
	if err == nil && rec.Seq != 0 {
		k.audit.Stored(rec.Seq)
	}
	var apiErr *api.Error
	if err != nil && !errors.As(err, &apiErr) {
		return nil, storeErr(err, "custodian seed key")
	} else if err != nil {
		return nil, err
	}
	if bytes.Equal(stored, made) {
		k.log.Info("made the seed key of a custodian registered before SeedKDF v2", "tenant", tenant, "custodian", custodianDN)
	}
	return stored, nil
}

// resealSeedKey returns the stored custodian seed key record raw, of the
// setting name, with its key resealed.
func resealSeedKey(raw []byte, name string, reseal func(SealedItem) ([]byte, error)) ([]byte, error) {
	tenant, dn, ok := splitSeedKeySetting(name)
	if !ok {
		return nil, fmt.Errorf("kms: reseal: %q does not name a custodian seed key", name)
	}
	var rec seedKeyRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("kms: stored seed key of custodian %q: %w", dn, err)
	}
	sealed, err := reseal(SealedItem{Kind: SealedSeedKey, Tenant: tenant, Custodian: dn, Sealed: rec.SealedKey, AAD: seedKeyAAD(tenant, dn)})
	if err != nil {
		return nil, err
	}
	rec.SealedKey = sealed
	return json.Marshal(rec)
}

// seedKeyItemName names a custodian seed key in reports and errors.
func seedKeyItemName(it SealedItem) string {
	return "seed key of custodian " + strconv.Quote(it.Custodian) + " of tenant " + strconv.Quote(it.Tenant)
}
