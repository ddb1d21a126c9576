// Package sqlstore implements store.Store on a SQL database through
// database/sql, on two drivers: SQLite (modernc.org/sqlite: pure Go, no
// cgo), the KMS default, one process and one file with no setup; and
// PostgreSQL (pgx), for several KMS replicas sharing one database behind a
// load balancer. Start with OpenSQLite or OpenPostgres.
//
// Every query is written once, with ? placeholders, in the SQL both
// databases run. A small dialect (see dialect.go) supplies what differs:
// placeholder syntax, row locks, the locks that serialize the audit log and
// the revocation feed, error classification, and a catalog lookup for
// migrations. The schema is internal/store/migrations on both, applied when
// a store opens; storetest is the contract both pass.
//
// Concurrency on SQLite: the database runs in WAL mode with
// synchronous=FULL, so every write that returned nil survives a crash or
// kill -9. All writes go through one connection and every write
// transaction starts with BEGIN IMMEDIATE, so writes are serialized within
// the process and, through SQLite's file lock and busy timeout, across
// processes sharing the file. Reads use a separate pool of query-only
// connections and never block writes.
//
// Concurrency on PostgreSQL, across replicas: every connection runs at READ
// COMMITTED, whatever the server, database or role default is, and each
// method makes its own guarantee explicit instead of relying on
// SERIALIZABLE (whose serialization failures every caller would have to
// retry):
//
//   - ConsumeOneTime and EnrollInstance consume a secret with one
//     conditional UPDATE: concurrent callers queue on the row lock and
//     re-check the condition after the winner commits, so exactly one of
//     them, on any replica, gets the secret.
//   - AppendAudit and the revocation feed number their rows MAX(seq)+1
//     under a transaction-scoped advisory lock (one per table), held until
//     commit: seqs are gap-free and commit in order.
//   - AddMasterKey, AddKeyVersion, SetMinDecryptionVersion and
//     RenewInstance lock the row they check (FOR UPDATE) until commit.
//   - PutSettingIfAbsent and PutAuditCheckpoint are INSERT … ON CONFLICT
//     DO NOTHING, then a read: a racing replica waits for the winner's
//     commit and reads its value.
//   - Reseal locks the tables holding sealed material in EXCLUSIVE mode.
//   - Opening migrates under an advisory lock, so replicas starting
//     together migrate once.
//
// The advisory locks use the two-key form with key1 = 0x64636161 ("dcaa");
// another application sharing the database must not use it.
//
// Transactions: InTx runs a function in one transaction, through a store.Tx
// whose methods all commit or roll back together. Each writing method
// inside keeps its own all-or-nothing promise (it runs under a savepoint),
// so a method that fails leaves the transaction usable.
//
// Times are stored as Unix nanoseconds and come back in UTC; a time outside
// the years 1678 to 2262 (the zero time.Time among them) is refused with an
// error. An empty byte slice reads back as nil.
//
// Errors: store.ErrNotFound, store.ErrExists, store.ErrConflict, ErrUsed and
// ErrExpired as documented on store. store.ErrUnavailable wraps what means
// the database cannot serve now: on SQLite I/O failures, a full disk, a
// read-only file and a lock still held after the busy timeout; on
// PostgreSQL a server that cannot be reached or went away, a shutdown, a
// full disk, a read-only server or transaction and other transient server
// conditions (see postgresDialect.classify). The driver's error stays
// wrapped for logs.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dcaas/dcaas/internal/store"
)

// DB is a store.Store on SQLite or PostgreSQL, made by OpenSQLite,
// OpenSQLiteReadOnly or OpenPostgres. Its methods are safe for concurrent
// use; on PostgreSQL any number of DBs, in any number of processes, may
// share one database. Returned slices belong to the caller.
type DB struct {
	queries // on the database itself: tx is nil
	close   func() error
	group   *groupCommitter // SQLite: InTx calls share commits (group.go)
	path    string          // SQLite: the database file (absolute)
}

var _ store.Store = (*DB)(nil)

// queries implements every method of store.Tx, on the database or, inside
// InTx, on one transaction.
type queries struct {
	d  dialect
	w  *sql.DB // write transactions (SQLite: its one read-write connection)
	r  *sql.DB // reads outside a transaction (SQLite: query-only connections; PostgreSQL: w)
	tx *sql.Tx // the transaction InTx runs in, or nil
	// unsigned, with tx, are the audit records tx appended to sign at its
	// commit (audit.go).
	unsigned unsignedAudit
	// fence, shared by the DB and its transactions, holds the leases its
	// write transactions depend on (leases.go).
	fence *fence

	stmts  *stmtCache // SQLite: r's prepared statements
	wstmts *stmtCache // SQLite: w's prepared statements
}

var _ store.Tx = (*queries)(nil)

// Close closes the database. It is safe to call more than once.
func (db *DB) Close() error {
	if db.group != nil {
		db.group.close()
	}
	return errors.Join(db.stmts.close(), db.wstmts.close(), db.close())
}

