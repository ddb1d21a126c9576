package sqlite_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/migrations"
	"github.com/dcaas/dcaas/internal/store/sqlite"
	"github.com/dcaas/dcaas/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "kms.db"))
	})
}

// open opens path and fails t on error; the caller closes the DB.
func open(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	return db
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func tenant(name string) (store.Tenant, store.MasterKey) {
	return store.Tenant{Name: name, MasterKeyVersion: 1, SealedHMACKey: []byte("hmac"), CreatedAt: t0},
		store.MasterKey{Tenant: name, Version: 1, Sealed: []byte("tmk"), CreatedAt: t0}
}

func appendAudit(ctx context.Context, db *sqlite.DB, action string) (store.AuditRecord, error) {
	return db.AppendAudit(ctx, func(seq int64, prev []byte) (store.AuditRecord, error) {
		h := sha256.Sum256(fmt.Appendf(prev, "%d", seq))
		return store.AuditRecord{Seq: seq, Time: t0, Action: action, PrevHash: prev, Hash: h[:]}, nil
	})
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "kms.db")
	db := open(t, path)
	tn, mk := tenant("acme")
	if err := db.CreateTenant(ctx, tn, mk); err != nil {
		t.Fatalf("CreateTenant(acme) = %v", err)
	}
	if _, err := appendAudit(ctx, db, "create-tenant"); err != nil {
		t.Fatalf("AppendAudit() = %v", err)
	}
	h := sha256.Sum256([]byte("token"))
	secret := store.OneTimeSecret{Hash: h[:], Kind: store.OneTimeEnrollToken, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := db.PutOneTime(ctx, secret); err != nil {
		t.Fatalf("PutOneTime() = %v", err)
	}
	if _, err := db.ConsumeOneTime(ctx, secret.Kind, secret.Hash, t0); err != nil {
		t.Fatalf("ConsumeOneTime() = %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	db = open(t, path)
	defer db.Close()
	got, err := db.GetTenant(ctx, "acme")
	if err != nil || !bytes.Equal(got.SealedHMACKey, tn.SealedHMACKey) {
		t.Errorf("after reopening, GetTenant(acme) = %+v, %v; want %+v", got, err, tn)
	}
	recs, err := db.AuditAfter(ctx, 0, 10)
	if err != nil || len(recs) != 1 || recs[0].Action != "create-tenant" {
		t.Errorf("after reopening, AuditAfter(0, 10) = %+v, %v; want the one record", recs, err)
	}
	_, err = db.ConsumeOneTime(ctx, secret.Kind, secret.Hash, t0)
	if !errors.Is(err, store.ErrUsed) {
		t.Errorf("after reopening, ConsumeOneTime() = %v, want %v", err, store.ErrUsed)
	}
}

func TestReadOnly(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "kms.db")
	db := open(t, path)
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

	ro, err := sqlite.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatalf("OpenReadOnly() = %v", err)
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
		{"ConsumeOneTime", func() error { _, err := ro.ConsumeOneTime(ctx, secret.Kind, secret.Hash, t0); return err }},
		{"DeleteExpiredOneTime", func() error { _, err := ro.DeleteExpiredOneTime(ctx, t0.Add(2*time.Hour)); return err }},
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

func TestMigrateIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.db")
	for range 3 {
		open(t, path).Close()
	}
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var versions []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if len(versions) != len(all) {
		t.Fatalf("schema_migrations holds %v, want versions 1 to %d once each", versions, len(all))
	}
	for i, v := range versions {
		if v != i+1 {
			t.Errorf("schema_migrations holds %v, want versions 1 to %d once each", versions, len(all))
		}
	}
}

// TestMigrateConcurrent opens a new file from several goroutines at once, as
// replicas starting together would: each must see a fully migrated schema.
func TestMigrateConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.db")
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			db, err := sqlite.Open(t.Context(), path)
			if err != nil {
				errs[i] = err
				return
			}
			defer db.Close()
			tn, mk := tenant(fmt.Sprintf("t%d", i))
			errs[i] = db.CreateTenant(t.Context(), tn, mk)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("opener %d: %v", i, err)
		}
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.db")
	open(t, path).Close()
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if db, err := sqlite.Open(t.Context(), path); err == nil {
		db.Close()
		t.Errorf("Open(database at schema 9999) = nil error, want an error")
	}
}

