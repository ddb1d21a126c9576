// Package audittest does to a KMS database what someone with write access
// to it, and without the audit key, can do to the audit log: open the
// SQLite file or the PostgreSQL database directly with SQL, rewrite,
// delete, insert, reorder or truncate records, recompute every later hash
// with the published encoding (docs/formats.md §4, implemented here again,
// not borrowed from internal/audit), strip signatures, forge checkpoints.
// Tests of the verifier (audit.Verify, dcaas audit verify) use it; start
// with OpenSQLite or OpenPostgres and Attacks.
package audittest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"fmt"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// DB is a raw connection to a KMS database, bypassing the KMS and its
// store entirely.
type DB struct {
	*sql.DB
	postgres bool
}

// OpenSQLite opens the KMS database file at path (DIR/kms.db) for writing.
// The KMS should be stopped.
func OpenSQLite(path string) (*DB, error) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return nil, err
	}
	return &DB{DB: db}, nil
}

// OpenPostgres connects to the KMS's PostgreSQL database.
func OpenPostgres(dsn string) (*DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	return &DB{DB: db, postgres: true}, nil
}

// bind rewrites ? placeholders for PostgreSQL.
func (db *DB) bind(q string) string {
	if !db.postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Exec runs one statement with ? placeholders and returns the rows it
// changed.
func (db *DB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := db.ExecContext(ctx, db.bind(q), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Record is one row of the audit table.
type Record struct {
	Seq                                                int64
	LoggedAt                                           int64 // Unix nanoseconds
	Caller, Role, Action, Tenant, KeyID, Outcome, Code string
	PrevHash, Hash, Sig                                []byte
}

// Records reads the whole audit table, by seq.
func (db *DB) Records(ctx context.Context) ([]Record, error) {
	rows, err := db.QueryContext(ctx, `SELECT seq, logged_at, caller, role, action, tenant, key_id, outcome, code, prev_hash, hash, sig FROM audit ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		if err := rows.Scan(&r.Seq, &r.LoggedAt, &r.Caller, &r.Role, &r.Action, &r.Tenant, &r.KeyID, &r.Outcome, &r.Code, &r.PrevHash, &r.Hash, &r.Sig); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Replace makes recs the whole audit table, in one transaction.
func (db *DB) Replace(ctx context.Context, recs []Record) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM audit`); err != nil {
		return err
	}
	q := db.bind(`INSERT INTO audit (seq, logged_at, caller, role, action, tenant, key_id, outcome, code, prev_hash, hash, sig) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	for _, r := range recs {
		var sig any
		if r.Sig != nil {
			sig = r.Sig
		}
		if _, err := tx.ExecContext(ctx, q, r.Seq, r.LoggedAt, r.Caller, r.Role, r.Action, r.Tenant, r.KeyID, r.Outcome, r.Code, r.PrevHash, r.Hash, sig); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Hash is the record hash of docs/formats.md §4, as anyone can compute it.
func Hash(r Record) []byte {
	field := func(buf, b []byte) []byte {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
		return append(buf, b...)
	}
	buf := field(nil, []byte("dcaas/v1 audit"))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.Seq))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.LoggedAt))
	for _, s := range []string{r.Caller, r.Role, r.Action, r.Tenant, r.KeyID, r.Outcome, r.Code} {
		buf = field(buf, []byte(s))
	}
	buf = field(buf, r.PrevHash)
	sum := sha256.Sum256(buf)
	return sum[:]
}

// Rechain recomputes the previous hash and hash of recs[from:], so that
// the chain holds again; signatures stay as they were (the attacker
// cannot make new ones).
func Rechain(recs []Record, from int) []Record {
	for i := from; i < len(recs); i++ {
		if i == 0 {
			recs[i].PrevHash = make([]byte, sha256.Size)
		} else {
			recs[i].PrevHash = recs[i-1].Hash
		}
		recs[i].Hash = Hash(recs[i])
	}
	return recs
}

// Renumber numbers recs 1, 2, 3 … again.
func Renumber(recs []Record) []Record {
	for i := range recs {
		recs[i].Seq = int64(i + 1)
	}
	return recs
}

// Attack is one way to tamper with the log in place, around the record
// recs[i] (not the first nor the last). A verifier must name record
// Broken(i) as the first broken one.
type Attack struct {
	Name   string
	Apply  func(recs []Record, i int) []Record
	Broken func(i int) int64
}

func at(i int) int64 { return int64(i + 1) }

// Attacks are the ways to tamper with records in the middle of the log
// that every verifier must catch, naming the first record changed.
var Attacks = []Attack{
	{"action changed", func(rs []Record, i int) []Record { rs[i].Action = "tenant.delete"; return rs }, at},
	{"outcome changed, hash recomputed", func(rs []Record, i int) []Record {
		rs[i].Outcome = "denied"
		rs[i].Hash = Hash(rs[i])
		return rs
	}, at},
	{"rewritten, every later hash recomputed", func(rs []Record, i int) []Record {
		rs[i].Caller, rs[i].Outcome = "CN=someone-else", "denied"
		return Rechain(rs, i)
	}, at},
	{"deleted", func(rs []Record, i int) []Record { return append(rs[:i:i], rs[i+1:]...) }, at},
	{"deleted, renumbered, every later hash recomputed", func(rs []Record, i int) []Record {
		return Rechain(Renumber(append(rs[:i:i], rs[i+1:]...)), i)
	}, at},
	{"reordered with the next, renumbered, re-chained", func(rs []Record, i int) []Record {
		rs[i], rs[i+1] = rs[i+1], rs[i]
		return Rechain(Renumber(rs), i)
	}, at},
	{"inserted, renumbered, re-chained", func(rs []Record, i int) []Record {
		forged := rs[i]
		forged.Action, forged.KeyID = "datakey.disable", "key_forged"
		rs = append(rs[:i:i], append([]Record{forged}, rs[i:]...)...)
		return Rechain(Renumber(rs), i)
	}, at},
	{"replaced by a copy of the one before, signature and all, re-chained", func(rs []Record, i int) []Record {
		seq := rs[i].Seq
		rs[i] = rs[i-1]
		rs[i].Seq = seq
		return Rechain(rs, i)
	}, at},
	{"signature moved from the next record", func(rs []Record, i int) []Record { rs[i].Sig = rs[i+1].Sig; return rs }, at},
	{"signatures stripped from here on", func(rs []Record, i int) []Record {
		for j := i; j < len(rs); j++ {
			rs[j].Sig = nil
		}
		return rs
	}, at},
}

// Truncate removes the records after record after, and with checkpoints
// the stored checkpoints that cover them too (as a careful attacker
// would).
func (db *DB) Truncate(ctx context.Context, after int64, checkpoints bool) error {
	if _, err := db.Exec(ctx, `DELETE FROM audit WHERE seq > ?`, after); err != nil {
		return err
	}
	if checkpoints {
		_, err := db.Exec(ctx, `DELETE FROM audit_checkpoints WHERE seq > ?`, after)
		return err
	}
	return nil
}

// StripSignatures removes every record's signature, leaving hashes that
// verify: the log then looks written before the audit key existed.
func (db *DB) StripSignatures(ctx context.Context) error {
	_, err := db.Exec(ctx, `UPDATE audit SET sig = NULL`)
	return err
}

// ForgeCheckpoint moves the latest stored checkpoint one record further
// (its signature unchanged).
func (db *DB) ForgeCheckpoint(ctx context.Context) error {
	n, err := db.Exec(ctx, `UPDATE audit_checkpoints SET seq = seq + 1 WHERE seq = (SELECT MAX(seq) FROM audit_checkpoints)`)
	if err == nil && n != 1 {
		err = fmt.Errorf("forging a checkpoint changed %d rows, want 1", n)
	}
	return err
}
