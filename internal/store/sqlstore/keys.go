package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// CreateKey implements store.Keys. k.CurrentVersion and first.Version must
// be 1 (store.ErrConflict otherwise) and first.KeyID must be k.KeyID.
func (q *queries) CreateKey(ctx context.Context, k store.Key, first store.KeyVersion) error {
	const op = "CreateKey"
	if k.CurrentVersion != 1 || first.Version != 1 {
		return q.mapErr(op, fmt.Errorf("key version %d/%d, want 1: %w",
			k.CurrentVersion, first.Version, store.ErrConflict))
	}
	if first.KeyID != k.KeyID {
		return q.mapErr(op, fmt.Errorf("first version is for key %q, want %q", first.KeyID, k.KeyID))
	}
	var ts times
	created := ts.at("CreatedAt", k.CreatedAt)
	disabled := ts.opt("DisabledAt", k.DisabledAt)
	vCreated := ts.at("KeyVersion.CreatedAt", first.CreatedAt)
	if ts.err != nil {
		return q.mapErr(op, ts.err)
	}
	return q.write(ctx, op, func(c conn) error {
		if _, err := c.exec(ctx,
			`INSERT INTO keys (key_id, tenant, owner, key_type, current_version, retained, created_at, disabled_at,
			                   min_decryption_version, rotation_period)
			 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			k.KeyID, k.Tenant, k.Owner, k.Type, k.CurrentVersion, boolInt(k.Retained), created, disabled,
			k.MinDecryptionVersion, int64(k.RotationPeriod)); err != nil {
			return err
		}
		_, err := c.exec(ctx, insertKeyVersion,
			first.KeyID, first.Version, first.EKB, vCreated, first.Encryptions, first.Bytes, nullString(first.KCV))
		return err
	})
}

const insertKeyVersion = `INSERT INTO key_versions (key_id, version, ekb, created_at, encryptions, bytes, kcv) VALUES (?, ?, ?, ?, ?, ?, ?)`

// GetKey implements store.Keys.
func (q *queries) GetKey(ctx context.Context, keyID string) (store.Key, error) {
	k, err := scanKey(q.read().queryRow(ctx, `SELECT `+keyColumns+` FROM keys WHERE key_id = ?`, keyID))
	if err != nil {
		return store.Key{}, q.mapErr("GetKey", err)
	}
	return k, nil
}

// keyColumns are the columns scanKey reads, in its order.
var keyColumns = keyColumnsOf("")

// keyColumnsOf is keyColumns of the keys table named t (a prefix such as
// "k.", or "").
func keyColumnsOf(t string) string {
	return t + `key_id, ` + t + `tenant, ` + t + `owner, ` + t + `key_type, ` + t + `current_version, ` + t + `retained, ` +
		t + `created_at, ` + t + `disabled_at, COALESCE(` + t + `min_decryption_version, 0), COALESCE(` + t + `rotation_period, 0)`
}

// scanKey reads one row of keyColumns, followed by the columns extra
// points at.
func scanKey(row interface{ Scan(...any) error }, extra ...any) (store.Key, error) {
	var k store.Key
	var retained, created, period int64
	var disabled sql.NullInt64
	if err := row.Scan(append([]any{&k.KeyID, &k.Tenant, &k.Owner, &k.Type, &k.CurrentVersion, &retained, &created, &disabled,
		&k.MinDecryptionVersion, &period}, extra...)...); err != nil {
		return store.Key{}, err
	}
	k.Retained = retained != 0
	k.CreatedAt = fromNanos(created)
	k.DisabledAt = fromNullNanos(disabled)
	k.RotationPeriod = time.Duration(period)
	return k, nil
}

// GetKeys implements store.Keys: one statement per 500 ids.
func (q *queries) GetKeys(ctx context.Context, keyIDs []string) (map[string]store.Key, error) {
	const op = "GetKeys"
	out := make(map[string]store.Key, len(keyIDs))
	for part := range slices.Chunk(keyIDs, batch) {
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		err := q.each(ctx, `SELECT `+keyColumns+` FROM keys WHERE key_id IN `+placeholders(1, len(part)), args, func(rows *sql.Rows) error {
			k, err := scanKey(rows)
			if err == nil {
				out[k.KeyID] = k
			}
			return err
		})
		if err != nil {
			return nil, q.mapErr(op, err)
		}
	}
	return out, nil
}

// GetKeysAndVersions implements store.Keys: one statement per 500 key
// ids, the keys joined with the versions of them that refs name.
func (q *queries) GetKeysAndVersions(ctx context.Context, refs []store.KeyRef) (map[string]store.Key, map[store.KeyRef]store.KeyVersion, error) {
	const op = "GetKeysAndVersions"
	want := make(map[string][]int, len(refs))
	ids := make([]string, 0, len(refs))
	for _, r := range refs {
		if _, ok := want[r.KeyID]; !ok {
			ids = append(ids, r.KeyID)
		}
		want[r.KeyID] = append(want[r.KeyID], r.Version)
	}
	keys := make(map[string]store.Key, len(ids))
	versions := make(map[store.KeyRef]store.KeyVersion, len(refs))
	for part := range slices.Chunk(ids, batch) {
		var versionArgs []any
		seen := map[int]bool{}
		for _, id := range part {
			for _, v := range want[id] {
				if !seen[v] {
					seen[v] = true
					versionArgs = append(versionArgs, v)
				}
			}
		}
		args := append(versionArgs, make([]any, 0, len(part))...)
		for _, id := range part {
			args = append(args, id)
		}
		err := q.each(ctx,
			`SELECT `+keyColumnsOf("k.")+`,
			        v.version, v.ekb, v.created_at, `+readCounter("v.encryptions")+`, `+readCounter("v.bytes")+`, COALESCE(v.kcv, '')
			 FROM keys k LEFT JOIN key_versions v ON v.key_id = k.key_id AND v.version IN `+placeholders(1, len(versionArgs))+`
			 WHERE k.key_id IN `+placeholders(1, len(part)), args,
			func(rows *sql.Rows) error {
				var version, vCreated sql.NullInt64
				var v store.KeyVersion
				k, err := scanKey(rows, &version, &v.EKB, &vCreated, &v.Encryptions, &v.Bytes, &v.KCV)
				if err != nil {
					return err
				}
				keys[k.KeyID] = k
				if version.Valid && slices.Contains(want[k.KeyID], int(version.Int64)) {
					v.KeyID, v.Version = k.KeyID, int(version.Int64)
					v.EKB = nilIfEmpty(v.EKB)
					v.CreatedAt = fromNanos(vCreated.Int64)
					versions[store.KeyRef{KeyID: v.KeyID, Version: v.Version}] = v
				}
				return nil
			})
		if err != nil {
			return nil, nil, q.mapErr(op, err)
		}
	}
	return keys, versions, nil
}

// each runs query and calls fn for each row.
func (q *queries) each(ctx context.Context, query string, args []any, fn func(*sql.Rows) error) error {
	rows, err := q.read().query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// all runs query and returns what scan reads from each row, in order: nil
// for no rows.
func all[T any](ctx context.Context, q *queries, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	var out []T
	err := q.each(ctx, query, args, func(rows *sql.Rows) error {
		v, err := scan(rows)
		if err == nil {
			out = append(out, v)
		}
		return err
	})
	return out, err
}

// AddKeyVersion implements store.Keys. It returns store.ErrNotFound for an
// unknown key. The key row stays locked from the version check to the
// commit (FOR UPDATE on PostgreSQL).
func (q *queries) AddKeyVersion(ctx context.Context, v store.KeyVersion) error {
	const op = "AddKeyVersion"
	created, err := nanos("CreatedAt", v.CreatedAt)
	if err != nil {
		return q.mapErr(op, err)
	}
	return q.write(ctx, op, func(c conn) error {
		var cur int
		var tenant string
		if err := c.queryRow(ctx,
			`SELECT current_version, tenant FROM keys WHERE key_id = ?`+c.d.forUpdate(), v.KeyID).Scan(&cur, &tenant); err != nil {
			return err
		}
		if v.Version != cur+1 {
			return fmt.Errorf("key version %d, want %d: %w", v.Version, cur+1, store.ErrConflict)
		}
		if _, err := c.exec(ctx, insertKeyVersion,
			v.KeyID, v.Version, v.EKB, created, v.Encryptions, v.Bytes, nullString(v.KCV)); err != nil {
			return conflictIfExists(c.d, err)
		}
		if err := bumpVersion(ctx, c,
			`UPDATE keys SET current_version = ? WHERE key_id = ? AND current_version = ?`,
			v.Version, v.KeyID, cur); err != nil {
			return err
		}
		return appendRevocation(ctx, c, tenant, store.RevocationKeyRotated, versionSubject(v.KeyID, v.Version), created)
	})
}

// GetKeyVersion implements store.Keys.
func (q *queries) GetKeyVersion(ctx context.Context, keyID string, version int) (store.KeyVersion, error) {
	v := store.KeyVersion{KeyID: keyID, Version: version}
	var created int64
	err := q.read().queryRow(ctx,
		`SELECT ekb, created_at, `+readCounter("encryptions")+`, `+readCounter("bytes")+`, COALESCE(kcv, '')
		 FROM key_versions WHERE key_id = ? AND version = ?`, keyID, version).
		Scan(&v.EKB, &created, &v.Encryptions, &v.Bytes, &v.KCV)
	if err != nil {
		return store.KeyVersion{}, q.mapErr("GetKeyVersion", err)
	}
	v.EKB = nilIfEmpty(v.EKB)
	v.CreatedAt = fromNanos(created)
	return v, nil
}

// ListKeyVersions implements store.Keys. The caller owns the returned
// slice.
func (q *queries) ListKeyVersions(ctx context.Context, keyID string) ([]store.KeyVersion, error) {
	const op = "ListKeyVersions"
	// One statement, so one snapshot: no rows means no such key; a key
	// without versions (which CreateKey never leaves) is one NULL row.
	rows, err := q.read().query(ctx,
		`SELECT v.version, v.ekb, v.created_at, `+readCounter("v.encryptions")+`, `+readCounter("v.bytes")+`, COALESCE(v.kcv, '')
		 FROM keys k LEFT JOIN key_versions v ON v.key_id = k.key_id
		 WHERE k.key_id = ? ORDER BY v.version`, keyID)
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	defer rows.Close()
	found := false
	var list []store.KeyVersion
	for rows.Next() {
		found = true
		v := store.KeyVersion{KeyID: keyID}
		var version, created sql.NullInt64
		if err := rows.Scan(&version, &v.EKB, &created, &v.Encryptions, &v.Bytes, &v.KCV); err != nil {
			return nil, q.mapErr(op, err)
		}
		if !version.Valid {
			continue
		}
		v.Version = int(version.Int64)
		v.EKB = nilIfEmpty(v.EKB)
		v.CreatedAt = fromNanos(created.Int64)
		list = append(list, v)
	}
	if err := rows.Err(); err != nil {
		return nil, q.mapErr(op, err)
	}
	if !found {
		return nil, q.mapErr(op, sql.ErrNoRows)
	}
	return list, nil
}

// DisableKey implements store.Keys. The event carries the key's tenant, its
// id as Subject, and at. A key created with DisabledAt set counts as
// disabled before: DisableKey appends no event for it. Racing calls are
// serialized on the key's row (its lock on PostgreSQL); the first to commit
// wins, and the others, seeing the key disabled, change nothing.
func (q *queries) DisableKey(ctx context.Context, keyID string, at time.Time) error {
	const op = "DisableKey"
	n, err := nanos("at", at)
	if err != nil {
		return q.mapErr(op, err)
	}
	return q.write(ctx, op, func(c conn) error {
		return revokeOnce(ctx, c, `keys`, `key_id`, `disabled_at`, keyID, n, store.RevocationKey)
	})
}
