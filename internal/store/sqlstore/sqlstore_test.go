package sqlstore_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for raw access

	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/migrations"
	"github.com/dcaas/dcaas/internal/store/pgtest"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
	"github.com/dcaas/dcaas/internal/store/storetest"
)

// TestMain lets TestSQLiteKill9 and TestClaimSoleWriter re-execute the
// test binary as a writer process, and stops the PostgreSQL cluster pgtest
// started.
func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		appendForever(path)
		return
	}
	if path := os.Getenv(claimEnv); path != "" {
		claimForever(path)
		return
	}
	pgtest.Main(m)
}

// backend is one driver, for the tests every driver must pass.
type backend struct {
	name string
	// fresh makes a new, empty database and returns the address open and
	// raw take.
	fresh func(t *testing.T) string
	// open opens a store on the database at addr; the caller closes it.
	open func(ctx context.Context, addr string) (*sqlstore.DB, error)
	// openReadOnly opens a store on a migrated database at addr on which
	// every write fails.
	openReadOnly func(ctx context.Context, addr string) (*sqlstore.DB, error)
	// raw connects to the database at addr without the store; t closes it.
	raw func(t *testing.T, addr string) *sql.DB
	// openers is how many stores TestMigrateConcurrent opens at once.
	openers int
}

var backends = []backend{
	{
		name:         "sqlite",
		fresh:        func(t *testing.T) string { return filepath.Join(t.TempDir(), "kms.db") },
		open:         sqlstore.OpenSQLite,
		openReadOnly: sqlstore.OpenSQLiteReadOnly,
		raw:          func(t *testing.T, path string) *sql.DB { return rawDB(t, "sqlite", path) },
		openers:      4,
	},
	{
		name:  "postgres",
		fresh: func(t *testing.T) string { return pgtest.DSN(t) },
		open:  sqlstore.OpenPostgres,
		// As on a hot standby: every transaction is read-only.
		openReadOnly: func(ctx context.Context, dsn string) (*sqlstore.DB, error) {
			return sqlstore.OpenPostgres(ctx, withParam(dsn, "default_transaction_read_only", "on"))
		},
		raw:     func(t *testing.T, dsn string) *sql.DB { return rawDB(t, "pgx", dsn) },
		openers: 8,
	},
}

// each runs fn as a subtest for every backend.
func each(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

// mustOpen opens the database at addr and fails t on error; t closes the
// store.
func (b backend) mustOpen(t testing.TB, addr string) *sqlstore.DB {
	t.Helper()
	db, err := b.open(t.Context(), addr)
	if err != nil {
		t.Fatalf("Open(%s) = %v", b.name, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func rawDB(t *testing.T, driver, addr string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
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
	}, nil)
}

// TestConformance runs the store contract on every backend, the backends
// in parallel.
func TestConformance(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T) store.Store {
			db, err := b.open(t.Context(), b.fresh(t))
			if err != nil {
				t.Fatalf("Open(%s) = %v", b.name, err)
			}
			return db
		})
	})
}

// wantAllVersions fails t unless schema_migrations holds every migration
// once, all applied by one transaction.
func wantAllVersions(t *testing.T, raw *sql.DB) {
	t.Helper()
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := raw.QueryContext(t.Context(),
		`SELECT version, (SELECT count(DISTINCT applied_at) FROM schema_migrations) FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var versions []int64
	var batches int
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
	each(t, func(t *testing.T, b backend) {
		addr := b.fresh(t)
		for range 3 {
			b.mustOpen(t, addr).Close()
		}
		wantAllVersions(t, b.raw(t, addr))
	})
}

// TestMigrateConcurrent opens one new database from several stores at
// once, as replicas (or processes) starting together would: the migration
// runs once (its CREATE TABLEs would fail a second run) and every store
// works.
func TestMigrateConcurrent(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		addr := b.fresh(t)
		var wg sync.WaitGroup
		errs := make([]error, b.openers)
		start := make(chan struct{})
		for i := range errs {
			wg.Go(func() {
				<-start
				db, err := b.open(t.Context(), addr)
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
		wantAllVersions(t, b.raw(t, addr))
	})
}

func TestNewerSchemaRefused(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		addr := b.fresh(t)
		b.mustOpen(t, addr).Close()
		if _, err := b.raw(t, addr).ExecContext(t.Context(),
			`INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)`); err != nil {
			t.Fatal(err)
		}
		if db, err := b.open(t.Context(), addr); err == nil {
			db.Close()
			t.Errorf("Open(database at schema 9999) = nil error, want an error")
		}
	})
}

// TestReadOnly opens a migrated database read-only (SQLite's mode=ro, a
// PostgreSQL whose transactions are read-only as on a hot standby): reads
// work, every write is store.ErrUnavailable.
func TestReadOnly(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		addr := b.fresh(t)
		db := b.mustOpen(t, addr)
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

		ro, err := b.openReadOnly(ctx, addr)
		if err != nil {
			t.Fatalf("open read-only = %v", err)
		}
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
			{"InTx", func() error {
				return ro.InTx(ctx, func(tx store.Tx) error { _, err := appendAudit(ctx, tx, "x"); return err })
			}},
		}
		for _, w := range writes {
			if err := w.fn(); !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("read-only %s() = %v, want %v", w.name, err, store.ErrUnavailable)
			}
		}
	})
}
