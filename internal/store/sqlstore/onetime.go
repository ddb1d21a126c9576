package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// PutOneTime implements store.OneTime. An empty Hash is refused: it would
// match a caller that presents no secret.
func (q *queries) PutOneTime(ctx context.Context, s store.OneTimeSecret) error {
	const op = "PutOneTime"
	if len(s.Hash) == 0 {
		return q.mapErr(op, errors.New("empty hash"))
	}
	var ts times
	created := ts.at("CreatedAt", s.CreatedAt)
	expires := ts.at("ExpiresAt", s.ExpiresAt)
	used := ts.opt("UsedAt", s.UsedAt)
	if ts.err != nil {
		return q.mapErr(op, ts.err)
	}
	_, err := q.exec(ctx, op,
		`INSERT INTO one_time (`+oneTimeColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.Hash, s.Kind, s.Tenant, s.Subject, s.Payload, s.CreatedBy, created, expires, used)
	return err
}

const oneTimeColumns = `hash, kind, tenant, subject, payload, created_by, created_at, expires_at, used_at`

// scanOneTime scans the oneTimeColumns of row.
func scanOneTime(row *sql.Row) (store.OneTimeSecret, error) {
	var s store.OneTimeSecret
	var created, expires int64
	var used sql.NullInt64
	err := row.Scan(&s.Hash, &s.Kind, &s.Tenant, &s.Subject, &s.Payload, &s.CreatedBy, &created, &expires, &used)
	if err != nil {
		return store.OneTimeSecret{}, err
	}
	s.Payload = nilIfEmpty(s.Payload)
	s.CreatedAt = fromNanos(created)
	s.ExpiresAt = fromNanos(expires)
	s.UsedAt = fromNullNanos(used)
	return s, nil
}

// lookupNow checks the arguments of ConsumeOneTime and PeekOneTime and
// returns now as stored.
func lookupNow(hash []byte, now time.Time) (int64, error) {
	n, err := nanos("now", now)
	if err != nil {
		return 0, err
	}
	if len(hash) == 0 {
		return 0, fmt.Errorf("empty hash: %w", store.ErrNotFound)
	}
	return n, nil
}

// consume is the conditional UPDATE that marks a secret used, only if it
// has the kind, is unused and unexpired. Its arguments are now, hash, kind
// and now again. Callers racing for one secret are serialized on its row
// (on PostgreSQL, through any connection of any replica, they queue on its
// row lock and, when the first commits, PostgreSQL re-checks the others'
// condition against the committed row, which no longer matches): exactly
// one caller marks it.
const consume = `UPDATE one_time SET used_at = ?
	WHERE hash = ? AND kind = ? AND used_at IS NULL AND expires_at > ?`

// ConsumeOneTime implements store.OneTime with consume. Only when it
// matched nothing does a read find out why, changing nothing.
func (q *queries) ConsumeOneTime(ctx context.Context, kind string, hash []byte, now time.Time) (store.OneTimeSecret, error) {
	const op = "ConsumeOneTime"
	n, err := lookupNow(hash, now)
	if err != nil {
		return store.OneTimeSecret{}, q.mapErr(op, err)
	}
	var s store.OneTimeSecret
	err = q.write(ctx, op, func(c conn) error {
		var err error
		s, err = scanOneTime(c.queryRow(ctx, consume+` RETURNING `+oneTimeColumns, n, hash, kind, n))
		if errors.Is(err, sql.ErrNoRows) {
			return whyNotConsumed(ctx, c, kind, hash, n)
		}
		return err
	})
	if err != nil {
		return store.OneTimeSecret{}, err
	}
	return s, nil
}

// whyNotConsumed classifies a secret consume did not mark. It runs in a
// statement after consume's, so on PostgreSQL with a snapshot that sees a
// racing winner's commit.
func whyNotConsumed(ctx context.Context, c conn, kind string, hash []byte, now int64) error {
	var gotKind string
	var expires int64
	var used sql.NullInt64
	err := c.queryRow(ctx,
		`SELECT kind, expires_at, used_at FROM one_time WHERE hash = ?`, hash).
		Scan(&gotKind, &expires, &used)
	switch {
	case err != nil:
		return err // sql.ErrNoRows becomes store.ErrNotFound
	case gotKind != kind:
		return store.ErrNotFound
	case used.Valid:
		return store.ErrUsed
	case now >= expires:
		return store.ErrExpired
	}
	// Unused and unexpired now: on PostgreSQL, consume ran before a
	// concurrent PutOneTime of the same hash committed.
	return fmt.Errorf("one-time secret neither consumed nor refused: %w", store.ErrNotFound)
}

// PeekOneTime implements store.OneTime.
func (q *queries) PeekOneTime(ctx context.Context, kind string, hash []byte, now time.Time) (store.OneTimeSecret, error) {
	const op = "PeekOneTime"
	n, err := lookupNow(hash, now)
	if err != nil {
		return store.OneTimeSecret{}, q.mapErr(op, err)
	}
	s, err := scanOneTime(q.read().queryRow(ctx,
		`SELECT `+oneTimeColumns+` FROM one_time WHERE hash = ? AND kind = ?`, hash, kind))
	switch {
	case err != nil:
		return store.OneTimeSecret{}, q.mapErr(op, err)
	case s.UsedAt != nil:
		return store.OneTimeSecret{}, q.mapErr(op, store.ErrUsed)
	case s.ExpiresAt.UnixNano() <= n:
		return store.OneTimeSecret{}, q.mapErr(op, store.ErrExpired)
	}
	return s, nil
}

// GetOneTime implements store.OneTime.
func (q *queries) GetOneTime(ctx context.Context, kind string, hash []byte) (store.OneTimeSecret, error) {
	if len(hash) == 0 {
		return store.OneTimeSecret{}, q.mapErr("GetOneTime", store.ErrNotFound)
	}
	s, err := scanOneTime(q.read().queryRow(ctx,
		`SELECT `+oneTimeColumns+` FROM one_time WHERE hash = ? AND kind = ?`, hash, kind))
	if err != nil {
		return store.OneTimeSecret{}, q.mapErr("GetOneTime", err)
	}
	return s, nil
}

// DeleteExpiredOneTime implements store.OneTime: it removes secrets, used
// or not, whose ExpiresAt is before cutoff, and returns how many.
func (q *queries) DeleteExpiredOneTime(ctx context.Context, cutoff time.Time) (int64, error) {
	const op = "DeleteExpiredOneTime"
	n, err := nanos("cutoff", cutoff)
	if err != nil {
		return 0, q.mapErr(op, err)
	}
	res, err := q.exec(ctx, op, `DELETE FROM one_time WHERE expires_at < ?`, n)
	if err != nil {
		return 0, err
	}
	deleted, err := res.RowsAffected()
	return deleted, q.mapErr(op, err)
}
