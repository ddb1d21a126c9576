package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dcaas/dcaas/internal/store"
)

// AppendAudit implements store.Audit. The write transaction takes
// lockAudit before it reads the last record and holds it until it ends
// (on SQLite every write transaction is the only writer anyway), so
// appends from every process and replica are totally ordered and seqs have
// no gaps. build runs inside that transaction: it must not call the store
// (which would wait for the lock its own caller holds) and must return a
// record whose Seq is the seq it was given. An error from build is
// returned wrapped, and nothing is stored.
func (q *queries) AppendAudit(ctx context.Context, build func(seq int64, prevHash []byte) (store.AuditRecord, error)) (store.AuditRecord, error) {
	var rec store.AuditRecord
	err := q.write(ctx, "AppendAudit", func(c conn) error {
		if err := c.lock(ctx, lockAudit); err != nil {
			return err
		}
		var last int64
		var prev []byte
		err := c.queryRow(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&last, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
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
		_, err = c.exec(ctx,
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
func (q *queries) AuditAfter(ctx context.Context, after int64, limit int) ([]store.AuditRecord, error) {
	const op = "AuditAfter"
	if limit < 1 {
		return nil, nil
	}
	rows, err := q.read().query(ctx,
		`SELECT seq, logged_at, caller, role, action, tenant, key_id, outcome, code, prev_hash, hash
		 FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	defer rows.Close()
	var recs []store.AuditRecord
	for rows.Next() {
		var r store.AuditRecord
		var at int64
		if err := rows.Scan(&r.Seq, &at, &r.Caller, &r.Role, &r.Action, &r.Tenant, &r.KeyID,
			&r.Outcome, &r.Code, &r.PrevHash, &r.Hash); err != nil {
			return nil, q.mapErr(op, err)
		}
		r.Time = fromNanos(at)
		r.PrevHash = nilIfEmpty(r.PrevHash)
		r.Hash = nilIfEmpty(r.Hash)
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, q.mapErr(op, err)
	}
	return recs, nil
}
