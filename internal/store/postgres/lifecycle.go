package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dcaas/dcaas/internal/store"
)

// SetMinDecryptionVersion implements store.Keys. The key row stays locked
// (FOR UPDATE) from the check to the commit.
func (db *DB) SetMinDecryptionVersion(ctx context.Context, keyID string, version int, at time.Time) error {
	const op = "SetMinDecryptionVersion"
	n, err := nanos("at", at)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return db.tx(ctx, op, func(tx pgx.Tx) error {
		var tenant string
		var cur, floor int
		if err := tx.QueryRow(ctx,
			`SELECT tenant, current_version, COALESCE(min_decryption_version, 0) FROM keys WHERE key_id = $1 FOR UPDATE`,
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
		if _, err := tx.Exec(ctx,
			`UPDATE keys SET min_decryption_version = $1 WHERE key_id = $2`, version, keyID); err != nil {
			return err
		}
		return appendRevocation(ctx, tx, tenant, store.RevocationKeyVersion, keyID+":"+strconv.Itoa(version), n)
	})
}

// AddKeyUsage implements store.Keys. Counts must not be negative. Rows are
// updated in (key id, version) order, so concurrent reports lock them in
// the same order and never deadlock.
func (db *DB) AddKeyUsage(ctx context.Context, tenant string, counts []store.KeyUsage) (int, error) {
	const op = "AddKeyUsage"
	for _, c := range counts {
		if c.Encryptions < 0 || c.Bytes < 0 {
			return 0, fmt.Errorf("postgres: %s: negative usage for %s version %d", op, c.KeyID, c.Version)
		}
	}
	sorted := slices.Clone(counts)
	slices.SortFunc(sorted, func(a, b store.KeyUsage) int {
		return cmp.Or(cmp.Compare(a.KeyID, b.KeyID), cmp.Compare(a.Version, b.Version))
	})
	added := 0
	err := db.tx(ctx, op, func(tx pgx.Tx) error {
		added = 0
		for _, c := range sorted {
			tag, err := tx.Exec(ctx,
				`UPDATE key_versions
				 SET encryptions = COALESCE(encryptions, 0) + $1, bytes = COALESCE(bytes, 0) + $2
				 WHERE key_id = $3 AND version = $4
				   AND key_id IN (SELECT key_id FROM keys WHERE tenant = $5)`,
				c.Encryptions, c.Bytes, c.KeyID, c.Version, tenant)
			if err != nil {
				return err
			}
			added += int(tag.RowsAffected())
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}
