package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/dcaas/dcaas/internal/store"
)

// appendRevocation appends one event to the revocation feed inside tx and
// gives it the next seq. It first takes the feed's advisory lock, held
// until tx commits or rolls back, and only then reads MAX(seq) (in a new
// statement, so with a snapshot that sees the previous holder's commit):
// writers of the feed are serialized from the read to the commit, so seqs
// are 1, 2, 3, ... with no gaps and commit in order, across every replica
// (see migrations/0002_revocations.sql).
func appendRevocation(ctx context.Context, tx pgx.Tx, tenant, kind, subject string, at int64) error {
	if err := lock(ctx, tx, lockRevocations); err != nil {
		return err
	}
	_, err := tx.Exec(ctx,
		`INSERT INTO revocations (seq, tenant, kind, subject, at)
		 SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4 FROM revocations`,
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
	rows, err := db.pool.Query(ctx,
		`SELECT seq, kind, subject, at FROM revocations
		 WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3`, tenant, after, limit)
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
	err := db.pool.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM revocations`).Scan(&seq)
	if err != nil {
		return 0, mapErr("LastRevocation", err)
	}
	return seq, nil
}
