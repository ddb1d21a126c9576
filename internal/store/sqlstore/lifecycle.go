package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// SetMinDecryptionVersion implements store.Keys. The key row stays locked
// from the check to the commit (FOR UPDATE on PostgreSQL).
func (q *queries) SetMinDecryptionVersion(ctx context.Context, keyID string, version int, at time.Time) error {
	const op = "SetMinDecryptionVersion"
	n, err := nanos("at", at)
	if err != nil {
		return q.mapErr(op, err)
	}
	return q.write(ctx, op, func(c conn) error {
		var tenant string
		var cur, floor int
		if err := c.queryRow(ctx,
			`SELECT tenant, current_version, COALESCE(min_decryption_version, 0) FROM keys WHERE key_id = ?`+c.d.forUpdate(),
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
		if _, err := c.exec(ctx,
			`UPDATE keys SET min_decryption_version = ? WHERE key_id = ?`, version, keyID); err != nil {
			return err
		}
		return appendRevocation(ctx, c, tenant, store.RevocationKeyVersion, versionSubject(keyID, version), n)
	})
}

// AddKeyUsage implements store.Keys.
func (q *queries) AddKeyUsage(ctx context.Context, tenant string, counts []store.KeyUsage) (int, error) {
	return q.addUsage(ctx, "AddKeyUsage", counts, keyUsageCond, tenant)
}

// AddReleasedUsage implements store.Releases.
func (q *queries) AddReleasedUsage(ctx context.Context, tenant, instanceID, keyType string, counts []store.KeyUsage) (int, error) {
	return q.addUsage(ctx, "AddReleasedUsage", counts, releasedUsageCond, tenant, keyType, instanceID)
}

// The conditions of addUsage's two callers: the key is the tenant's
// (arguments: tenant); and of the type, and the version was released to
// the instance (tenant, key type, instance id).
const (
	keyUsageCond      = `EXISTS (SELECT 1 FROM keys k WHERE k.key_id = key_versions.key_id AND k.tenant = ?)`
	releasedUsageCond = `EXISTS (SELECT 1 FROM keys k WHERE k.key_id = key_versions.key_id AND k.tenant = ? AND k.key_type = ?)
		 AND EXISTS (SELECT 1 FROM releases r
		             WHERE r.instance_id = ? AND r.key_id = key_versions.key_id AND r.version = key_versions.version)`
)

// usageUpdate is addUsage's statement with cond: 8 arguments (see
// addCounter; the key id, the version), then cond's.
func usageUpdate(cond string) string {
	return `UPDATE key_versions
				 SET encryptions = ` + addCounter("encryptions") + `, bytes = ` + addCounter("bytes") + `
				 WHERE key_id = ? AND version = ? AND ` + cond
}

// addUsage adds each count to its key version's totals, all in one
// transaction, where the version's row also matches cond (with its
// arguments condArgs), and returns how many counts it added. cond must
// look rows up by the version's key (a correlated EXISTS on the primary
// key), never list a table: `key_id IN (SELECT key_id FROM keys WHERE
// tenant = ?)` made SQLite scan every key of every tenant for each count
// (TestUsageUpdatesLookUpByKey, BenchmarkAddKeyUsage). Counts must
// not be negative. Totals saturate at math.MaxInt64 (see addCounter).
// Rows are updated in (key id, version) order, so concurrent reports lock
// them in the same order and never deadlock.
func (q *queries) addUsage(ctx context.Context, op string, counts []store.KeyUsage, cond string, condArgs ...any) (int, error) {
	for _, c := range counts {
		if c.Encryptions < 0 || c.Bytes < 0 {
			return 0, q.mapErr(op, fmt.Errorf("negative usage for %s version %d", c.KeyID, c.Version))
		}
	}
	sorted := slices.Clone(counts)
	slices.SortFunc(sorted, func(a, b store.KeyUsage) int {
		return cmp.Or(cmp.Compare(a.KeyID, b.KeyID), cmp.Compare(a.Version, b.Version))
	})
	added := 0
	err := q.write(ctx, op, func(c conn) error {
		added = 0
		for _, u := range sorted {
			args := []any{math.MaxInt64 - u.Encryptions, int64(math.MaxInt64), u.Encryptions,
				math.MaxInt64 - u.Bytes, int64(math.MaxInt64), u.Bytes, u.KeyID, u.Version}
			n, err := c.changed(ctx, usageUpdate(cond), append(args, condArgs...)...)
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

// addCounter is the SQL that adds a count n to the counter column col
// without overflowing, taking three arguments: math.MaxInt64 - n,
// math.MaxInt64 and n. A total that would pass math.MaxInt64 stops there:
// SQLite would turn the sum into a REAL, which no read could scan into an
// int64 again, and PostgreSQL would refuse the update. A REAL stored
// before (by a version without this guard) compares above the bound, so
// the next addition repairs it.
func addCounter(col string) string {
	return `CASE WHEN COALESCE(` + col + `, 0) > ? THEN ? ELSE COALESCE(` + col + `, 0) + ? END`
}

// readCounter is the SQL that reads the counter column col as a BIGINT, 0
// for NULL. On SQLite the CAST turns a REAL that an unguarded addition
// stored before into an integer, saturating at math.MaxInt64, so a row
// damaged that way still reads; on PostgreSQL it changes nothing.
func readCounter(col string) string {
	return `CAST(COALESCE(` + col + `, 0) AS BIGINT)`
}

// KeysDueForRotation implements store.Keys.
func (q *queries) KeysDueForRotation(ctx context.Context, now time.Time, countedType string, minEncryptions int64, limit int) ([]store.Key, error) {
	const op = "KeysDueForRotation"
	n, err := nanos("now", now)
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	if limit < 1 {
		return nil, nil
	}
	ids, err := q.strings(ctx,
		`SELECT k.key_id FROM keys k JOIN key_versions v ON v.key_id = k.key_id AND v.version = k.current_version
		 WHERE k.disabled_at IS NULL AND v.ekb IS NOT NULL AND length(v.ekb) > 0
		   AND ((COALESCE(k.rotation_period, 0) > 0 AND v.created_at + k.rotation_period <= ?)
		     OR (k.key_type = ? AND COALESCE(v.encryptions, 0) >= ?))
		 ORDER BY k.key_id`+q.d.byteOrder()+` LIMIT ?`, n, countedType, minEncryptions, limit)
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	out := make([]store.Key, 0, len(ids))
	for _, id := range ids {
		k, err := q.GetKey(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// strings reads the one text column query returns, all rows, and closes
// them before it returns.
func (q *queries) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := q.read().query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
