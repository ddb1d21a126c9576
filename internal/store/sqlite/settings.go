package sqlite

import (
	"context"
	"database/sql"
)

// GetSetting implements store.Settings.
func (db *DB) GetSetting(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := db.r.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	if err != nil {
		return nil, mapErr("GetSetting", err)
	}
	return v, nil
}

// PutSettingIfAbsent implements store.Settings.
func (db *DB) PutSettingIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error) {
	var stored []byte
	err := db.write(ctx, "PutSettingIfAbsent", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
			name, notNull(value)); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&stored)
	})
	if err != nil {
		return nil, err
	}
	return stored, nil
}
