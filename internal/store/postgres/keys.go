package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dcaas/dcaas/internal/store"
)

// CreateKey implements store.Keys. k.CurrentVersion and first.Version must
// be 1 (store.ErrConflict otherwise) and first.KeyID must be k.KeyID.
func (db *DB) CreateKey(ctx context.Context, k store.Key, first store.KeyVersion) error {
	const op = "CreateKey"
	if k.CurrentVersion != 1 || first.Version != 1 {
		return fmt.Errorf("postgres: %s: key version %d/%d, want 1: %w",
			op, k.CurrentVersion, first.Version, store.ErrConflict)
	}
	if first.KeyID != k.KeyID {
		return fmt.Errorf("postgres: %s: first version is for key %q, want %q", op, first.KeyID, k.KeyID)
	}
	created, err := nanos("CreatedAt", k.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	disabled, err := nullNanos("DisabledAt", k.DisabledAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	vCreated, err := nanos("KeyVersion.CreatedAt", first.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return db.tx(ctx, op, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx,
			`INSERT INTO keys (key_id, tenant, owner, key_type, current_version, retained, created_at, disabled_at,
			                   min_decryption_version, rotation_period)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			k.KeyID, k.Tenant, k.Owner, k.Type, k.CurrentVersion, boolInt(k.Retained), created, disabled,
			k.MinDecryptionVersion, int64(k.RotationPeriod)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx,
			`INSERT INTO key_versions (key_id, version, ekb, created_at, encryptions, bytes) VALUES ($1, $2, $3, $4, $5, $6)`,
			first.KeyID, first.Version, first.EKB, vCreated, first.Encryptions, first.Bytes)
		return err
	})
}

// GetKey implements store.Keys.
func (db *DB) GetKey(ctx context.Context, keyID string) (store.Key, error) {
	k := store.Key{KeyID: keyID}
	var retained, created, period int64
	var disabled *int64
	err := db.pool.QueryRow(ctx,
		`SELECT tenant, owner, key_type, current_version, retained, created_at, disabled_at,
		        COALESCE(min_decryption_version, 0), COALESCE(rotation_period, 0)
		 FROM keys WHERE key_id = $1`, keyID).
		Scan(&k.Tenant, &k.Owner, &k.Type, &k.CurrentVersion, &retained, &created, &disabled,
			&k.MinDecryptionVersion, &period)
	if err != nil {
		return store.Key{}, mapErr("GetKey", err)
	}
	k.Retained = retained != 0
	k.CreatedAt = fromNanos(created)
	k.DisabledAt = fromNullNanos(disabled)
	k.RotationPeriod = time.Duration(period)
	return k, nil
}

// AddKeyVersion implements store.Keys. It returns store.ErrNotFound for an
// unknown key. The key row stays locked (FOR UPDATE) from the version check
// to the commit.
func (db *DB) AddKeyVersion(ctx context.Context, v store.KeyVersion) error {
	const op = "AddKeyVersion"
	created, err := nanos("CreatedAt", v.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return db.tx(ctx, op, func(tx pgx.Tx) error {
		var cur int
		var tenant string
		if err := tx.QueryRow(ctx,
			`SELECT current_version, tenant FROM keys WHERE key_id = $1 FOR UPDATE`, v.KeyID).Scan(&cur, &tenant); err != nil {
			return err
		}
		if v.Version != cur+1 {
			return fmt.Errorf("key version %d, want %d: %w", v.Version, cur+1, store.ErrConflict)
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO key_versions (key_id, version, ekb, created_at, encryptions, bytes) VALUES ($1, $2, $3, $4, $5, $6)`,
			v.KeyID, v.Version, v.EKB, created, v.Encryptions, v.Bytes); err != nil {
			return conflictIfExists(err)
		}
		if err := bumpVersion(ctx, tx,
			`UPDATE keys SET current_version = $1 WHERE key_id = $2 AND current_version = $3`,
			v.Version, v.KeyID, cur); err != nil {
			return err
		}
		return appendRevocation(ctx, tx, tenant, store.RevocationKeyRotated, rotatedSubject(v.KeyID, v.Version), created)
	})
}

// GetKeyVersion implements store.Keys.
func (db *DB) GetKeyVersion(ctx context.Context, keyID string, version int) (store.KeyVersion, error) {
	v := store.KeyVersion{KeyID: keyID, Version: version}
	var created int64
	err := db.pool.QueryRow(ctx,
		`SELECT ekb, created_at, COALESCE(encryptions, 0), COALESCE(bytes, 0)
		 FROM key_versions WHERE key_id = $1 AND version = $2`, keyID, version).
		Scan(&v.EKB, &created, &v.Encryptions, &v.Bytes)
	if err != nil {
		return store.KeyVersion{}, mapErr("GetKeyVersion", err)
	}
	v.EKB = nilIfEmpty(v.EKB)
	v.CreatedAt = fromNanos(created)
	return v, nil
}

// ListKeyVersions implements store.Keys. The caller owns the returned
// slice.
func (db *DB) ListKeyVersions(ctx context.Context, keyID string) ([]store.KeyVersion, error) {
	const op = "ListKeyVersions"
	// One statement, so one snapshot: no rows means no such key; a key
	// without versions (which CreateKey never leaves) is one NULL row.
	rows, err := db.pool.Query(ctx,
		`SELECT v.version, v.ekb, v.created_at, COALESCE(v.encryptions, 0), COALESCE(v.bytes, 0)
		 FROM keys k LEFT JOIN key_versions v ON v.key_id = k.key_id
		 WHERE k.key_id = $1 ORDER BY v.version`, keyID)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	found := false
	var list []store.KeyVersion
	for rows.Next() {
		found = true
		v := store.KeyVersion{KeyID: keyID}
		var version, created *int64
		if err := rows.Scan(&version, &v.EKB, &created, &v.Encryptions, &v.Bytes); err != nil {
			return nil, mapErr(op, err)
		}
		if version == nil {
			continue
		}
		v.Version = int(*version)
		v.EKB = nilIfEmpty(v.EKB)
		v.CreatedAt = fromNanos(*created)
		list = append(list, v)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	if !found {
		return nil, mapErr(op, pgx.ErrNoRows)
	}
	return list, nil
}

// DisableKey implements store.Keys. The event carries the key's tenant, its
// id as Subject, and at. A key created with DisabledAt set counts as
// disabled before: DisableKey appends no event for it. Racing calls queue
// on the key's row lock; the first to commit wins, and the others, seeing
// the key disabled, change nothing.
func (db *DB) DisableKey(ctx context.Context, keyID string, at time.Time) error {
	const op = "DisableKey"
	n, err := nanos("at", at)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return db.tx(ctx, op, func(tx pgx.Tx) error {
		var tenant string
		err := tx.QueryRow(ctx,
			`UPDATE keys SET disabled_at = $1 WHERE key_id = $2 AND disabled_at IS NULL RETURNING tenant`,
			n, keyID).Scan(&tenant)
		if errors.Is(err, pgx.ErrNoRows) {
			// Nothing changed: disabled before (no new event), or unknown.
			var one int
			return tx.QueryRow(ctx, `SELECT 1 FROM keys WHERE key_id = $1`, keyID).Scan(&one)
		}
		if err != nil {
			return err
		}
		return appendRevocation(ctx, tx, tenant, store.RevocationKey, keyID, n)
	})
}
