package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/dcaas/dcaas/internal/store"
)

// busyTimeout is how long, in milliseconds, a statement waits for a lock
// another process holds before failing with store.ErrUnavailable.
const busyTimeout = "5000"

// OpenSQLite opens the SQLite database file at path, creating it with mode
// 0600 if it does not exist, and applies any pending migrations. The
// caller closes the returned DB.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	return openSQLite(ctx, path, false)
}

// OpenSQLiteReadOnly opens an existing SQLite database for reading only
// (for tools like `dcaas audit verify` that must not change the evidence
// they check, and for tests of a read-only file system): the file is never
// created, and writes fail with store.ErrUnavailable.
func OpenSQLiteReadOnly(ctx context.Context, path string) (*DB, error) {
	return openSQLite(ctx, path, true)
}

func openSQLite(ctx context.Context, path string, readOnly bool) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if !readOnly {
		// SQLite would create the file with mode 0644; create it first so
		// that it, and the -wal and -shm files SQLite derives from it,
		// are private.
		f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %w: %w", store.ErrUnavailable, err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("sqlite: %w: %w", store.ErrUnavailable, err)
		}
	}

	w, err := sql.Open("sqlite", sqliteDSN(abs, readOnly, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	r, err := sql.Open("sqlite", sqliteDSN(abs, readOnly, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	db := &DB{
		queries: queries{d: sqliteDialect{}, w: w, r: r, fence: &fence{}},
		close:   func() error { return errors.Join(r.Close(), w.Close()) },
	}
	if err := migrateRetryingBusy(ctx, &db.queries); err != nil {
		db.Close()
		return nil, err
	}
	if err := r.PingContext(ctx); err != nil {
		db.Close()
		return nil, db.mapErr("Open", err)
	}
	db.stmts, db.wstmts = newStmtCache(r), newStmtCache(w)
	if !readOnly {
		db.group = &groupCommitter{q: db.queries}
		db.path = abs
	}
	return db, nil
}

// sqliteDSN returns the modernc.org/sqlite data source name for the file
// at the absolute path abs. It is a file: URI, so that a path holding '?',
// '#' or '%' is escaped rather than cut, and so that SQLite's own mode=ro
// applies. The underscore parameters are the driver's: it runs them as
// PRAGMAs on every new connection (busy_timeout first), and
// _txlock=immediate makes every non-read-only transaction BEGIN IMMEDIATE.
func sqliteDSN(abs string, readOnly, reader bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", busyTimeout)
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "on")
	q.Set("_txlock", "immediate")
	if reader {
		q.Set("_query_only", "on")
	}
	if readOnly {
		q.Set("mode", "ro")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String()
}

// migrateRetryingBusy runs migrate, retrying while another process that is
// opening the same new database holds a lock SQLite will not wait for
// (switching a fresh file to WAL mode, or a read transaction being upgraded,
// answers SQLITE_BUSY at once instead of using the busy timeout).
func migrateRetryingBusy(ctx context.Context, q *queries) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := migrate(ctx, q)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// isBusy reports whether err is SQLITE_BUSY or SQLITE_LOCKED.
func isBusy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code() & 0xff
	return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
}

// sqliteDialect is SQLite's dialect. A write transaction begins IMMEDIATE
// on the one write connection and holds the database's write lock, which
// SQLite's file lock extends to other processes, until it ends: it is the
// only writer throughout, so it needs no row or advisory locks.
type sqliteDialect struct{}

func (sqliteDialect) name() string                             { return "sqlite" }
func (sqliteDialect) rebind(query string) string               { return query }
func (sqliteDialect) txOptions() *sql.TxOptions                { return nil }
func (sqliteDialect) forUpdate() string                        { return "" }
func (sqliteDialect) keyShare() string                         { return "" }
func (sqliteDialect) byteOrder() string                        { return "" } // BINARY is the default collation
func (sqliteDialect) snapshotOptions() *sql.TxOptions          { return &sql.TxOptions{ReadOnly: true} }
func (sqliteDialect) lock(context.Context, conn, lockID) error { return nil }

func (sqliteDialect) hasTable(ctx context.Context, c conn, name string) (bool, error) {
	var n int
	err := c.queryRow(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, name).Scan(&n)
	return n > 0, err
}

// classify: a unique or primary key violation is store.ErrExists; I/O
// errors, a full disk, a read-only database, a file that does not open and
// a lock that outlasted the busy timeout are store.ErrUnavailable.
func (sqliteDialect) classify(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return nil
	}
	switch code := se.Code(); {
	case code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return store.ErrExists
	case sqliteUnavailable[code&0xff]:
		return store.ErrUnavailable
	}
	return nil
}

// sqliteUnavailable holds the primary result codes (the low byte of the
// extended code Error.Code returns; the driver turns extended codes on)
// that mean the database cannot serve now, as opposed to a bad request or
// a bug.
var sqliteUnavailable = map[int]bool{
	sqlite3.SQLITE_PERM:     true,
	sqlite3.SQLITE_BUSY:     true,
	sqlite3.SQLITE_LOCKED:   true,
	sqlite3.SQLITE_NOMEM:    true,
	sqlite3.SQLITE_READONLY: true,
	sqlite3.SQLITE_IOERR:    true,
	sqlite3.SQLITE_FULL:     true,
	sqlite3.SQLITE_CANTOPEN: true,
	sqlite3.SQLITE_PROTOCOL: true,
}
