package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dcaas/dcaas/internal/store"
)

// PutOneTime implements store.OneTime. An empty Hash is refused: it would
// match a caller that presents no secret.
func (db *DB) PutOneTime(ctx context.Context, s store.OneTimeSecret) error {
	const op = "PutOneTime"
	if len(s.Hash) == 0 {
		return fmt.Errorf("postgres: %s: empty hash", op)
	}
	created, err := nanos("CreatedAt", s.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	expires, err := nanos("ExpiresAt", s.ExpiresAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	used, err := nullNanos("UsedAt", s.UsedAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	_, err = db.pool.Exec(ctx,
		`INSERT INTO one_time (hash, kind, tenant, subject, payload, created_by, created_at, expires_at, used_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		s.Hash, s.Kind, s.Tenant, s.Subject, s.Payload, s.CreatedBy, created, expires, used)
	return mapErr(op, err)
}

// ConsumeOneTime implements store.OneTime with one conditional UPDATE that
// marks the secret used only if it has this kind, is unused and unexpired.
// Callers racing for one secret, through any connection of any replica,
// queue on its row lock; when the first commits, PostgreSQL re-checks the
// others' condition against the committed row, which no longer matches:
// exactly one caller gets the secret. Only when the UPDATE matched nothing
// does a read find out why, changing nothing.
func (db *DB) ConsumeOneTime(ctx context.Context, kind string, hash []byte, now time.Time) (store.OneTimeSecret, error) {
	const op = "ConsumeOneTime"
	n, err := nanos("now", now)
	if err != nil {
		return store.OneTimeSecret{}, fmt.Errorf("postgres: %s: %w", op, err)
	}
	if len(hash) == 0 {
		return store.OneTimeSecret{}, fmt.Errorf("postgres: %s: empty hash: %w", op, store.ErrNotFound)
	}
	var s store.OneTimeSecret
	var created, expires int64
	var used *int64
	err = db.pool.QueryRow(ctx,
		`UPDATE one_time SET used_at = $1
		 WHERE hash = $2 AND kind = $3 AND used_at IS NULL AND expires_at > $1
		 RETURNING hash, kind, tenant, subject, payload, created_by, created_at, expires_at, used_at`,
		n, hash, kind).
		Scan(&s.Hash, &s.Kind, &s.Tenant, &s.Subject, &s.Payload, &s.CreatedBy, &created, &expires, &used)
	if errors.Is(err, pgx.ErrNoRows) {
		err = db.whyNotConsumed(ctx, kind, hash, n)
	}
	if err != nil {
		return store.OneTimeSecret{}, mapErr(op, err)
	}
	s.Payload = nilIfEmpty(s.Payload)
	s.CreatedAt = fromNanos(created)
	s.ExpiresAt = fromNanos(expires)
	s.UsedAt = fromNullNanos(used)
	return s, nil
}

// whyNotConsumed classifies a secret ConsumeOneTime did not mark. Its
// snapshot is taken after the UPDATE's, so it sees a racing winner's commit.
func (db *DB) whyNotConsumed(ctx context.Context, kind string, hash []byte, now int64) error {
	var gotKind string
	var expires int64
	var used *int64
	err := db.pool.QueryRow(ctx,
		`SELECT kind, expires_at, used_at FROM one_time WHERE hash = $1`, hash).
		Scan(&gotKind, &expires, &used)
	switch {
	case err != nil:
		return err // pgx.ErrNoRows becomes store.ErrNotFound
	case gotKind != kind:
		return store.ErrNotFound
	case used != nil:
		return store.ErrUsed
	case now >= expires:
		return store.ErrExpired
	}
	// Unused and unexpired now: the UPDATE ran before a concurrent
	// PutOneTime of the same hash committed.
	return fmt.Errorf("one-time secret neither consumed nor refused: %w", store.ErrNotFound)
}

// DeleteExpiredOneTime implements store.OneTime: it removes secrets, used
// or not, whose ExpiresAt is before cutoff, and returns how many.
func (db *DB) DeleteExpiredOneTime(ctx context.Context, cutoff time.Time) (int64, error) {
	const op = "DeleteExpiredOneTime"
	n, err := nanos("cutoff", cutoff)
	if err != nil {
		return 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	tag, err := db.pool.Exec(ctx, `DELETE FROM one_time WHERE expires_at < $1`, n)
	if err != nil {
		return 0, mapErr(op, err)
	}
	return tag.RowsAffected(), nil
}
