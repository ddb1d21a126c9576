package postgres_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/migrations"
	"github.com/dcaas/dcaas/internal/store/pgtest"
	"github.com/dcaas/dcaas/internal/store/postgres"
	"github.com/dcaas/dcaas/internal/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, pgtest.DSN(t))
	})
}

// open opens dsn and fails t on error; the caller closes the DB.
func open(t testing.TB, dsn string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open() = %v", err)
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

// withParam adds a parameter to a URL or keyword/value DSN.
func withParam(dsn, key, value string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if strings.Contains(dsn, "?") {
			return dsn + "&" + key + "=" + value
		}
		return dsn + "?" + key + "=" + value
	}
	return dsn + " " + key + "=" + value
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func tenant(name string) (store.Tenant, store.MasterKey) {
	return store.Tenant{Name: name, MasterKeyVersion: 1, SealedHMACKey: []byte("hmac"), CreatedAt: t0},
		store.MasterKey{Tenant: name, Version: 1, Sealed: []byte("tmk"), CreatedAt: t0}
}

func appendAudit(ctx context.Context, s store.Audit, action string) (store.AuditRecord, error) {
	return s.AppendAudit(ctx, func(seq int64, prev []byte) (store.AuditRecord, error) {
		h := sha256.Sum256(fmt.Appendf(prev, "%d", seq))
		return store.AuditRecord{Seq: seq, Time: t0, Action: action, PrevHash: prev, Hash: h[:]}, nil
	})
}

// schemaVersions returns schema_migrations, ordered, and how many distinct
// applied_at times it holds (1: one transaction applied everything).
func schemaVersions(t *testing.T, dsn string) (versions []int64, batches int) {
	t.Helper()
	rows, err := raw(t, dsn).Query(t.Context(),
		`SELECT version, (SELECT count(DISTINCT applied_at) FROM schema_migrations) FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v, &batches); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return versions, batches
}

func wantAllVersions(t *testing.T, dsn string) {
	t.Helper()
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	versions, batches := schemaVersions(t, dsn)
	if len(versions) != len(all) || batches != 1 {
		t.Fatalf("schema_migrations holds %v in %d transactions, want versions 1 to %d once each, in one", versions, batches, len(all))
	}
	for i, v := range versions {
		if v != int64(i+1) {
			t.Fatalf("schema_migrations holds %v, want versions 1 to %d once each", versions, len(all))
		}
	}
}

func TestMigrateIdempotent(t *testing.T) {
	dsn := pgtest.DSN(t)
	for range 3 {
		open(t, dsn).Close()
	}
	wantAllVersions(t, dsn)
}

// TestMigrateConcurrent opens one new database from several handles at
// once, as replicas starting together would: the migration runs once (its
// CREATE TABLEs would fail a second run) and every handle works.
func TestMigrateConcurrent(t *testing.T) {
	dsn := pgtest.DSN(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			db, err := postgres.Open(t.Context(), dsn)
			if err != nil {
				errs[i] = err
				return
			}
			defer db.Close()
			tn, mk := tenant(fmt.Sprintf("t%d", i))
			errs[i] = db.CreateTenant(t.Context(), tn, mk)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("opener %d: %v", i, err)
		}
	}
	wantAllVersions(t, dsn)
}

func TestNewerSchemaRefused(t *testing.T) {
	dsn := pgtest.DSN(t)
	open(t, dsn).Close()
	if _, err := raw(t, dsn).Exec(t.Context(),
		`INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)`); err != nil {
		t.Fatal(err)
	}
	if db, err := postgres.Open(t.Context(), dsn); err == nil {
		db.Close()
		t.Errorf("Open(database at schema 9999) = nil error, want an error")
	}
}

// TestSettingsPinned checks what Open sets on every connection whatever
// the database's defaults: READ COMMITTED, which the package's locking
// argument assumes.
func TestSettingsPinned(t *testing.T) {
	dsn := pgtest.DSN(t)
	var name string
	if err := raw(t, dsn).QueryRow(t.Context(), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	if _, err := raw(t, dsn).Exec(t.Context(),
		`ALTER DATABASE `+pgx.Identifier{name}.Sanitize()+` SET default_transaction_isolation = 'serializable'`); err != nil {
		t.Fatal(err)
	}
	db := open(t, dsn)
	defer db.Close()
	got, err := postgres.Setting(t.Context(), db, "default_transaction_isolation")
	if err != nil || got != "read committed" {
		t.Errorf("default_transaction_isolation = %q, %v; want %q", got, err, "read committed")
	}
}

// TestReadOnly opens a migrated database in read-only transactions (as on
// a hot standby): reads work, every write is store.ErrUnavailable.
func TestReadOnly(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	db := open(t, dsn)
	tn, mk := tenant("acme")
	if err := db.CreateTenant(ctx, tn, mk); err != nil {
		t.Fatalf("CreateTenant(acme) = %v", err)
	}
	h := sha256.Sum256([]byte("token"))
	secret := store.OneTimeSecret{Hash: h[:], Kind: store.OneTimeGrant, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := db.PutOneTime(ctx, secret); err != nil {
		t.Fatalf("PutOneTime() = %v", err)
	}
	if err := db.CreateInstance(ctx, store.Instance{ID: "i-1", EnrolledAt: t0}); err != nil {
		t.Fatalf("CreateInstance() = %v", err)
	}
	if err := db.CreateKey(ctx, store.Key{KeyID: "k-1", CurrentVersion: 1, CreatedAt: t0},
		store.KeyVersion{KeyID: "k-1", Version: 1, CreatedAt: t0}); err != nil {
		t.Fatalf("CreateKey() = %v", err)
	}
	db.Close()

	ro := open(t, withParam(dsn, "default_transaction_read_only", "on"))
	defer ro.Close()
	if _, err := ro.GetTenant(ctx, "acme"); err != nil {
		t.Errorf("read-only GetTenant(acme) = %v, want nil", err)
	}
	tn2, mk2 := tenant("globex")
	writes := []struct {
		name string
		fn   func() error
	}{
		{"CreateTenant", func() error { return ro.CreateTenant(ctx, tn2, mk2) }},
		{"AddMasterKey", func() error {
			return ro.AddMasterKey(ctx, store.MasterKey{Tenant: "acme", Version: 2, CreatedAt: t0})
		}},
		{"PutSettingIfAbsent", func() error { _, err := ro.PutSettingIfAbsent(ctx, "x", []byte("y")); return err }},
		{"CreateApp", func() error { return ro.CreateApp(ctx, store.App{Name: "a", DN: "CN=a", CreatedAt: t0}) }},
		{"PutCert", func() error { return ro.PutCert(ctx, store.Cert{Serial: "01", NotAfter: t0}) }},
		{"RevokeCertsOf", func() error { return ro.RevokeCertsOf(ctx, store.CertApp, "a", t0) }},
		{"CreateKey", func() error {
			return ro.CreateKey(ctx, store.Key{KeyID: "k", CurrentVersion: 1, CreatedAt: t0},
				store.KeyVersion{KeyID: "k", Version: 1, CreatedAt: t0})
		}},
		{"AddKeyVersion", func() error {
			return ro.AddKeyVersion(ctx, store.KeyVersion{KeyID: "k-1", Version: 2, CreatedAt: t0})
		}},
		{"PutOneTime", func() error {
			return ro.PutOneTime(ctx, store.OneTimeSecret{Hash: []byte("h"), CreatedAt: t0, ExpiresAt: t0})
		}},
		{"ConsumeOneTime", func() error { _, err := ro.ConsumeOneTime(ctx, secret.Kind, secret.Hash, t0); return err }},
		{"DeleteExpiredOneTime", func() error { _, err := ro.DeleteExpiredOneTime(ctx, t0.Add(2*time.Hour)); return err }},
		{"CreateInstance", func() error { return ro.CreateInstance(ctx, store.Instance{ID: "i-2", EnrolledAt: t0}) }},
		{"DisableKey", func() error { return ro.DisableKey(ctx, "k-1", t0) }},
		{"RevokeInstance", func() error { return ro.RevokeInstance(ctx, "i-1", t0) }},
		{"AppendAudit", func() error { _, err := appendAudit(ctx, ro, "x"); return err }},
	}
	for _, w := range writes {
		if err := w.fn(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("read-only %s() = %v, want %v", w.name, err, store.ErrUnavailable)
		}
	}
}

// TestUnreachable opens a port nothing listens on.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	db, err := postgres.Open(ctx, "postgres://dcaas@"+addr+"/dcaas?sslmode=disable&connect_timeout=5")
	if err == nil {
		db.Close()
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open(nothing listening) = %v, want %v", err, store.ErrUnavailable)
	}
}

// TestConnectionKilled terminates the store's connection from outside (as
// a server restart or failover would): the call that finds it dead is
// store.ErrUnavailable, and the pool recovers with a new connection.
func TestConnectionKilled(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	db := open(t, withParam(dsn, "pool_max_conns", "1"))
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

func TestMapErr(t *testing.T) {
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
		got := postgres.MapErr("Op", c.err)
		if !errors.Is(got, c.err) {
			t.Errorf("mapErr(%s) = %v, does not wrap %v", c.name, got, c.err)
		}
		for _, se := range []error{store.ErrNotFound, store.ErrExists, store.ErrConflict, store.ErrUnavailable} {
			if errors.Is(got, se) != (se == c.want) {
				t.Errorf("mapErr(%s) = %v; errors.Is(%v) = %t, want %t", c.name, got, se, !(se == c.want), se == c.want)
			}
		}
	}
	if postgres.MapErr("Op", nil) != nil {
		t.Errorf("mapErr(nil) != nil")
	}
}

// TestDeadlineWhileLocked holds the audit log's lock from another
// connection, as a stuck replica would: an append waits, and when its
// caller's deadline passes it fails with the context's error, not
// store.ErrUnavailable, and stores nothing.
func TestDeadlineWhileLocked(t *testing.T) {
	dsn := pgtest.DSN(t)
	db := open(t, dsn)
	defer db.Close()
	other := raw(t, dsn)
	tx, err := other.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), `SELECT pg_advisory_xact_lock($1, $2)`, postgres.LockSpace, postgres.LockAudit); err != nil {
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
