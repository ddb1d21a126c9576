package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/dcaas/dcaas/internal/store"
)

// Reseal implements store.Sealed. Before it reads, its write transaction
// takes lockSealed until it ends: on SQLite it is the only writer anyway;
// on PostgreSQL the tables holding sealed material (tenants, master_keys,
// settings) are locked in EXCLUSIVE mode, so writers of those tables, on
// any replica, wait for it while reads go on, and writes to the other
// tables, which hold nothing sealed, are not held up.
func (q *queries) Reseal(ctx context.Context, settings []string, reseal func([]store.SealedValue) error) error {
	return q.write(ctx, "Reseal", func(c conn) error {
		if err := c.lock(ctx, lockSealed); err != nil {
			return err
		}
		values, err := readSealed(ctx, c, settings)
		if err != nil {
			return err
		}
		where := slices.Clone(values)
		if err := reseal(values); err != nil {
			return err
		}
		for i, w := range where {
			if err := writeSealed(ctx, c, w, values[i].Value); err != nil {
				return err
			}
		}
		return nil
	})
}

// readSealed reads every sealed value and the named settings that are set.
func readSealed(ctx context.Context, c conn, settings []string) ([]store.SealedValue, error) {
	by := c.d.byteOrder()
	out, err := appendSealed(ctx, c, nil, store.SealedHMACKey,
		`SELECT name, 0, sealed_hmac_key FROM tenants ORDER BY name`+by)
	if err != nil {
		return nil, err
	}
	out, err = appendSealed(ctx, c, out, store.SealedMasterKey,
		`SELECT tenant, version, sealed FROM master_keys ORDER BY tenant`+by+`, version`)
	if err != nil {
		return nil, err
	}
	for _, name := range settings {
		v := store.SealedValue{Kind: store.SealedSetting, Name: name}
		err := c.queryRow(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v.Value)
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

// appendSealed appends to out a value of kind for each (tenant, version,
// value) row query returns.
func appendSealed(ctx context.Context, c conn, out []store.SealedValue, kind, query string) ([]store.SealedValue, error) {
	rows, err := c.query(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		v := store.SealedValue{Kind: kind}
		if err := rows.Scan(&v.Tenant, &v.Version, &v.Value); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// writeSealed stores value where w was read from.
func writeSealed(ctx context.Context, c conn, w store.SealedValue, value []byte) error {
	if len(value) == 0 {
		return fmt.Errorf("reseal left the %s value of %q/%d/%q empty", w.Kind, w.Tenant, w.Version, w.Name)
	}
	var query string
	var args []any
	switch w.Kind {
	case store.SealedHMACKey:
		query, args = `UPDATE tenants SET sealed_hmac_key = ? WHERE name = ?`, []any{value, w.Tenant}
	case store.SealedMasterKey:
		query, args = `UPDATE master_keys SET sealed = ? WHERE tenant = ? AND version = ?`, []any{value, w.Tenant, w.Version}
	case store.SealedSetting:
		query, args = `UPDATE settings SET value = ? WHERE name = ?`, []any{value, w.Name}
	default:
		return fmt.Errorf("reseal: unknown sealed value kind %q", w.Kind)
	}
	n, err := c.changed(ctx, query, args...)
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("writing the %s value of %q/%d/%q changed %d rows, want 1", w.Kind, w.Tenant, w.Version, w.Name, n)
	}
	return nil
}
