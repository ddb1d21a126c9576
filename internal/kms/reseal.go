package kms

import (
	"context"
	"encoding/json"
	"fmt"
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
	Version int    // SealedMasterKey
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
	return "CA key"
}

// Reseal replaces every piece of material the KMS keeps sealed in st (each
// tenant's master key versions and HMAC key, and the CA key) with what
// reseal returns for it, in one store transaction (store.Sealed): if
// reseal fails for any item, nothing changes and its error is returned.
// This is how a data dir moves to another root of trust; no KMS may be
// serving st meanwhile, since a running KMS keeps sealing with its own.
func Reseal(ctx context.Context, st store.Store, reseal func(SealedItem) ([]byte, error)) error {
	return st.Reseal(ctx, []string{caSetting}, func(values []store.SealedValue) error {
		for i := range values {
			v := &values[i]
			var err error
			switch v.Kind {
			case store.SealedMasterKey:
				v.Value, err = reseal(SealedItem{Kind: SealedMasterKey, Tenant: v.Tenant, Version: v.Version, Sealed: v.Value, AAD: tmkAAD(v.Tenant, v.Version)})
			case store.SealedHMACKey:
				v.Value, err = reseal(SealedItem{Kind: SealedHMACKey, Tenant: v.Tenant, Sealed: v.Value, AAD: hmacKeyAAD(v.Tenant)})
			case store.SealedSetting:
				v.Value, err = resealCA(v.Value, reseal)
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

// resealCA returns the CA record raw with its key resealed.
func resealCA(raw []byte, reseal func(SealedItem) ([]byte, error)) ([]byte, error) {
	var rec caRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("kms: stored CA record: %w", err)
	}
	sealed, err := reseal(SealedItem{Kind: SealedCAKey, Sealed: rec.SealedKey, AAD: []byte(caKeyAADText)})
	if err != nil {
		return nil, err
	}
	rec.SealedKey = sealed
	return json.Marshal(rec)
}
