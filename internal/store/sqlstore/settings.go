package sqlstore

import (
	"context"
	"strings"

	"github.com/dcaas/dcaas/internal/store"
)

// GetSetting implements store.Settings.
func (q *queries) GetSetting(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := q.read().queryRow(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	if err != nil {
		return nil, q.mapErr("GetSetting", err)
	}
	return nilIfEmpty(v), nil
}

// PutSettingIfAbsent implements store.Settings. On PostgreSQL a replica
// racing another for the same name waits, in the INSERT, for the other's
// commit and then reads the winner's value: under READ COMMITTED the
// SELECT that follows takes a snapshot after that commit.
func (q *queries) PutSettingIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error) {
	var stored []byte
	err := q.write(ctx, "PutSettingIfAbsent", func(c conn) error {
		if _, err := c.exec(ctx,
			`INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
			name, notNull(value)); err != nil {
			return err
		}
		return c.queryRow(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&stored)
	})
	if err != nil {
		return nil, err
	}
	return nilIfEmpty(stored), nil
}

// SwapSetting implements store.Settings.
func (q *queries) SwapSetting(ctx context.Context, name string, old, value []byte) error {
	return q.write(ctx, "SwapSetting", func(c conn) error {
		var n int64
		var err error
		if old == nil {
			n, err = c.changed(ctx, `INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, notNull(value))
		} else {
			n, err = c.changed(ctx, `UPDATE settings SET value = ? WHERE name = ? AND value = ?`, notNull(value), name, notNull(old))
		}
		switch {
		case err != nil:
			return err
		case n != 1:
			return store.ErrConflict
		}
		return nil
	})
}

// SettingNames implements store.Settings.
func (q *queries) SettingNames(ctx context.Context, prefix string) ([]string, error) {
	const op = "SettingNames"
	rows, err := q.read().query(ctx,
		`SELECT name FROM settings WHERE name LIKE ? ESCAPE '\' ORDER BY name`+q.d.byteOrder(),
		likeEscaper.Replace(prefix)+"%")
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, q.mapErr(op, err)
		}
		if strings.HasPrefix(n, prefix) { // SQLite's LIKE ignores ASCII case
			names = append(names, n)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, q.mapErr(op, err)
	}
	return names, nil
}

// likeEscaper escapes LIKE's wildcards (and its escape character).
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
