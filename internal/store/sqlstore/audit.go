package sqlstore

import (
	"bytes"
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
// returned wrapped, and nothing is stored. With sign, the record is signed
// now outside InTx, and inside InTx when the transaction commits, if it is
// then the log's last record (signLastAudit).
func (q *queries) AppendAudit(ctx context.Context, build func(seq int64, prevHash []byte) (store.AuditRecord, error), sign store.AuditSigner) (store.AuditRecord, error) {
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
		switch {
		case rec.Seq != last+1:
			return fmt.Errorf("build returned seq %d, want %d", rec.Seq, last+1)
		case sign != nil && rec.Sig != nil:
			return fmt.Errorf("build returned a signed record %d and a signer", rec.Seq)
		case sign != nil && q.tx == nil:
			rec.Sig = sign(rec.Seq, rec.Hash) // the only record of its transaction
		}
		at, err := nanos("Time", rec.Time)
		if err != nil {
			return err
		}
		_, err = c.exec(ctx,
			`INSERT INTO audit (seq, logged_at, caller, role, action, tenant, key_id, outcome, code, prev_hash, hash, sig)
			 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			rec.Seq, at, rec.Caller, rec.Role, rec.Action, rec.Tenant, rec.KeyID, rec.Outcome, rec.Code,
			rec.PrevHash, notNull(rec.Hash), rec.Sig)
		if err == nil && sign != nil && q.tx != nil {
			q.unsigned.add(rec.Seq, rec.Hash, sign)
		}
		return err
	})
	if err != nil {
		return store.AuditRecord{}, err
	}
	return rec, nil
}

// unsignedAudit holds the records a transaction appended with a signer,
// by seq: a seq built again after a savepoint was rolled back replaces
// the record built before. Only one goroutine uses a transaction.
type unsignedAudit map[int64]pendingAudit

type pendingAudit struct {
	hash []byte
	sign store.AuditSigner
}

func (u unsignedAudit) add(seq int64, hash []byte, sign store.AuditSigner) {
	u[seq] = pendingAudit{hash: hash, sign: sign}
}

// signLastAudit signs the log's last record as the transaction about to
// commit holds it, if the transaction built it (same seq, same hash) and
// it is unsigned: the signature covers, through the chain, every record
// the transaction appended. A record the transaction appended whose
// savepoint was rolled back is gone from the log and is not signed; a
// row the transaction did not build is never signed, whatever it holds.
// It runs in the transaction, before COMMIT, still holding lockAudit.
func (q *queries) signLastAudit(ctx context.Context) error {
	if len(q.unsigned) == 0 {
		return nil
	}
	c := q.on(q.tx)
	var seq int64
	var hash, sig []byte
	err := c.queryRow(ctx, `SELECT seq, hash, sig FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash, &sig)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the last audit record to sign it: %w", err)
	}
	p, ok := q.unsigned[seq]
	if !ok || len(sig) > 0 || !bytes.Equal(p.hash, hash) {
		return nil
	}
	if _, err := c.exec(ctx, `UPDATE audit SET sig = ? WHERE seq = ?`, p.sign(seq, hash), seq); err != nil {
		return fmt.Errorf("signing audit record %d: %w", seq, err)
	}
	return nil
}

// auditColumns are the columns scanAudit reads, in its order.
const auditColumns = `seq, logged_at, caller, role, action, tenant, key_id, outcome, code, prev_hash, hash, sig`

// scanAudit reads one row of auditColumns.
func scanAudit(row scanner) (store.AuditRecord, error) {
	var r store.AuditRecord
	var at int64
	if err := row.Scan(&r.Seq, &at, &r.Caller, &r.Role, &r.Action, &r.Tenant, &r.KeyID,
		&r.Outcome, &r.Code, &r.PrevHash, &r.Hash, &r.Sig); err != nil {
		return r, err
	}
	r.Time = fromNanos(at)
	r.PrevHash = nilIfEmpty(r.PrevHash)
	r.Hash = nilIfEmpty(r.Hash)
	r.Sig = nilIfEmpty(r.Sig)
	return r, nil
}

