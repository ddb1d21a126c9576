package sqlite

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
func (db *DB) PutOneTime(ctx context.Context, s store.OneTimeSecret) error {
	const op = "PutOneTime"
	if len(s.Hash) == 0 {
		return fmt.Errorf("sqlite: %s: empty hash", op)
	}
	created, err := nanos("CreatedAt", s.CreatedAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	expires, err := nanos("ExpiresAt", s.ExpiresAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	used, err := nullNanos("UsedAt", s.UsedAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	_, err = db.w.ExecContext(ctx,
		`INSERT INTO one_time (hash, kind, tenant, subject, payload, created_by, created_at, expires_at, used_at)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.Hash, s.Kind, s.Tenant, s.Subject, s.Payload, s.CreatedBy, created, expires, used)
	return mapErr(op, err)
}

// ConsumeOneTime implements store.OneTime. One conditional UPDATE marks the
// secret used only if it has this kind, is unused and unexpired; only when
// it matched nothing does a read find out why, changing nothing.
func (db *DB) ConsumeOneTime(ctx context.Context, kind string, hash []byte, now time.Time) (store.OneTimeSecret, error) {
	const op = "ConsumeOneTime"
	n, err := nanos("now", now)
	if err != nil {
		return store.OneTimeSecret{}, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if len(hash) == 0 {
		return store.OneTimeSecret{}, fmt.Errorf("sqlite: %s: empty hash: %w", op, store.ErrNotFound)
	}
	var s store.OneTimeSecret
	err = db.write(ctx, op, func(tx *sql.Tx) error {
		var created, expires int64
		var used sql.NullInt64
		err := tx.QueryRowContext(ctx,
			`UPDATE one_time SET used_at = ?
			 WHERE hash = ? AND kind = ? AND used_at IS NULL AND expires_at > ?
			 RETURNING hash, kind, tenant, subject, payload, created_by, created_at, expires_at, used_at`,
			n, hash, kind, n).
			Scan(&s.Hash, &s.Kind, &s.Tenant, &s.Subject, &s.Payload, &s.CreatedBy, &created, &expires, &used)
		if errors.Is(err, sql.ErrNoRows) {
			return whyNotConsumed(ctx, tx, kind, hash, n)
		}
		if err != nil {
			return err
		}
		s.CreatedAt = fromNanos(created)
		s.ExpiresAt = fromNanos(expires)
		s.UsedAt = fromNullNanos(used)
		return nil
	})
	if err != nil {
		return store.OneTimeSecret{}, err
	}
	return s, nil
}

// whyNotConsumed classifies a secret ConsumeOneTime did not mark.
func whyNotConsumed(ctx context.Context, tx *sql.Tx, kind string, hash []byte, now int64) error {
	var gotKind string
	var expires int64
	var used sql.NullInt64
	err := tx.QueryRowContext(ctx,
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
	return fmt.Errorf("one-time secret neither consumed nor refused")
}

// DeleteExpiredOneTime implements store.OneTime: it removes secrets, used
// or not, whose ExpiresAt is before cutoff, and returns how many.
func (db *DB) DeleteExpiredOneTime(ctx context.Context, cutoff time.Time) (int64, error) {
	const op = "DeleteExpiredOneTime"
	n, err := nanos("cutoff", cutoff)
	if err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	res, err := db.w.ExecContext(ctx, `DELETE FROM one_time WHERE expires_at < ?`, n)
	if err != nil {
		return 0, mapErr(op, err)
	}
	deleted, err := res.RowsAffected()
	return deleted, mapErr(op, err)
}
