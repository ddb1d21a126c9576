package sqlstore

import (
	"context"
	"database/sql"
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
}

func (c conn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return c.q.ExecContext(ctx, c.d.rebind(query), args...)
}

func (c conn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return c.q.QueryContext(ctx, c.d.rebind(query), args...)
}

func (c conn) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return c.q.QueryRowContext(ctx, c.d.rebind(query), args...)
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
