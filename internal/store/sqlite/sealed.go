package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/dcaas/dcaas/internal/store"
)

// Reseal implements store.Sealed. It holds the write lock (BEGIN
// IMMEDIATE) from the first read to the commit, so other writers, in this
// process or another, wait for it.
func (db *DB) Reseal(ctx context.Context, settings []string, reseal func([]store.SealedValue) error) error {
	return db.write(ctx, "Reseal", func(tx *sql.Tx) error {
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
func readSealed(ctx context.Context, tx *sql.Tx, settings []string) ([]store.SealedValue, error) {
	var out []store.SealedValue
	rows, err := tx.QueryContext(ctx, `SELECT name, sealed_hmac_key FROM tenants ORDER BY name`)
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
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	rows, err = tx.QueryContext(ctx, `SELECT tenant, version, sealed FROM master_keys ORDER BY tenant, version`)
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
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	for _, name := range settings {
		v := store.SealedValue{Kind: store.SealedSetting, Name: name}
		err := tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v.Value)
		if errors.Is(err, sql.ErrNoRows) {
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
func writeSealed(ctx context.Context, tx *sql.Tx, w store.SealedValue, value []byte) error {
	if len(value) == 0 {
		return fmt.Errorf("reseal left the %s value of %q/%d/%q empty", w.Kind, w.Tenant, w.Version, w.Name)
	}
	var res sql.Result
	var err error
	switch w.Kind {
	case store.SealedHMACKey:
		res, err = tx.ExecContext(ctx, `UPDATE tenants SET sealed_hmac_key = ? WHERE name = ?`, value, w.Tenant)
	case store.SealedMasterKey:
		res, err = tx.ExecContext(ctx, `UPDATE master_keys SET sealed = ? WHERE tenant = ? AND version = ?`, value, w.Tenant, w.Version)
	case store.SealedSetting:
		res, err = tx.ExecContext(ctx, `UPDATE settings SET value = ? WHERE name = ?`, value, w.Name)
	default:
		return fmt.Errorf("reseal: unknown sealed value kind %q", w.Kind)
	}
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return fmt.Errorf("writing the %s value of %q/%d/%q changed %d rows, want 1", w.Kind, w.Tenant, w.Version, w.Name, n)
	}
	return nil
}
