package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dcaas/dcaas/internal/store"
)

// AppendAudit implements store.Audit. build runs inside the write
// transaction, so appends are totally ordered; it must not call db (that
// would wait for the transaction it runs in) and must return a record whose
// Seq is the seq it was given. An error from build is returned wrapped, and
// nothing is stored.
func (db *DB) AppendAudit(ctx context.Context, build func(seq int64, prevHash []byte) (store.AuditRecord, error)) (store.AuditRecord, error) {
	const op = "AppendAudit"
	var rec store.AuditRecord
	err := db.write(ctx, op, func(tx *sql.Tx) error {
		var last int64
		var prev []byte
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&last, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if rec, err = build(last+1, prev); err != nil {
			return fmt.Errorf("build: %w", err)
		}
		if rec.Seq != last+1 {
			return fmt.Errorf("build returned seq %d, want %d", rec.Seq, last+1)
		}
		at, err := nanos("Time", rec.Time)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO audit (seq, logged_at, caller, role, action, tenant, key_id, outcome, code, prev_hash, hash)
			 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
	rows, err := db.r.QueryContext(ctx,
		`SELECT seq, logged_at, caller, role, action, tenant, key_id, outcome, code, prev_hash, hash
		 FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
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
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	return recs, nil
}
