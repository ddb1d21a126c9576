package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/dcaas/dcaas/internal/store"
)

// dialect is what differs between the databases the store runs on. Every
// query is written once, with ? placeholders, in the SQL both run; the
// dialect supplies the rest. Implementations: sqliteDialect (sqlite.go),
// postgresDialect (postgres.go).
type dialect interface {
	// name is the driver's name, the prefix of the store's error messages.
	name() string
	// rebind rewrites query's ? placeholders into the driver's syntax.
	rebind(query string) string
	// txOptions are the options of every write transaction.
	txOptions() *sql.TxOptions
	// forUpdate is the clause a SELECT in a write transaction ends with to
	// keep the rows it reads locked until the transaction ends ("" where a
	// write transaction already excludes every other writer).
	forUpdate() string
	// keyShare is the clause a SELECT in a write transaction ends with to
	// make a concurrent DELETE of the rows it read wait for the
	// transaction's end, without blocking UPDATEs of non-key columns (""
	// where a write transaction already excludes every other writer).
	keyShare() string
	// byteOrder is the clause after a text column in ORDER BY that orders
	// it byte by byte whatever the database's collation ("" where that is
	// the default).
	byteOrder() string
	// snapshotOptions are the options of a read-only transaction whose
	// statements all see one snapshot.
	snapshotOptions() *sql.TxOptions
	// lock makes the write transaction c runs in the only writer of what
	// l guards, from now until the transaction ends.
	lock(ctx context.Context, c conn, l lockID) error
	// hasTable reports whether the table name exists.
	hasTable(ctx context.Context, c conn, name string) (bool, error)
	// classify returns the store error err, from the driver, means:
	// store.ErrExists, store.ErrUnavailable, or nil for neither.
	classify(err error) error
}

// lockID names what a write transaction can ask to be the only writer of.
type lockID int32

// On PostgreSQL the values of all but lockSealed are advisory lock keys:
// do not renumber them, or a replica running the previous release would
// not exclude this one.
const (
	lockMigrate     lockID = 1 // the schema, while migrating
	lockAudit       lockID = 2 // the audit log's last record
	lockRevocations lockID = 3 // the revocation feed's last event
	lockSealed      lockID = 4 // every table holding sealed material (Reseal)
	lockLeases      lockID = 5 // kms_leases and seal_migration (leases.go)
)

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// conn runs queries written with ? placeholders on a database or inside a
// transaction, in the dialect's syntax.
type conn struct {
	d dialect
	q querier
	// stmts, if set, keeps statements prepared (SQLite): the read pool's
	// when q is that pool, the write connection's when tx, q, is a
	// transaction on it.
	stmts *stmtCache
	tx    *sql.Tx
}

func (c conn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	query = c.d.rebind(query)
	if st := c.prepared(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return c.q.ExecContext(ctx, query, args...)
}

func (c conn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	query = c.d.rebind(query)
	if st := c.prepared(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return c.q.QueryContext(ctx, query, args...)
}

func (c conn) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	query = c.d.rebind(query)
	if st := c.prepared(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return c.q.QueryRowContext(ctx, query, args...)
}

// prepared returns query prepared for c, or nil to run it unprepared.
func (c conn) prepared(ctx context.Context, query string) *sql.Stmt {
	st := c.stmts.get(ctx, query, c.tx != nil)
	if st == nil || c.tx == nil {
		return st
	}
	// database/sql reuses the statement prepared on the transaction's
	// connection (the write connection, where stmts prepared it).
	return c.tx.StmtContext(ctx, st)
}

// stmtCache keeps the statements a pool runs prepared (SQLite, where
// parsing and planning a statement costs more than running a look-up by
// key; database/sql prepares a statement on each connection of the pool
// that runs it). It holds at most maxStmts; batch queries, whose text
// varies with the batch size, may not all fit and then run unprepared.
//
// SQLite's write pool has one connection, and a transaction holds it: a
// statement first met inside a transaction cannot be prepared on the
// pool then (that would wait for the connection forever). It runs
// unprepared, and is prepared after the transaction ends (prepareWanted).
type stmtCache struct {
	db *sql.DB

	mu     sync.RWMutex
	m      map[string]*sql.Stmt
	wanted map[string]bool
}

const maxStmts = 256

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, wanted: map[string]bool{}}
}

// get returns query prepared on c's pool, or nil. inTx says the caller's
// transaction holds a connection of the pool: a statement not prepared yet
// is noted for prepareWanted instead.
func (c *stmtCache) get(ctx context.Context, query string, inTx bool) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	st := c.m[query]
	c.mu.RUnlock()
	if st != nil {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.m[query]; st != nil || c.m == nil || len(c.m)+len(c.wanted) >= maxStmts {
		return st
	}
	if inTx {
		c.wanted[query] = true
		return nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil // the query runs unprepared and reports its error
	}
	c.m[query] = st
	return st
}

// prepareWanted prepares the statements get noted; the caller holds no
// connection of the pool. It prepares without holding c.mu: preparing
// waits for the connection, which a transaction that is looking up its
// statements may hold.
func (c *stmtCache) prepareWanted(ctx context.Context) {
	if c == nil {
		return
	}
	c.mu.Lock()
	queries := make([]string, 0, len(c.wanted))
	for query := range c.wanted {
		queries = append(queries, query)
	}
	clear(c.wanted)
	c.mu.Unlock()
	for _, query := range queries {
		st, err := c.db.PrepareContext(ctx, query)
		if err != nil {
			continue
		}
		c.mu.Lock()
		extra := c.m == nil || c.m[query] != nil // closed, or prepared meanwhile
		if !extra {
			c.m[query] = st
		}
		c.mu.Unlock()
		if extra {
			st.Close()
		}
	}
}

// close closes every statement.
func (c *stmtCache) close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, st := range c.m {
		errs = append(errs, st.Close())
	}
	c.m = nil
	return errors.Join(errs...)
}

// lock is the dialect's lock; c must be a write transaction.
func (c conn) lock(ctx context.Context, l lockID) error {
	return c.d.lock(ctx, c, l)
}

// changed runs query and returns how many rows it changed.
func (c conn) changed(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := c.exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// closing is a row's nullable time column that, once set, closes the row
// to the writes that check it: an instance's revoked_at, a ceremony's
// completed_at.
type closing struct {
	table, column string // the row is the table's row whose id is the id
	noun, state   string // for the error: "<noun> <id> is <state>"
}

var (
	instanceRevoked   = closing{table: `instances`, column: `revoked_at`, noun: "instance", state: "revoked"}
	ceremonyCompleted = closing{table: `key_ceremonies`, column: `completed_at`, noun: "ceremony", state: "complete"}
)

// lockOpen locks the row of id until the commit (FOR UPDATE on
// PostgreSQL), so writes that check it are serialized with the one that
// closes it, and returns store.ErrConflict when the row is closed
// (sql.ErrNoRows when there is no such row).
func (cl closing) lockOpen(ctx context.Context, c conn, id string) error {
	var closed sql.NullInt64
	if err := c.queryRow(ctx, `SELECT `+cl.column+` FROM `+cl.table+` WHERE id = ?`+c.d.forUpdate(), id).Scan(&closed); err != nil {
		return err
	}
	if closed.Valid {
		return fmt.Errorf("%s %s is %s: %w", cl.noun, id, cl.state, store.ErrConflict)
	}
	return nil
}
