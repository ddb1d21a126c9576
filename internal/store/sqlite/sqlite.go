// Package sqlite implements store.Store on an embedded SQLite database
// (modernc.org/sqlite: pure Go, no cgo). It is the KMS default: one process,
// one file, no setup. Start with Open.
//
// Durability and concurrency: the database runs in WAL mode with
// synchronous=FULL, so every write that returned nil survives a crash or
// kill -9. All writes go through one connection and every write transaction
// starts with BEGIN IMMEDIATE, so writes are serialized within the process
// and, through SQLite's file lock and busy timeout, across processes sharing
// the file. Reads use a separate pool of query-only connections and never
// block writes.
//
// Times are stored as Unix nanoseconds and come back in UTC; a time outside
// the years 1678 to 2262 (the zero time.Time among them) is refused with an
// error. An empty byte slice reads back as nil.
//
// Errors: store.ErrNotFound, store.ErrExists, store.ErrConflict, ErrUsed and
// ErrExpired as documented on store; I/O failures, a full disk, a read-only
// file and a lock still held after the busy timeout wrap
// store.ErrUnavailable. The SQLite error stays wrapped for logs.
package sqlite

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

// DB is a SQLite-backed store.Store, made by Open. Its methods are safe for
// concurrent use. Returned slices belong to the caller.
type DB struct {
	w *sql.DB // one connection; every write goes through it
	r *sql.DB // query-only connections for reads
}

var _ store.Store = (*DB)(nil)

// Open opens the database file at path, creating it with mode 0600 if it
// does not exist, and applies any pending migrations. The caller closes the
// returned DB.
func Open(ctx context.Context, path string) (*DB, error) {
	return open(ctx, path, false)
}

// open is Open; readOnly opens the file with SQLite's mode=ro, which tests
// use to make every write fail as on a read-only file system.
// OpenReadOnly opens an existing database for reading only (for tools like
// `dcaas audit verify` that must not change the evidence they check); the
// file is never created, and writes fail with store.ErrUnavailable.
func OpenReadOnly(ctx context.Context, path string) (*DB, error) { return open(ctx, path, true) }

func open(ctx context.Context, path string, readOnly bool) (*DB, error) {
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

	w, err := sql.Open("sqlite", dsn(abs, readOnly, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	if err := migrateRetryingBusy(ctx, w); err != nil {
		w.Close()
		return nil, err
	}

	r, err := sql.Open("sqlite", dsn(abs, readOnly, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, mapErr("Open", err)
	}
	return &DB{w: w, r: r}, nil
}

// dsn returns the modernc.org/sqlite data source name for the file at the
// absolute path abs. It is a file: URI, so that a path holding '?', '#' or
// '%' is escaped rather than cut, and so that SQLite's own mode=ro applies.
// The underscore parameters are the driver's: it runs them as PRAGMAs on
// every new connection (busy_timeout first), and _txlock=immediate makes
// every non-read-only transaction BEGIN IMMEDIATE.
func dsn(abs string, readOnly, reader bool) string {
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

// Close closes the database. It is safe to call more than once.
func (db *DB) Close() error {
	return errors.Join(db.r.Close(), db.w.Close())
}

// write runs fn in one write transaction (BEGIN IMMEDIATE on the single
// write connection) and commits if fn returns nil. fn must use only tx:
// anything else waiting for the write connection would deadlock. Errors are
// mapped with op.
func (db *DB) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(op, err)
	}
	defer tx.Rollback() // after Commit a no-op; on error or panic it undoes fn
	if err := fn(tx); err != nil {
		return mapErr(op, err)
	}
	if err := tx.Commit(); err != nil {
		return mapErr(op, err)
	}
	return nil
}

// mapErr wraps err, as returned by database/sql or the driver, in the store
// error it means, keeping err wrapped too: sql.ErrNoRows is
// store.ErrNotFound; a unique or primary key violation store.ErrExists;
// I/O errors, a full disk, a read-only database, a file that does not
// open and a lock that outlasted the busy timeout store.ErrUnavailable.
// An error that already carries a store error keeps it.
func mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case isStoreErr(err):
		return fmt.Errorf("sqlite: %s: %w", op, err)
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlite: %s: %w", op, store.ErrNotFound)
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	switch code := se.Code(); {
	case code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("sqlite: %s: %w: %w", op, store.ErrExists, err)
	case unavailable[code&0xff]:
		return fmt.Errorf("sqlite: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
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

// unavailable holds the primary result codes (the low byte of the extended
// code Error.Code returns; the driver turns extended codes on) that mean the
// database cannot serve now, as opposed to a bad request or a bug.
var unavailable = map[int]bool{
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

// migrateRetryingBusy runs migrate, retrying while another process that is
// opening the same new database holds a lock SQLite will not wait for
// (switching a fresh file to WAL mode, or a read transaction being upgraded,
// answers SQLITE_BUSY at once instead of using the busy timeout).
func migrateRetryingBusy(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := migrate(ctx, db)
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