// AuditAfter implements store.Audit. A limit below 1 returns no records. The
// caller owns the returned slice.
func (q *queries) AuditAfter(ctx context.Context, after int64, limit int) ([]store.AuditRecord, error) {
	const op = "AuditAfter"
	if limit < 1 {
		return nil, nil
	}
	recs, err := all(ctx, q, `SELECT `+auditColumns+` FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`, []any{after, limit}, scanAudit)
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	return recs, nil
}

// LastAudit implements store.Audit.
func (q *queries) LastAudit(ctx context.Context) (store.AuditRecord, error) {
	r, err := scanAudit(q.read().queryRow(ctx, `SELECT `+auditColumns+` FROM audit ORDER BY seq DESC LIMIT 1`))
	if err != nil {
		return store.AuditRecord{}, q.mapErr("LastAudit", err)
	}
	return r, nil
}

// PutAuditCheckpoint implements store.Audit. A checkpoint needs a Hash and
// a Sig.
func (q *queries) PutAuditCheckpoint(ctx context.Context, cp store.AuditCheckpoint) (store.AuditCheckpoint, error) {
	var stored store.AuditCheckpoint
	err := q.write(ctx, "PutAuditCheckpoint", func(c conn) error {
		if cp.Seq < 0 || len(cp.Hash) == 0 || len(cp.Sig) == 0 {
			return fmt.Errorf("checkpoint of seq %d with a %d-byte hash and a %d-byte signature", cp.Seq, len(cp.Hash), len(cp.Sig))
		}
		at, err := nanos("Time", cp.Time)
		if err != nil {
			return err
		}
		if _, err := c.exec(ctx,
			`INSERT INTO audit_checkpoints (seq, made_at, hash, sig) VALUES (?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING`,
			cp.Seq, at, cp.Hash, cp.Sig); err != nil {
			return err
		}
		stored, err = scanCheckpoint(c.queryRow(ctx, `SELECT seq, made_at, hash, sig FROM audit_checkpoints WHERE seq = ?`, cp.Seq))
		return err
	})
	if err != nil {
		return store.AuditCheckpoint{}, err
	}
	return stored, nil
}

// LatestAuditCheckpoint implements store.Audit.
func (q *queries) LatestAuditCheckpoint(ctx context.Context) (store.AuditCheckpoint, error) {
	cp, err := scanCheckpoint(q.read().queryRow(ctx, `SELECT seq, made_at, hash, sig FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`))
	if err != nil {
		return store.AuditCheckpoint{}, q.mapErr("LatestAuditCheckpoint", err)
	}
	return cp, nil
}

func scanCheckpoint(row interface{ Scan(...any) error }) (store.AuditCheckpoint, error) {
	var cp store.AuditCheckpoint
	var at int64
	if err := row.Scan(&cp.Seq, &at, &cp.Hash, &cp.Sig); err != nil {
		return cp, err
	}
	cp.Time = fromNanos(at)
	return cp, nil
}

// DeleteAuditThrough implements store.Audit. It does not take lockAudit:
// appends read and write the log's end, a prune deletes below a start the
// KMS keeps behind the end, so a long prune runs as many short batches
// beside the appends.
func (q *queries) DeleteAuditThrough(ctx context.Context, seq int64, limit int) (int64, error) {
	if limit < 1 {
		return 0, nil
	}
	var n int64
	err := q.write(ctx, "DeleteAuditThrough", func(c conn) error {
		var err error
		if n, err = c.changed(ctx, `DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE seq <= ? ORDER BY seq LIMIT ?)`, seq, limit); err != nil {
			return err
		}
		_, err = c.exec(ctx, `DELETE FROM audit_checkpoints WHERE seq < ?`, seq)
		return err
	})
	return n, err
}
