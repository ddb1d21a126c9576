package kms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/dcaas/dcaas/internal/store"
)

// Kinds of SealedItem.
const (
	SealedMasterKey = "master-key" // a tenant master key version
	SealedHMACKey   = "hmac-key"   // a tenant's HMAC key
	SealedCAKey     = "ca-key"     // the CA's private key
	SealedAuditKey  = "audit-key"  // the audit log's signing key (its seed)
	SealedImportKey = "import-key" // a tenant's BYOK import private key (Version 1: RSA, 2: HPKE)
	SealedSeedKey   = "seed-key"   // a custodian's seed key (SeedKDF v2)
)

// SealedItem is one piece of material the KMS keeps sealed under its root
// key: the sealed bytes and the associated data they are bound to. It is
// not secret.
type SealedItem struct {
	Kind    string // SealedMasterKey, SealedHMACKey, SealedCAKey, SealedAuditKey, SealedImportKey or SealedSeedKey
	Tenant  string // SealedMasterKey, SealedHMACKey, SealedImportKey, SealedSeedKey
	Version int    // SealedMasterKey; for SealedCAKey the CA's number (1 for the first, more after CA rotations)
	Sealed  []byte
	AAD     []byte
	// Custodian is the custodian's DN (SealedSeedKey).
	Custodian string
}

// String names the item for reports and errors.
func (it SealedItem) String() string {
	switch it.Kind {
	case SealedMasterKey:
		return "master key v" + strconv.Itoa(it.Version) + " of tenant " + strconv.Quote(it.Tenant)
	case SealedHMACKey:
		return "HMAC key of tenant " + strconv.Quote(it.Tenant)
	case SealedAuditKey:
		return "audit key"
	case SealedSeedKey:
		return seedKeyItemName(it)
	case SealedImportKey:
		which := "RSA"
		if it.Version == 2 {
			which = "HPKE"
		}
		return which + " import key of tenant " + strconv.Quote(it.Tenant)
	}
	if it.Version > 1 {
		return "CA key " + strconv.Itoa(it.Version)
	}
	return "CA key"
}

// Reseal replaces every piece of material the KMS keeps sealed in st (each
// tenant's master key versions, HMAC key and BYOK import keys, the key of
// every CA record, the current CA's and those of CA rotations, the audit
// key and every custodian's seed key) with what
// reseal returns for it, in one store transaction (store.Sealed): if
// reseal fails for any item, nothing changes and its error is returned.
// This is how a data dir moves to another root of trust; no KMS may be
// serving st meanwhile, since a running KMS keeps sealing with its own.
func Reseal(ctx context.Context, st store.Store, reseal func(SealedItem) ([]byte, error)) error {
	return visitSealed(ctx, st, reseal, false)
}

// errListed ends ListSealed's store transaction without writing.
var errListed = errors.New("kms: sealed items listed")

// ListSealed calls fn for every item Reseal would re-seal, in the same
// order, and changes nothing. It stops at fn's first error and returns it.
func ListSealed(ctx context.Context, st store.Store, fn func(SealedItem) error) error {
	err := visitSealed(ctx, st, func(it SealedItem) ([]byte, error) {
		if err := fn(it); err != nil {
			return nil, err
		}
		return it.Sealed, nil
	}, true)
	if errors.Is(err, errListed) {
		return nil
	}
	return err
}

// visitSealed is Reseal; with dryRun it rolls back instead of writing.
func visitSealed(ctx context.Context, st store.Store, reseal func(SealedItem) ([]byte, error), dryRun bool) error {
	names, err := caRecordNames(ctx, st)
	if err != nil {
		return err
	}
	names = append(names, auditKeySetting)
	if _, err := st.GetSetting(ctx, auditAnchorSetting); err == nil {
		names = append(names, auditAnchorSetting) // the log's first key, kept after a rotation
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	imports, err := st.SettingNames(ctx, importSettingPrefix)
	if err != nil {
		return err
	}
	names = append(names, imports...)
	seedKeys, err := st.SettingNames(ctx, seedKeySettingPrefix)
	if err != nil {
		return err
	}
	names = append(names, seedKeys...)
	return st.Reseal(ctx, names, func(values []store.SealedValue) error {
		for i := range values {
			v := &values[i]
			var err error
			switch v.Kind {
			case store.SealedMasterKey:
				v.Value, err = reseal(SealedItem{Kind: SealedMasterKey, Tenant: v.Tenant, Version: v.Version, Sealed: v.Value, AAD: tmkAAD(v.Tenant, v.Version)})
			case store.SealedHMACKey:
				v.Value, err = reseal(SealedItem{Kind: SealedHMACKey, Tenant: v.Tenant, Sealed: v.Value, AAD: hmacKeyAAD(v.Tenant)})
			case store.SealedSetting:
				if v.Name == auditKeySetting || v.Name == auditAnchorSetting {
					v.Value, err = resealAuditKey(v.Value, reseal)
					break
				}
				if tenant, ok := strings.CutPrefix(v.Name, importSettingPrefix); ok {
					v.Value, err = resealImportKeys(v.Value, tenant, reseal)
					break
				}
				if strings.HasPrefix(v.Name, seedKeySettingPrefix) {
					v.Value, err = resealSeedKey(v.Value, v.Name, reseal)
					break
				}
				n := slices.Index(names, v.Name) + 1 // names[i] is record i+1, but the last
				if n == 0 {
					return fmt.Errorf("kms: reseal: the store returned setting %q, which was not asked for", v.Name)
				}
				v.Value, err = resealCA(v.Value, n, reseal)
			default:
				err = fmt.Errorf("kms: reseal: the store returned an unknown kind %q", v.Kind)
			}
			if err != nil {
				return err
			}
		}
		if dryRun {
			return errListed
		}
		return nil
	})
}

// resealImportKeys returns tenant's import key record, raw, with both
// private keys resealed.
func resealImportKeys(raw []byte, tenant string, reseal func(SealedItem) ([]byte, error)) ([]byte, error) {
	var rec importKeys
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("kms: stored import keys of tenant %q: %w", tenant, err)
	}
	var err error
	if rec.RSA, err = reseal(SealedItem{Kind: SealedImportKey, Tenant: tenant, Version: 1, Sealed: rec.RSA, AAD: importAAD(tenant, "rsa")}); err != nil {
		return nil, err
	}
	if rec.HPKE, err = reseal(SealedItem{Kind: SealedImportKey, Tenant: tenant, Version: 2, Sealed: rec.HPKE, AAD: importAAD(tenant, "hpke")}); err != nil {
		return nil, err
	}
	return json.Marshal(rec)
}

// resealCA returns CA record n, raw, with its key resealed.
func resealCA(raw []byte, n int, reseal func(SealedItem) ([]byte, error)) ([]byte, error) {
	var rec caRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("kms: stored CA record %d: %w", n, err)
	}
	sealed, err := reseal(SealedItem{Kind: SealedCAKey, Version: n, Sealed: rec.SealedKey, AAD: caKeyAAD(n)})
	if err != nil {
		return nil, err
	}
	rec.SealedKey = sealed
	return json.Marshal(rec)
}
