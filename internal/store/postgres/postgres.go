// Package postgres implements store.Store on PostgreSQL (through pgx), for
// several KMS replicas sharing one database behind a load balancer. Start
// with Open.
//
// The schema is the one the SQLite store uses (internal/store/migrations),
// applied by Open. Semantics are SQLite's too; storetest checks both.
//
// Concurrency across replicas: every connection runs at READ COMMITTED,
// whatever the server, database or role default is, and each method makes
// its own guarantee explicit instead of relying on SERIALIZABLE (whose
// serialization failures every caller would have to retry):
//
//   - ConsumeOneTime is one conditional UPDATE … RETURNING: concurrent
//     callers queue on the row lock and re-check the condition after the
//     winner commits, so exactly one of them, on any replica, gets the
//     secret.
//   - AppendAudit and the revocation feed number their rows MAX(seq)+1
//     under a transaction-scoped advisory lock (one per table), held until
//     commit: seqs are gap-free and commit in order.
//   - AddMasterKey and AddKeyVersion lock the tenant or key row (FOR
//     UPDATE) before checking the current version.
//   - PutSettingIfAbsent is INSERT … ON CONFLICT DO NOTHING, then a read:
//     a racing replica waits for the winner's commit and reads its value.
//   - Open migrates under an advisory lock, so replicas starting together
//     migrate once.
//
// The advisory locks use the two-key form with key1 = lockSpace (see the
// constants); another application sharing the database must not use it.
//
// Times are stored as Unix nanoseconds and come back in UTC; a time outside
// the years 1678 to 2262 (the zero time.Time among them) is refused with an
// error. An empty byte slice reads back as nil.
//
// Errors: store.ErrNotFound, store.ErrExists, store.ErrConflict, ErrUsed and
// ErrExpired as documented on store; a server that cannot be reached or
// went away, a shutdown, a full disk, a read-only server or transaction and
// other transient server conditions wrap store.ErrUnavailable (see mapErr).
// The pgx error stays wrapped for logs.
package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dcaas/dcaas/internal/store"
)

// Advisory lock keys: pg_advisory_xact_lock(lockSpace, lockX).
const (
	lockSpace       int32 = 0x64636161 // "dcaa"
	lockMigrate     int32 = 1
	lockAudit       int32 = 2
	lockRevocations int32 = 3
)

// DB is a PostgreSQL-backed store.Store, made by Open. Its methods are safe
// for concurrent use, and any number of DBs, in any number of processes,
// may share one database. Returned slices belong to the caller.
type DB struct {
	pool *pgxpool.Pool
}

var _ store.Store = (*DB)(nil)

// Open connects to the database dsn names and applies any pending
// migrations. dsn is a libpq connection string or URL
// (postgres://user@host:5432/db?sslmode=verify-full); pgxpool's pool_*
// parameters size the pool (default: at most max(4, GOMAXPROCS)
// connections); behind PgBouncer in transaction mode add
// default_query_exec_mode=exec. The caller closes the returned DB.
func Open(ctx context.Context, dsn string) (*DB, error) {
	if dsn == "" {
		return nil, errors.New("postgres: empty DSN")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the DSN, password masked.
		return nil, fmt.Errorf("postgres: %w", err)
	}
	rp := cfg.ConnConfig.RuntimeParams
	// The guarantees in the package comment are argued at READ COMMITTED.
	rp["default_transaction_isolation"] = "read committed"
	if rp["application_name"] == "" {
		rp["application_name"] = "dcaas"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, mapErr("Open", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, mapErr("Open", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &DB{pool: pool}, nil
}

// Close closes the pool, waiting for connections in use to be returned. It
// is safe to call more than once.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// tx runs fn in one READ COMMITTED transaction and commits if fn returns
// nil. Errors are mapped with op.
func (db *DB) tx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	return inTx(ctx, db.pool, op, fn)
}

func inTx(ctx context.Context, pool *pgxpool.Pool, op string, fn func(tx pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return mapErr(op, err)
	}
	defer tx.Rollback(ctx) // after Commit a no-op; on error or panic it undoes fn
	if err := fn(tx); err != nil {
		return mapErr(op, err)
	}
	return mapErr(op, tx.Commit(ctx))
}

// lock takes the transaction-scoped advisory lock key, held until tx ends.
func lock(ctx context.Context, tx pgx.Tx, key int32) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockSpace, key)
	return err
}
