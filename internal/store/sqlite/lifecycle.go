package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// SetMinDecryptionVersion implements store.Keys.
func (db *DB) SetMinDecryptionVersion(ctx context.Context, keyID string, version int, at time.Time) error {
	const op = "SetMinDecryptionVersion"
	n, err := nanos("at", at)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return db.write(ctx, op, func(tx *sql.Tx) error {
		var tenant string
		var cur, floor int
		if err := tx.QueryRowContext(ctx,
			`SELECT tenant, current_version, COALESCE(min_decryption_version, 0) FROM keys WHERE key_id = ?`,
			keyID).Scan(&tenant, &cur, &floor); err != nil {
			return err
		}
		switch {
		case version < 1 || version < floor || version > cur:
			return fmt.Errorf("min decryption version %d with versions 1 to %d and minimum %d: %w",
				version, cur, floor, store.ErrConflict)
		case version == floor:
			return nil
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE keys SET min_decryption_version = ? WHERE key_id = ?`, version, keyID); err != nil {
			return err
		}
		return appendRevocation(ctx, tx, tenant, store.RevocationKeyVersion, keyID+":"+strconv.Itoa(version), n)
	})
}

// AddKeyUsage implements store.Keys. Counts must not be negative.
func (db *DB) AddKeyUsage(ctx context.Context, tenant string, counts []store.KeyUsage) (int, error) {
	const op = "AddKeyUsage"
	if err := checkUsage(counts); err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	added := 0
	err := db.write(ctx, op, func(tx *sql.Tx) error {
		added = 0
		for _, c := range counts {
			res, err := tx.ExecContext(ctx,
				`UPDATE key_versions
				 SET encryptions = COALESCE(encryptions, 0) + ?, bytes = COALESCE(bytes, 0) + ?
				 WHERE key_id = ? AND version = ?
				   AND key_id IN (SELECT key_id FROM keys WHERE tenant = ?)`,
				c.Encryptions, c.Bytes, c.KeyID, c.Version, tenant)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			added += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

func checkUsage(counts []store.KeyUsage) error {
	for _, c := range counts {
		if c.Encryptions < 0 || c.Bytes < 0 {
			return fmt.Errorf("negative usage for %s version %d", c.KeyID, c.Version)
		}
	}
	return nil
}
