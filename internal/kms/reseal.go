package kms

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/dcaas/dcaas/internal/store"
)

// Kinds of SealedItem.
const (
	SealedMasterKey = "master-key" // a tenant master key version
	SealedHMACKey   = "hmac-key"   // a tenant's HMAC key
	SealedCAKey     = "ca-key"     // the CA's private key
)

// SealedItem is one piece of material the KMS keeps sealed under its root
// key: the sealed bytes and the associated data they are bound to. It is
// not secret.
type SealedItem struct {
	Kind    string // SealedMasterKey, SealedHMACKey or SealedCAKey
	Tenant  string // SealedMasterKey, SealedHMACKey
	Version int    // SealedMasterKey; for SealedCAKey the CA's number (1 for the first, more after CA rotations)
	Sealed  []byte
	AAD     []byte
}

// String names the item for reports and errors.
func (it SealedItem) String() string {
	switch it.Kind {
	case SealedMasterKey:
		return "master key v" + strconv.Itoa(it.Version) + " of tenant " + strconv.Quote(it.Tenant)
	case SealedHMACKey:
		return "HMAC key of tenant " + strconv.Quote(it.Tenant)
	}
	if it.Version > 1 {
		return "CA key " + strconv.Itoa(it.Version)
	}
	return "CA key"
}

// Reseal replaces every piece of material the KMS keeps sealed in st (each
// tenant's master key versions and HMAC key, and the key of every CA
// record, the current CA's and those of CA rotations) with what
// reseal returns for it, in one store transaction (store.Sealed): if
// reseal fails for any item, nothing changes and its error is returned.
// This is how a data dir moves to another root of trust; no KMS may be
// serving st meanwhile, since a running KMS keeps sealing with its own.
func Reseal(ctx context.Context, st store.Store, reseal func(SealedItem) ([]byte, error)) error {
	names, err := caRecordNames(ctx, st)
	if err != nil {
		return err
	}
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
				n := slices.Index(names, v.Name) + 1 // names[i] is record i+1
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
		return nil
	})
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
