package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/dcaas/dcaas/internal/store"
)

// CreateTenant implements store.Tenants. t.MasterKeyVersion and
// first.Version must be 1 (store.ErrConflict otherwise) and first.Tenant
// must be t.Name.
func (db *DB) CreateTenant(ctx context.Context, t store.Tenant, first store.MasterKey) error {
	const op = "CreateTenant"
	if t.MasterKeyVersion != 1 || first.Version != 1 {
		return fmt.Errorf("postgres: %s: master key version %d/%d, want 1: %w",
			op, t.MasterKeyVersion, first.Version, store.ErrConflict)
	}
	if first.Tenant != t.Name {
		return fmt.Errorf("postgres: %s: master key is for tenant %q, want %q", op, first.Tenant, t.Name)
	}
	created, err := nanos("CreatedAt", t.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	mkCreated, err := nanos("MasterKey.CreatedAt", first.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return db.tx(ctx, op, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx,
			`INSERT INTO tenants (name, master_key_version, sealed_hmac_key, created_at) VALUES ($1, $2, $3, $4)`,
			t.Name, t.MasterKeyVersion, notNull(t.SealedHMACKey), created); err != nil {
			return err
		}
		_, err := tx.Exec(ctx,
			`INSERT INTO master_keys (tenant, version, sealed, created_at) VALUES ($1, $2, $3, $4)`,
			first.Tenant, first.Version, notNull(first.Sealed), mkCreated)
		return err
	})
}

// GetTenant implements store.Tenants.
func (db *DB) GetTenant(ctx context.Context, name string) (store.Tenant, error) {
	t := store.Tenant{Name: name}
	var created int64
	err := db.pool.QueryRow(ctx,
		`SELECT master_key_version, sealed_hmac_key, created_at FROM tenants WHERE name = $1`, name).
		Scan(&t.MasterKeyVersion, &t.SealedHMACKey, &created)
	if err != nil {
		return store.Tenant{}, mapErr("GetTenant", err)
	}
	t.SealedHMACKey = nilIfEmpty(t.SealedHMACKey)
	t.CreatedAt = fromNanos(created)
	return t, nil
}

// AddMasterKey implements store.Tenants. It returns store.ErrNotFound for an
// unknown tenant. The tenant row stays locked (FOR UPDATE) from the version
// check to the commit, so replicas rotating at once get one new version and
// store.ErrConflict.
func (db *DB) AddMasterKey(ctx context.Context, mk store.MasterKey) error {
	const op = "AddMasterKey"
	created, err := nanos("CreatedAt", mk.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return db.tx(ctx, op, func(tx pgx.Tx) error {
		var cur int
		if err := tx.QueryRow(ctx,
			`SELECT master_key_version FROM tenants WHERE name = $1 FOR UPDATE`, mk.Tenant).Scan(&cur); err != nil {
			return err
		}
		if mk.Version != cur+1 {
			return fmt.Errorf("master key version %d, want %d: %w", mk.Version, cur+1, store.ErrConflict)
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO master_keys (tenant, version, sealed, created_at) VALUES ($1, $2, $3, $4)`,
			mk.Tenant, mk.Version, notNull(mk.Sealed), created); err != nil {
			return conflictIfExists(err)
		}
		return bumpVersion(ctx, tx,
			`UPDATE tenants SET master_key_version = $1 WHERE name = $2 AND master_key_version = $3`,
			mk.Version, mk.Tenant, cur)
	})
}

// GetMasterKey implements store.Tenants.
func (db *DB) GetMasterKey(ctx context.Context, tenant string, version int) (store.MasterKey, error) {
	mk := store.MasterKey{Tenant: tenant, Version: version}
	var created int64
	err := db.pool.QueryRow(ctx,
		`SELECT sealed, created_at FROM master_keys WHERE tenant = $1 AND version = $2`, tenant, version).
		Scan(&mk.Sealed, &created)
	if err != nil {
		return store.MasterKey{}, mapErr("GetMasterKey", err)
	}
	mk.Sealed = nilIfEmpty(mk.Sealed)
	mk.CreatedAt = fromNanos(created)
	return mk, nil
}

// bumpVersion runs update, an UPDATE that sets a current version only where
// it still has the value read before, and reports store.ErrConflict unless
// it changed exactly one row. The row lock taken before makes that always
// so; the check keeps the code right if the locking ever changes.
func bumpVersion(ctx context.Context, tx pgx.Tx, update string, args ...any) error {
	tag, err := tx.Exec(ctx, update, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("current version changed: %w", store.ErrConflict)
	}
	return nil
}

// conflictIfExists turns a duplicate version into store.ErrConflict: it
// means another writer added that version first.
func conflictIfExists(err error) error {
	if errors.Is(mapErr("", err), store.ErrExists) {
		return fmt.Errorf("version added concurrently: %w: %w", store.ErrConflict, err)
	}
	return err
}
