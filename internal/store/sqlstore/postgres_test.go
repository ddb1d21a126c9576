package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/pgtest"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// openPostgres opens dsn and fails t on error; the caller closes the DB.
func openPostgres(t testing.TB, dsn string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.OpenPostgres(t.Context(), dsn)
	if err != nil {
		t.Fatalf("OpenPostgres() = %v", err)
	}
	return db
}

// raw connects to dsn without the store, for checks behind its back.
func raw(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestPostgresSettingsPinned checks what Open sets on every connection whatever
// the database's defaults: READ COMMITTED, which the package's locking
// argument assumes.
func TestPostgresSettingsPinned(t *testing.T) {
	dsn := pgtest.DSN(t)
	var name string
	if err := raw(t, dsn).QueryRow(t.Context(), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	if _, err := raw(t, dsn).Exec(t.Context(),
		`ALTER DATABASE `+pgx.Identifier{name}.Sanitize()+` SET default_transaction_isolation = 'serializable'`); err != nil {
		t.Fatal(err)
	}
	db := openPostgres(t, dsn)
	defer db.Close()
	got, err := sqlstore.Setting(t.Context(), db, "default_transaction_isolation")
	if err != nil || got != "read committed" {
		t.Errorf("default_transaction_isolation = %q, %v; want %q", got, err, "read committed")
	}
}

// TestPostgresUnreachable opens a port nothing listens on.
func TestPostgresUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	db, err := sqlstore.OpenPostgres(ctx, "postgres://dcaas@"+addr+"/dcaas?sslmode=disable&connect_timeout=5")
	if err == nil {
		db.Close()
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open(nothing listening) = %v, want %v", err, store.ErrUnavailable)
	}
}

// TestPostgresConnectionKilled terminates the store's connection from outside (as
// a server restart or failover would): the call that finds it dead is
// store.ErrUnavailable, and the pool recovers with a new connection.
func TestPostgresConnectionKilled(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	db := openPostgres(t, withParam(dsn, "pool_max_conns", "1"))
	defer db.Close()
	tn, mk := tenant("acme")
	if err := db.CreateTenant(ctx, tn, mk); err != nil {
		t.Fatal(err)
	}
	admin := raw(t, dsn)
	var killed int
	err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminated %d backends, %v; want the store's one", killed, err)
	}
	for { // until the backend is gone, so the next call finds it dead
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err = db.GetTenant(ctx, "acme")
	if err != nil && !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("GetTenant(acme) on a killed connection = %v, want nil or %v", err, store.ErrUnavailable)
	}
	t.Logf("first call after the kill: %v", err)
	if _, err := db.GetTenant(ctx, "acme"); err != nil {
		t.Errorf("GetTenant(acme) after that = %v, want nil (a new connection)", err)
	}
}

func TestPostgresMapErr(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("query: %w", &pgconn.PgError{Code: code, Message: "m"}) }
	for _, c := range []struct {
		name string
		err  error
		want error // nil: no store error
	}{
		{"no rows", pgx.ErrNoRows, store.ErrNotFound},
		{"unique_violation", pg("23505"), store.ErrExists},
		{"foreign_key_violation", pg("23503"), nil},
		{"syntax_error", pg("42601"), nil},
		{"disk_full", pg("53100"), store.ErrUnavailable},
		{"out_of_memory", pg("53200"), store.ErrUnavailable},
		{"too_many_connections", pg("53300"), store.ErrUnavailable},
		{"read_only_sql_transaction", pg("25006"), store.ErrUnavailable},
		{"admin_shutdown", pg("57P01"), store.ErrUnavailable},
		{"crash_shutdown", pg("57P02"), store.ErrUnavailable},
		{"cannot_connect_now", pg("57P03"), store.ErrUnavailable},
		{"connection_failure", pg("08006"), store.ErrUnavailable},
		{"io_error", pg("58030"), store.ErrUnavailable},
		{"serialization_failure", pg("40001"), store.ErrUnavailable},
		{"deadlock_detected", pg("40P01"), store.ErrUnavailable},
		{"lock_not_available", pg("55P03"), store.ErrUnavailable},
		{"query_canceled", pg("57014"), store.ErrUnavailable},
		{"conn closed", fmt.Errorf("x: %w", pgconn.ErrConnClosed), store.ErrUnavailable},
		{"EOF", io.ErrUnexpectedEOF, store.ErrUnavailable},
		{"net", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, store.ErrUnavailable},
		{"context canceled", fmt.Errorf("x: %w", context.Canceled), nil},
		{"store error kept", fmt.Errorf("x: %w", store.ErrConflict), store.ErrConflict},
	} {
		got := sqlstore.MapErrPostgres("Op", c.err)
		if !errors.Is(got, c.err) {
			t.Errorf("mapErr(%s) = %v, does not wrap %v", c.name, got, c.err)
		}
		for _, se := range []error{store.ErrNotFound, store.ErrExists, store.ErrConflict, store.ErrUnavailable} {
			if errors.Is(got, se) != (se == c.want) {
				t.Errorf("mapErr(%s) = %v; errors.Is(%v) = %t, want %t", c.name, got, se, !(se == c.want), se == c.want)
			}
		}
	}
	if sqlstore.MapErrPostgres("Op", nil) != nil {
		t.Errorf("mapErr(nil) != nil")
	}
}

// TestPostgresDeadlineWhileLocked holds the audit log's lock from another
// connection, as a stuck replica would: an append waits, and when its
// caller's deadline passes it fails with the context's error, not
// store.ErrUnavailable, and stores nothing.
func TestPostgresDeadlineWhileLocked(t *testing.T) {
	dsn := pgtest.DSN(t)
	db := openPostgres(t, dsn)
	defer db.Close()
	other := raw(t, dsn)
	tx, err := other.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), `SELECT pg_advisory_xact_lock($1, $2)`, sqlstore.LockSpace, sqlstore.LockAudit); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = appendAudit(ctx, db, "x")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("AppendAudit(past deadline) = %v, want %v and not %v", err, context.DeadlineExceeded, store.ErrUnavailable)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	if recs, err := db.AuditAfter(t.Context(), 0, 10); err != nil || len(recs) != 0 {
		t.Errorf("AuditAfter(0, 10) = %d records, %v; want none", len(recs), err)
	}
}

func TestPostgresRebind(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE b = ? AND c = ?`, `SELECT a FROM t WHERE b = $1 AND c = $2`},
		{`INSERT INTO t VALUES (?, ?), (?, ?)`, `INSERT INTO t VALUES ($1, $2), ($3, $4)`},
		{`SELECT '?', "a?b", ? FROM t WHERE x = 'it''s ?' AND y = ?`, `SELECT '?', "a?b", $1 FROM t WHERE x = 'it''s ?' AND y = $2`},
	} {
		if got := sqlstore.RebindPostgres(c.in); got != c.want {
			t.Errorf("rebind(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
