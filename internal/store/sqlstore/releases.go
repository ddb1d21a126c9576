package sqlstore

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// batch is how many rows one statement of RecordReleases writes, or
// ReleasedVersions asks about: few enough placeholders for either database
// (SQLite allows 32766, PostgreSQL 65535).
const batch = 500

// RecordReleases implements store.Releases, in one transaction.
func (q *queries) RecordReleases(ctx context.Context, instanceID string, refs []store.KeyRef, at time.Time) error {
	const op = "RecordReleases"
	n, err := nanos("at", at)
	if err != nil {
		return q.mapErr(op, err)
	}
	if len(refs) == 0 {
		return nil
	}
	return q.write(ctx, op, func(c conn) error {
		for part := range slices.Chunk(refs, batch) {
			args := make([]any, 0, 4*len(part))
			for _, r := range part {
				args = append(args, instanceID, r.KeyID, r.Version, n)
			}
			if _, err := c.exec(ctx,
				`INSERT INTO releases (instance_id, key_id, version, released_at) VALUES `+placeholders(len(part), 4)+`
				 ON CONFLICT (instance_id, key_id, version) DO NOTHING`, args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReleasedVersions implements store.Releases.
func (q *queries) ReleasedVersions(ctx context.Context, instanceID string, keyIDs []string) (map[string]int, error) {
	const op = "ReleasedVersions"
	out := map[string]int{}
	for part := range slices.Chunk(keyIDs, batch) {
		args := make([]any, 0, 1+len(part))
		args = append(args, instanceID)
		for _, id := range part {
			args = append(args, id)
		}
		if err := q.releasedIn(ctx, out, args); err != nil {
			return nil, q.mapErr(op, err)
		}
	}
	return out, nil
}

// releasedIn adds to out the highest version released to the instance
// args[0] of each key args[1:].
func (q *queries) releasedIn(ctx context.Context, out map[string]int, args []any) error {
	rows, err := q.read().query(ctx,
		`SELECT key_id, MAX(version) FROM releases WHERE instance_id = ? AND key_id IN `+placeholders(1, len(args)-1)+`
		 GROUP BY key_id`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var v int
		if err := rows.Scan(&id, &v); err != nil {
			return err
		}
		out[id] = v
	}
	return rows.Err()
}

// placeholders returns n parenthesized rows of width placeholders, comma
// separated: placeholders(2, 3) is "(?, ?, ?), (?, ?, ?)".
func placeholders(n, width int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", width), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
}
