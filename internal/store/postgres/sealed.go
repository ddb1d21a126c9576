package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/dcaas/dcaas/internal/store"
)

// Reseal implements store.Sealed. Before it reads, it locks the tables that
// hold sealed material (tenants, master_keys, settings) in EXCLUSIVE mode
// until commit: writers of those tables, on any replica, wait for it, while
// reads go on. Writes to the other tables hold nothing sealed and are not
// held up.
func (db *DB) Reseal(ctx context.Context, settings []string, reseal func([]store.SealedValue) error) error {
	return db.tx(ctx, "Reseal", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE tenants, master_keys, settings IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		values, err := readSealed(ctx, tx, settings)
		if err != nil {
			return err
		}
		where := slices.Clone(values)
		if err := reseal(values); err != nil {
			return err
		}
		for i, w := range where {
			if err := writeSealed(ctx, tx, w, values[i].Value); err != nil {
				return err
			}
		}
		return nil
	})
}

// readSealed reads every sealed value and the named settings that are set.
func readSealed(ctx context.Context, tx pgx.Tx, settings []string) ([]store.SealedValue, error) {
	var out []store.SealedValue
	rows, err := tx.Query(ctx, `SELECT name, sealed_hmac_key FROM tenants ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		v := store.SealedValue{Kind: store.SealedHMACKey}
		if err := rows.Scan(&v.Tenant, &v.Value); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = tx.Query(ctx, `SELECT tenant, version, sealed FROM master_keys ORDER BY tenant COLLATE "C", version`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		v := store.SealedValue{Kind: store.SealedMasterKey}
		if err := rows.Scan(&v.Tenant, &v.Version, &v.Value); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, name := range settings {
		v := store.SealedValue{Kind: store.SealedSetting, Name: name}
		err := tx.QueryRow(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&v.Value)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// writeSealed stores value where w was read from.
func writeSealed(ctx context.Context, tx pgx.Tx, w store.SealedValue, value []byte) error {
	if len(value) == 0 {
		return fmt.Errorf("reseal left the %s value of %q/%d/%q empty", w.Kind, w.Tenant, w.Version, w.Name)
	}
	var q string
	var args []any
	switch w.Kind {
	case store.SealedHMACKey:
		q, args = `UPDATE tenants SET sealed_hmac_key = $1 WHERE name = $2`, []any{value, w.Tenant}
	case store.SealedMasterKey:
		q, args = `UPDATE master_keys SET sealed = $1 WHERE tenant = $2 AND version = $3`, []any{value, w.Tenant, w.Version}
	case store.SealedSetting:
		q, args = `UPDATE settings SET value = $1 WHERE name = $2`, []any{value, w.Name}
	default:
		return fmt.Errorf("reseal: unknown sealed value kind %q", w.Kind)
	}
	tag, err := tx.Exec(ctx, q, args...)
	if err != nil {
		return err
	}
	if n := tag.RowsAffected(); n != 1 {
		return fmt.Errorf("writing the %s value of %q/%d/%q changed %d rows, want 1", w.Kind, w.Tenant, w.Version, w.Name, n)
	}
	return nil
}
