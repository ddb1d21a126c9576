package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// GetSetting implements store.Settings.
func (db *DB) GetSetting(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := db.pool.QueryRow(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&v)
	if err != nil {
		return nil, mapErr("GetSetting", err)
	}
	return nilIfEmpty(v), nil
}

// PutSettingIfAbsent implements store.Settings. A replica racing another
// for the same name waits, in the INSERT, for the other's commit and then
// reads the winner's value: under READ COMMITTED the SELECT that follows
// takes a snapshot after that commit.
func (db *DB) PutSettingIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error) {
	var stored []byte
	err := db.tx(ctx, "PutSettingIfAbsent", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx,
			`INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			name, notNull(value)); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&stored)
	})
	if err != nil {
		return nil, err
	}
	return nilIfEmpty(stored), nil
}
