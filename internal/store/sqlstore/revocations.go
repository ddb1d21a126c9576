package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strconv"

	"github.com/dcaas/dcaas/internal/store"
)

// appendRevocation appends one event to the revocation feed inside the
// write transaction c runs in and gives it the next seq. It first takes
// lockRevocations, held until the transaction ends, and only then reads
// MAX(seq) (in a new statement, so with a snapshot that sees the previous
// holder's commit): writers of the feed are serialized from the read to
// the commit, so seqs are 1, 2, 3, ... with no gaps and commit in order,
// across every process and replica (see migrations/0002_revocations.sql).
func appendRevocation(ctx context.Context, c conn, tenant, kind, subject string, at int64) error {
	if err := c.lock(ctx, lockRevocations); err != nil {
		return err
	}
	_, err := c.exec(ctx,
		`INSERT INTO revocations (seq, tenant, kind, subject, at)
		 SELECT COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ? FROM revocations`,
		tenant, kind, subject, at)
	return err
}

// revokeOnce sets column, a NULL-able time, to at in the row of table
// whose idColumn is id, unless it is set already, and then appends an
// event of kind for the row's tenant with id as Subject. A row set before
// changes nothing and appends nothing; an unknown id is sql.ErrNoRows.
// The identifiers are the caller's constants.
func revokeOnce(ctx context.Context, c conn, table, idColumn, column, id string, at int64, kind string) error {
	var tenant string
	err := c.queryRow(ctx,
		`UPDATE `+table+` SET `+column+` = ? WHERE `+idColumn+` = ? AND `+column+` IS NULL RETURNING tenant`,
		at, id).Scan(&tenant)
	if errors.Is(err, sql.ErrNoRows) {
		// Nothing changed: set before (no new event), or unknown.
		var one int
		return c.queryRow(ctx, `SELECT 1 FROM `+table+` WHERE `+idColumn+` = ?`, id).Scan(&one)
	}
	if err != nil {
		return err
	}
	return appendRevocation(ctx, c, tenant, kind, id, at)
}

// versionSubject is the subject of a RevocationKeyVersion or
// RevocationKeyRotated event: "<key id>:<version>".
func versionSubject(keyID string, version int) string {
	return keyID + ":" + strconv.Itoa(version)
}

// RevocationsAfter implements store.Revocations. The tenant "" is a tenant
// like any other, not "every tenant". A limit below 1 returns no events.
// The caller owns the returned slice.
func (q *queries) RevocationsAfter(ctx context.Context, tenant string, after int64, limit int) ([]store.Revocation, error) {
	const op = "RevocationsAfter"
	if limit < 1 {
		return nil, nil
	}
	rows, err := q.read().query(ctx,
		`SELECT seq, kind, subject, at FROM revocations
		 WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?`, tenant, after, limit)
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	defer rows.Close()
	var evs []store.Revocation
	for rows.Next() {
		ev := store.Revocation{Tenant: tenant}
		var at int64
		if err := rows.Scan(&ev.Seq, &ev.Kind, &ev.Subject, &at); err != nil {
			return nil, q.mapErr(op, err)
		}
		ev.At = fromNanos(at)
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, q.mapErr(op, err)
	}
	return evs, nil
}

// LastRevocation implements store.Revocations.
func (q *queries) LastRevocation(ctx context.Context) (int64, error) {
	var seq int64
	err := q.read().queryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM revocations`).Scan(&seq)
	if err != nil {
		return 0, q.mapErr("LastRevocation", err)
	}
	return seq, nil
}
