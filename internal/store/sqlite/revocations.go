package sqlite

import (
	"context"
	"database/sql"

	"github.com/dcaas/dcaas/internal/store"
)

// appendRevocation appends one event to the revocation feed inside tx and
// gives it the next seq. The seq is read and written in the same write
// transaction, and write transactions are serialized (BEGIN IMMEDIATE on
// the single write connection, SQLite's file lock across processes), so
// seqs are 1, 2, 3, ... with no gaps and commit in order. A PostgreSQL
// store needs an explicit lock held until commit for the same guarantee;
// see migrations/0002_revocations.sql.
func appendRevocation(ctx context.Context, tx *sql.Tx, tenant, kind, subject string, at int64) error {
	_, err := tx.ExecContext(ctx,
		`INSERT INTO revocations (seq, tenant, kind, subject, at)
		 SELECT COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ? FROM revocations`,
		tenant, kind, subject, at)
	return err
}

// RevocationsAfter implements store.Revocations. The tenant "" is a tenant
// like any other, not "every tenant". A limit below 1 returns no events.
// The caller owns the returned slice.
func (db *DB) RevocationsAfter(ctx context.Context, tenant string, after int64, limit int) ([]store.Revocation, error) {
	const op = "RevocationsAfter"
	if limit < 1 {
		return nil, nil
	}
	rows, err := db.r.QueryContext(ctx,
		`SELECT seq, kind, subject, at FROM revocations
		 WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?`, tenant, after, limit)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	var evs []store.Revocation
	for rows.Next() {
		ev := store.Revocation{Tenant: tenant}
		var at int64
		if err := rows.Scan(&ev.Seq, &ev.Kind, &ev.Subject, &at); err != nil {
			return nil, mapErr(op, err)
		}
		ev.At = fromNanos(at)
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	return evs, nil
}

// LastRevocation implements store.Revocations.
func (db *DB) LastRevocation(ctx context.Context) (int64, error) {
	var seq int64
	err := db.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM revocations`).Scan(&seq)
	if err != nil {
		return 0, mapErr("LastRevocation", err)
	}
	return seq, nil
}