// TestPragmas checks that the DSN settings reached the connection: WAL,
// synchronous=FULL, foreign keys, a busy timeout.
func TestPragmas(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "kms.db"))
	defer db.Close()
	for name, want := range map[string]string{
		"journal_mode": "wal",
		"synchronous":  "2", // FULL
		"foreign_keys": "1",
		"busy_timeout": "5000",
	} {
		got, err := sqlite.Pragma(t.Context(), db, name)
		if err != nil || got != want {
			t.Errorf("PRAGMA %s = %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.db")
	db := open(t, path)
	defer db.Close()
	if _, err := db.PutSettingIfAbsent(t.Context(), "x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("Stat(%s) = %v", p, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

// TestOddPath checks that a path holding URI syntax opens that very file.
func TestOddPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a b?c=d#e%20f.db")
	db := open(t, path)
	if _, err := db.PutSettingIfAbsent(t.Context(), "x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Stat(%q) = %v, want the database there", path, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %q, want only the database", names)
	}
}

// TestTwoHandles runs appends through two DBs on one file, as two processes
// would: BEGIN IMMEDIATE and the busy timeout keep the chain whole.
func TestTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.db")
	a, b := open(t, path), open(t, path)
	defer a.Close()
	defer b.Close()
	const n = 25
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	for i := range 2 * n {
		db := a
		if i%2 == 1 {
			db = b
		}
		wg.Go(func() {
			_, errs[i] = appendAudit(t.Context(), db, fmt.Sprint(i))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("AppendAudit #%d = %v", i, err)
		}
	}
	recs, err := a.AuditAfter(t.Context(), 0, 3*n)
	if err != nil || len(recs) != 2*n {
		t.Fatalf("AuditAfter(0, %d) = %d records, %v; want %d", 3*n, len(recs), err, 2*n)
	}
	var prev []byte
	for i, r := range recs {
		if r.Seq != int64(i+1) || !bytes.Equal(r.PrevHash, prev) {
			t.Errorf("record %d: Seq %d, PrevHash %x; want Seq %d, PrevHash %x", i, r.Seq, r.PrevHash, i+1, prev)
		}
		prev = r.Hash
	}
}

// TestTimeRange checks that a time BIGINT nanoseconds cannot hold is an
// error, not a wrong value or a panic.
func TestTimeRange(t *testing.T) {
	ctx := t.Context()
	db := open(t, filepath.Join(t.TempDir(), "kms.db"))
	defer db.Close()
	for _, when := range []time.Time{{}, time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)} {
		tn, mk := tenant("acme")
		tn.CreatedAt = when
		if err := db.CreateTenant(ctx, tn, mk); err == nil {
			t.Errorf("CreateTenant(CreatedAt %v) = nil, want an error", when)
		}
		if err := db.PutCert(ctx, store.Cert{Serial: "01", NotAfter: when}); err == nil {
			t.Errorf("PutCert(NotAfter %v) = nil, want an error", when)
		}
	}
	if _, err := db.GetTenant(ctx, "acme"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTenant(acme) = %v, want %v", err, store.ErrNotFound)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	notADB := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(notADB, bytes.Repeat([]byte("not a database "), 512), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"", filepath.Join(dir, "missing", "kms.db"), dir, notADB} {
		if db, err := sqlite.Open(ctx, path); err == nil {
			db.Close()
			t.Errorf("Open(%q) = nil error, want an error", path)
		}
	}
}
