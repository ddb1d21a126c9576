package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dcaas/dcaas/internal/store"
)

// CreateTenant implements store.Tenants. t.MasterKeyVersion and
// first.Version must be 1 (store.ErrConflict otherwise) and first.Tenant
// must be t.Name.
func (db *DB) CreateTenant(ctx context.Context, t store.Tenant, first store.MasterKey) error {
	const op = "CreateTenant"
	if t.MasterKeyVersion != 1 || first.Version != 1 {
		return fmt.Errorf("sqlite: %s: master key version %d/%d, want 1: %w",
			op, t.MasterKeyVersion, first.Version, store.ErrConflict)
	}
	if first.Tenant != t.Name {
		return fmt.Errorf("sqlite: %s: master key is for tenant %q, want %q", op, first.Tenant, t.Name)
	}
	created, err := nanos("CreatedAt", t.CreatedAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	mkCreated, err := nanos("MasterKey.CreatedAt", first.CreatedAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return db.write(ctx, op, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO tenants (name, master_key_version, sealed_hmac_key, created_at) VALUES (?, ?, ?, ?)`,
			t.Name, t.MasterKeyVersion, notNull(t.SealedHMACKey), created); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO master_keys (tenant, version, sealed, created_at) VALUES (?, ?, ?, ?)`,
			first.Tenant, first.Version, notNull(first.Sealed), mkCreated)
		return err
	})
}

// GetTenant implements store.Tenants.
func (db *DB) GetTenant(ctx context.Context, name string) (store.Tenant, error) {
	t := store.Tenant{Name: name}
	var created int64
	err := db.r.QueryRowContext(ctx,
		`SELECT master_key_version, sealed_hmac_key, created_at FROM tenants WHERE name = ?`, name).
		Scan(&t.MasterKeyVersion, &t.SealedHMACKey, &created)
	if err != nil {
		return store.Tenant{}, mapErr("GetTenant", err)
	}
	t.CreatedAt = fromNanos(created)
	return t, nil
}

// AddMasterKey implements store.Tenants. It returns store.ErrNotFound for an
// unknown tenant.
func (db *DB) AddMasterKey(ctx context.Context, mk store.MasterKey) error {
	const op = "AddMasterKey"
	created, err := nanos("CreatedAt", mk.CreatedAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return db.write(ctx, op, func(tx *sql.Tx) error {
		var cur int
		if err := tx.QueryRowContext(ctx,
			`SELECT master_key_version FROM tenants WHERE name = ?`, mk.Tenant).Scan(&cur); err != nil {
			return err
		}
		if mk.Version != cur+1 {
			return fmt.Errorf("master key version %d, want %d: %w", mk.Version, cur+1, store.ErrConflict)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO master_keys (tenant, version, sealed, created_at) VALUES (?, ?, ?, ?)`,
			mk.Tenant, mk.Version, notNull(mk.Sealed), created); err != nil {
			return conflictIfExists(err)
		}
		return bumpVersion(ctx, tx,
			`UPDATE tenants SET master_key_version = ? WHERE name = ? AND master_key_version = ?`,
			mk.Version, mk.Tenant, cur)
	})
}

// GetMasterKey implements store.Tenants.
func (db *DB) GetMasterKey(ctx context.Context, tenant string, version int) (store.MasterKey, error) {
	mk := store.MasterKey{Tenant: tenant, Version: version}
	var created int64
	err := db.r.QueryRowContext(ctx,
		`SELECT sealed, created_at FROM master_keys WHERE tenant = ? AND version = ?`, tenant, version).
		Scan(&mk.Sealed, &created)
	if err != nil {
		return store.MasterKey{}, mapErr("GetMasterKey", err)
	}
	mk.CreatedAt = fromNanos(created)
	return mk, nil
}

// bumpVersion runs update, an UPDATE that sets a current version only where
// it still has the value read before, and reports store.ErrConflict unless
// it changed exactly one row. Under SQLite's serialized writes it always
// does; the check keeps the code right where writes interleave.
func bumpVersion(ctx context.Context, tx *sql.Tx, update string, args ...any) error {
	res, err := tx.ExecContext(ctx, update, args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
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
