package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/dcaas/dcaas/internal/store"
)

// pgLockSpace is key1 of every advisory lock the store takes:
// pg_advisory_xact_lock(pgLockSpace, lockID).
const pgLockSpace int32 = 0x64636161 // "dcaa"

// OpenPostgres connects to the PostgreSQL database dsn names and applies
// any pending migrations. dsn is a libpq connection string or URL
// (postgres://user@host:5432/db?sslmode=verify-full); pgxpool's pool_*
// parameters size the pool (default: at most max(4, GOMAXPROCS)
// connections); behind PgBouncer in transaction mode add
// default_query_exec_mode=exec. The caller closes the returned DB.
func OpenPostgres(ctx context.Context, dsn string) (*DB, error) {
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
	d := postgresDialect{}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, mapErr(d, "Open", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, mapErr(d, "Open", err)
	}
	sdb := stdlib.OpenDBFromPool(pool) // idle connections stay in the pool
	db := &DB{
		queries: queries{d: d, w: sdb, r: sdb, fence: &fence{}},
		close: func() error {
			err := sdb.Close()
			pool.Close()
			return err
		},
	}
	if err := migrate(ctx, &db.queries); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// postgresDialect is PostgreSQL's dialect, at READ COMMITTED (see the
// package comment for what each method relies on).
type postgresDialect struct{}

func (postgresDialect) name() string { return "postgres" }

// rebind numbers the ? placeholders $1, $2, … in order, leaving quoted
// strings and identifiers alone.
func (postgresDialect) rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		switch c := query[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

func (postgresDialect) txOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
}

func (postgresDialect) forUpdate() string { return " FOR UPDATE" }
func (postgresDialect) keyShare() string  { return " FOR KEY SHARE" }
func (postgresDialect) byteOrder() string { return ` COLLATE "C"` } // as SQLite compares
func (postgresDialect) snapshotOptions() *sql.TxOptions {
	return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
}

// lock takes a transaction-scoped advisory lock, or for lockSealed locks
// the tables that hold sealed material (tenants, master_keys, settings) in
// EXCLUSIVE mode: writers of those tables, on any replica, wait, while
// reads go on. Either is held until the transaction ends. A lock is taken
// in a statement of its own, so the statements after it take snapshots
// that see what the previous holder committed.
func (postgresDialect) lock(ctx context.Context, c conn, l lockID) error {
	if l == lockSealed {
		_, err := c.exec(ctx, `LOCK TABLE tenants, master_keys, settings IN EXCLUSIVE MODE`)
		return err
	}
	_, err := c.exec(ctx, `SELECT pg_advisory_xact_lock(?, ?)`, pgLockSpace, int32(l))
	return err
}

// hasTable looks name up in the search path.
func (postgresDialect) hasTable(ctx context.Context, c conn, name string) (bool, error) {
	var exists bool
	err := c.queryRow(ctx, `SELECT to_regclass(?) IS NOT NULL`, name).Scan(&exists)
	return exists, err
}

// classify:
//
//   - unique_violation (23505) is store.ErrExists;
//   - store.ErrUnavailable: a connection that could not be made or was
//     lost (pgconn.ConnectError, network errors, EOF, a closed
//     connection, a connection database/sql found bad), and the SQLSTATEs
//     of class 08 (connection exception), 53 (insufficient resources:
//     53100 disk full, 53200 out of memory, 53300 too many connections),
//     57P01-57P05 (admin or crash shutdown, cannot connect now, database
//     dropped, idle session timeout), 58 (system/I/O error), 25006
//     (read-only transaction: a standby or default_transaction_read_only),
//     25P03 (idle in transaction timeout), 40001 and 40P01 (serialization
//     failure, deadlock: retry), 55P03 (lock timeout) and 57014 (statement
//     timeout, or canceled by an administrator), all transient conditions
//     of the server rather than of the request;
//   - the caller's context ending (pgx cancels the statement and returns
//     the context's error) is neither, unless it stopped a new connection.
func (postgresDialect) classify(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505":
			return store.ErrExists
		case pgUnavailableState(pe.Code):
			return store.ErrUnavailable
		}
		return nil
	}
	var ce *pgconn.ConnectError
	switch {
	case errors.As(err, &ce): // whatever stopped it, even connect_timeout
		return store.ErrUnavailable
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return nil
	case pgLostConnection(err):
		return store.ErrUnavailable
	}
	return nil
}

// pgUnavailableState reports whether a SQLSTATE means the server cannot
// serve now, as opposed to a bad request or a bug.
func pgUnavailableState(code string) bool {
	switch code {
	case "25006", "25P03", "40001", "40P01", "55P03", "57014",
		"57P01", "57P02", "57P03", "57P04", "57P05":
		return true
	}
	return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") || strings.HasPrefix(code, "58")
}

// pgLostConnection reports whether err, which is not a server error, means
// the server could not be reached or the connection broke.
func pgLostConnection(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.Timeout(err)
}