// InTx implements store.Store. It runs fn in one write transaction (on
// SQLite, BEGIN IMMEDIATE on the write connection; on PostgreSQL, READ
// COMMITTED) and commits if fn returns nil. What fn does through tx
// commits or rolls back together; fn's error is returned as it is. fn must
// not use db, only tx, and only from its own goroutine: on SQLite db waits
// for the connection tx holds. Locks that tx's methods take (row locks,
// the audit log's and the revocation feed's) are held until the
// transaction ends, so fn should append its audit record last; on
// PostgreSQL transactions that take the same locks in another order may
// deadlock, and one of them then fails with store.ErrUnavailable.
//
// On SQLite, calls that arrive while another commits share one
// transaction and one fsync (group commit, see group.go); each is answered
// after the commit, with its own function's error or the commit's.
func (db *DB) InTx(ctx context.Context, fn func(tx store.Tx) error) error {
	if db.group != nil {
		return db.group.inTx(ctx, fn)
	}
	var fnErr error
	err := db.begin(ctx, func(tx *sql.Tx) error {
		q := db.inTx(tx)
		if fnErr = fn(q); fnErr != nil {
			return fnErr
		}
		return q.signLastAudit(ctx)
	})
	if fnErr != nil {
		return fnErr
	}
	return db.mapErr("InTx", err)
}

// inTx returns the queries of InTx's function, in tx.
func (q *queries) inTx(tx *sql.Tx) *queries {
	return &queries{d: q.d, w: q.w, r: q.r, tx: tx, unsigned: unsignedAudit{}, fence: q.fence, wstmts: q.wstmts}
}

// begin runs fn in a new write transaction on w and commits if fn returns
// nil. Errors are returned unmapped.
func (q *queries) begin(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := q.w.BeginTx(ctx, q.d.txOptions())
	if err != nil {
		return err
	}
	defer tx.Rollback() // after Commit a no-op; on error or panic it undoes fn
	if err := q.fence.check(ctx, q.on(tx)); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	q.wstmts.prepareWanted(ctx)
	return nil
}

// savepoint is the one savepoint a method running inside InTx makes: a
// method never calls another, so savepoints do not nest.
const savepoint = "dcaas_method"

// write runs fn all or nothing: in a write transaction of its own, or,
// inside InTx, under a savepoint of the transaction (rolled back to if fn
// fails, so that the transaction stays usable). fn must use only c. Errors
// are mapped with op.
func (q *queries) write(ctx context.Context, op string, fn func(c conn) error) error {
	if q.tx == nil {
		return q.mapErr(op, q.begin(ctx, func(tx *sql.Tx) error { return fn(q.on(tx)) }))
	}
	if _, err := q.tx.ExecContext(ctx, "SAVEPOINT "+savepoint); err != nil {
		return q.mapErr(op, err)
	}
	if err := fn(q.on(q.tx)); err != nil {
		// ROLLBACK TO keeps the savepoint; RELEASE drops it.
		_, rbErr := q.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+savepoint)
		if rbErr == nil {
			_, rbErr = q.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+savepoint)
		}
		if rbErr != nil {
			err = errors.Join(err, rbErr)
		}
		return q.mapErr(op, err)
	}
	_, err := q.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+savepoint)
	return q.mapErr(op, err)
}

// exec runs one writing statement on its own: outside a transaction it
// commits by itself, inside InTx it is write's. Errors are mapped with op.
func (q *queries) exec(ctx context.Context, op, query string, args ...any) (sql.Result, error) {
	if q.tx != nil {
		var res sql.Result
		err := q.write(ctx, op, func(c conn) error {
			var err error
			res, err = c.exec(ctx, query, args...)
			return err
		})
		return res, err
	}
	if len(q.fence.list()) > 0 {
		// A fenced handle's writes all run behind the lease check.
		var res sql.Result
		err := q.begin(ctx, func(tx *sql.Tx) error {
			var err error
			res, err = q.on(tx).exec(ctx, query, args...)
			return err
		})
		return res, q.mapErr(op, err)
	}
	res, err := conn{d: q.d, q: q.w}.exec(ctx, query, args...)
	return res, q.mapErr(op, err)
}

// snapshot runs fn's reads on one consistent view of the database: the
// transaction inside InTx, else a read-only transaction on the read pool
// (SQLite: one WAL snapshot from its first read; PostgreSQL: REPEATABLE
// READ, one snapshot for every statement).
func (q *queries) snapshot(ctx context.Context, fn func(c conn) error) error {
	if q.tx != nil {
		return fn(q.on(q.tx))
	}
	tx, err := q.r.BeginTx(ctx, q.d.snapshotOptions())
	if err != nil {
		return err
	}
	defer tx.Rollback() // read only: nothing to commit
	return fn(conn{d: q.d, q: tx})
}

// read is where reads go: the transaction, or the read pool.
func (q *queries) read() conn {
	if q.tx != nil {
		return q.on(q.tx)
	}
	return conn{d: q.d, q: q.r, stmts: q.stmts}
}

// on is a conn on tx, a transaction on w.
func (q *queries) on(tx *sql.Tx) conn {
	return conn{d: q.d, q: tx, stmts: q.wstmts, tx: tx}
}

// mapErr wraps err in the store error it means, keeping err wrapped too,
// and prefixes the driver's name and op: sql.ErrNoRows is
// store.ErrNotFound, an error that carries a store error keeps it, and the
// dialect classifies the driver's errors.
func (q *queries) mapErr(op string, err error) error {
	return mapErr(q.d, op, err)
}

func mapErr(d dialect, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case isStoreErr(err):
		return fmt.Errorf("%s: %s: %w", d.name(), op, err)
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s: %s: %w: %w", d.name(), op, store.ErrNotFound, err)
	}
	if se := d.classify(err); se != nil {
		return fmt.Errorf("%s: %s: %w: %w", d.name(), op, se, err)
	}
	return fmt.Errorf("%s: %s: %w", d.name(), op, err)
}

func isStoreErr(err error) bool {
	for _, target := range []error{
		store.ErrNotFound, store.ErrExists, store.ErrConflict,
		store.ErrUsed, store.ErrExpired, store.ErrUnavailable,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
