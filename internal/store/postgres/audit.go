package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/dcaas/dcaas/internal/store"
)

// AppendAudit implements store.Audit. The transaction takes the audit
// log's advisory lock before it reads the last record and holds it until
// commit, so appends from every replica are totally ordered and seqs have
// no gaps. build runs inside that transaction: it must not call db (which
// would wait for the lock its own caller holds) and must return a record
// whose Seq is the seq it was given. An error from build is returned
// wrapped, and nothing is stored.
func (db *DB) AppendAudit(ctx context.Context, build func(seq int64, prevHash []byte) (store.AuditRecord, error)) (store.AuditRecord, error) {
	const op = "AppendAudit"
	var rec store.AuditRecord
	err := db.tx(ctx, op, func(tx pgx.Tx) error {
		if err := lock(ctx, tx, lockAudit); err != nil {
			return err
		}
		var last int64
		var prev []byte
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&last, &prev)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if rec, err = build(last+1, nilIfEmpty(prev)); err != nil {
			return fmt.Errorf("build: %w", err)
		}
		if rec.Seq != last+1 {
			return fmt.Errorf("build returned seq %d, want %d", rec.Seq, last+1)
		}
		at, err := nanos("Time", rec.Time)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx,
			`INSERT INTO audit (seq, logged_at, caller, role, action, tenant, key_id, outcome, code, prev_hash, hash)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			rec.Seq, at, rec.Caller, rec.Role, rec.Action, rec.Tenant, rec.KeyID, rec.Outcome, rec.Code,
			rec.PrevHash, notNull(rec.Hash))
		return err
	})
	if err != nil {
		return store.AuditRecord{}, err
	}
	return rec, nil
}

// AuditAfter implements store.Audit. A limit below 1 returns no records. The
// caller owns the returned slice.
func (db *DB) AuditAfter(ctx context.Context, after int64, limit int) ([]store.AuditRecord, error) {
	const op = "AuditAfter"
	if limit < 1 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx,
		`SELECT seq, logged_at, caller, role, action, tenant, key_id, outcome, code, prev_hash, hash
		 FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	var recs []store.AuditRecord
	for rows.Next() {
		var r store.AuditRecord
		var at int64
		if err := rows.Scan(&r.Seq, &at, &r.Caller, &r.Role, &r.Action, &r.Tenant, &r.KeyID,
			&r.Outcome, &r.Code, &r.PrevHash, &r.Hash); err != nil {
			return nil, mapErr(op, err)
		}
		r.Time = fromNanos(at)
		r.PrevHash = nilIfEmpty(r.PrevHash)
		r.Hash = nilIfEmpty(r.Hash)
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	return recs, nil
}
