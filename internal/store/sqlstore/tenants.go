package sqlstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/dcaas/dcaas/internal/store"
)

// CreateTenant implements store.Tenants. t.MasterKeyVersion and
// first.Version must be 1 (store.ErrConflict otherwise) and first.Tenant
// must be t.Name.
func (q *queries) CreateTenant(ctx context.Context, t store.Tenant, first store.MasterKey) error {
	const op = "CreateTenant"
	if t.MasterKeyVersion != 1 || first.Version != 1 {
		return q.mapErr(op, fmt.Errorf("master key version %d/%d, want 1: %w",
			t.MasterKeyVersion, first.Version, store.ErrConflict))
	}
	if first.Tenant != t.Name {
		return q.mapErr(op, fmt.Errorf("master key is for tenant %q, want %q", first.Tenant, t.Name))
	}
	var ts times
	created := ts.at("CreatedAt", t.CreatedAt)
	mkCreated := ts.at("MasterKey.CreatedAt", first.CreatedAt)
	if ts.err != nil {
		return q.mapErr(op, ts.err)
	}
	return q.write(ctx, op, func(c conn) error {
		if _, err := c.exec(ctx,
			`INSERT INTO tenants (name, master_key_version, sealed_hmac_key, created_at) VALUES (?, ?, ?, ?)`,
			t.Name, t.MasterKeyVersion, notNull(t.SealedHMACKey), created); err != nil {
			return err
		}
		_, err := c.exec(ctx,
			`INSERT INTO master_keys (tenant, version, sealed, created_at) VALUES (?, ?, ?, ?)`,
			first.Tenant, first.Version, notNull(first.Sealed), mkCreated)
		return err
	})
}

// GetTenant implements store.Tenants.
func (q *queries) GetTenant(ctx context.Context, name string) (store.Tenant, error) {
	t := store.Tenant{Name: name}
	var created int64
	err := q.read().queryRow(ctx,
		`SELECT master_key_version, sealed_hmac_key, created_at FROM tenants WHERE name = ?`, name).
		Scan(&t.MasterKeyVersion, &t.SealedHMACKey, &created)
	if err != nil {
		return store.Tenant{}, q.mapErr("GetTenant", err)
	}
	t.SealedHMACKey = nilIfEmpty(t.SealedHMACKey)
	t.CreatedAt = fromNanos(created)
	return t, nil
}

// AddMasterKey implements store.Tenants. It returns store.ErrNotFound for an
// unknown tenant. The tenant row stays locked from the version check to the
// commit (FOR UPDATE on PostgreSQL), so replicas rotating at once get one
// new version and store.ErrConflict.
func (q *queries) AddMasterKey(ctx context.Context, mk store.MasterKey) error {
	const op = "AddMasterKey"
	created, err := nanos("CreatedAt", mk.CreatedAt)
	if err != nil {
		return q.mapErr(op, err)
	}
	return q.write(ctx, op, func(c conn) error {
		var cur int
		if err := c.queryRow(ctx,
			`SELECT master_key_version FROM tenants WHERE name = ?`+c.d.forUpdate(), mk.Tenant).Scan(&cur); err != nil {
			return err
		}
		if mk.Version != cur+1 {
			return fmt.Errorf("master key version %d, want %d: %w", mk.Version, cur+1, store.ErrConflict)
		}
		if _, err := c.exec(ctx,
			`INSERT INTO master_keys (tenant, version, sealed, created_at) VALUES (?, ?, ?, ?)`,
			mk.Tenant, mk.Version, notNull(mk.Sealed), created); err != nil {
			return conflictIfExists(c.d, err)
		}
		return bumpVersion(ctx, c,
			`UPDATE tenants SET master_key_version = ? WHERE name = ? AND master_key_version = ?`,
			mk.Version, mk.Tenant, cur)
	})
}

// GetMasterKey implements store.Tenants.
func (q *queries) GetMasterKey(ctx context.Context, tenant string, version int) (store.MasterKey, error) {
	mk := store.MasterKey{Tenant: tenant, Version: version}
	var created int64
	err := q.read().queryRow(ctx,
		`SELECT sealed, created_at FROM master_keys WHERE tenant = ? AND version = ?`, tenant, version).
		Scan(&mk.Sealed, &created)
	if err != nil {
		return store.MasterKey{}, q.mapErr("GetMasterKey", err)
	}
	mk.Sealed = nilIfEmpty(mk.Sealed)
	mk.CreatedAt = fromNanos(created)
	return mk, nil
}

// bumpVersion runs update, an UPDATE that sets a current version only where
// it still has the value read before, and reports store.ErrConflict unless
// it changed exactly one row. The lock taken before the read makes that
// always so; the check keeps the code right if the locking ever changes.
func bumpVersion(ctx context.Context, c conn, update string, args ...any) error {
	n, err := c.changed(ctx, update, args...)
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("current version changed: %w", store.ErrConflict)
	}
	return nil
}

// conflictIfExists turns a duplicate version into store.ErrConflict: it
// means another writer added that version first.
func conflictIfExists(d dialect, err error) error {
	if errors.Is(d.classify(err), store.ErrExists) {
		return fmt.Errorf("version added concurrently: %w: %w", store.ErrConflict, err)
	}
	return err
}
