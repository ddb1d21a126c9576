package datadir_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/pgtest"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// files lists what is under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSecondReplicaEmptyDataDir: a second replica started on a shared
// PostgreSQL store with an empty data dir (its root.key not copied from
// the first) is refused, and leaves nothing behind: not a root.key that
// would be refused again at the next start (or mistaken for the right
// one), not an admin/ directory. Once the first replica's root.key is
// copied in, the same dir starts.
func TestSecondReplicaEmptyDataDir(t *testing.T) {
	dsn := pgtest.DSN(t)
	open := func(dir string) (*kms.Server, error) {
		st, err := sqlstore.OpenPostgres(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return datadir.Open(t.Context(), kms.Options{DataDir: dir, Store: st, Logger: quiet()})
	}
	dirA := filepath.Join(t.TempDir(), "kms-a")
	a, err := open(dirA)
	if err != nil {
		t.Fatalf("Open(first replica) = %v", err)
	}
	defer a.Close()

	for _, tc := range []struct {
		name string
		dir  string
	}{
		{"empty dir", t.TempDir()},
		{"missing dir", filepath.Join(t.TempDir(), "kms-b")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := open(tc.dir)
			if err == nil {
				srv.Close()
				t.Fatal("Open(second replica, new root key) succeeded, want a refusal")
			}
			if !errors.Is(err, seal.ErrOpen) {
				t.Errorf("Open(second replica, new root key) = %v, want seal.ErrOpen", err)
			}
			if _, serr := os.Stat(tc.dir); errors.Is(serr, fs.ErrNotExist) {
				return // a dir the start created is gone as a whole
			}
			if got := files(t, tc.dir); len(got) != 0 {
				t.Errorf("the refused start left %q in the data dir, want nothing", got)
			}
		})
	}

	// With the first replica's root key the same empty dir starts.
	dirB := t.TempDir()
	rootKey, err := os.ReadFile(filepath.Join(dirA, kms.RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, kms.RootKeyFile), rootKey, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := open(dirB)
	if err != nil {
		t.Fatalf("Open(second replica, shared root key) = %v", err)
	}
	defer b.Close()
	if !b.KMS.AuditKey().Equal(a.KMS.AuditKey()) {
		t.Error("the replicas do not share the audit key")
	}
}

// hideCA is a store whose first look at the CA finds none, as when
// another replica initializes the store between a new replica's check of
// its new root key and its kms.Open.
type hideCA struct {
	store.Store
	looked atomic.Bool
}

func (h *hideCA) GetSetting(ctx context.Context, name string) ([]byte, error) {
	if name == "ca" && !h.looked.Swap(true) {
		return nil, store.ErrNotFound
	}
	return h.Store.GetSetting(ctx, name)
}

// TestSecondReplicaRacingTheFirst: a new replica whose check of its new
// root key raced the store's initialization by another is refused by
// kms.Open, and still leaves nothing behind.
func TestSecondReplicaRacingTheFirst(t *testing.T) {
	dsn := pgtest.DSN(t)
	stA, err := sqlstore.OpenPostgres(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer stA.Close()
	a, err := datadir.Open(t.Context(), kms.Options{DataDir: t.TempDir(), Store: stA, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	stB, err := sqlstore.OpenPostgres(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer stB.Close()
	dir := t.TempDir()
	h := &hideCA{Store: stB}
	srv, err := datadir.Open(t.Context(), kms.Options{DataDir: dir, Store: h, Logger: quiet()})
	if err == nil {
		srv.Close()
		t.Fatal("Open(racing replica, new root key) succeeded, want a refusal")
	}
	if !h.looked.Load() {
		t.Fatal("the check never looked at the CA: the test proves nothing")
	}
	if !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Open(racing replica) = %v, want seal.ErrOpen", err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("the refused start left %q in the data dir, want nothing", got)
	}
}

// TestOpenOwnsWhatItOpens: a data dir with nothing given opens its own
// file seal and SQLite database, made on first use and opened again at the
// next start with the same CA.
func TestOpenOwnsWhatItOpens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kms")
	first, err := datadir.Open(t.Context(), kms.Options{DataDir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Initialized {
		t.Error("first Open: Initialized = false, want true")
	}
	auditKey := first.KMS.AuditKey()
	if err := first.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	for _, f := range []string{kms.RootKeyFile, kms.DBFile, kms.CAFile, kms.AdminCert, kms.AdminKey} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("after the first start: %v", err)
		}
	}
	again, err := datadir.Open(t.Context(), kms.Options{DataDir: dir, Logger: quiet()})
	if err != nil {
		t.Fatalf("Open(again) = %v", err)
	}
	defer again.Close()
	if again.Initialized {
		t.Error("second Open: Initialized = true, want false")
	}
	if !again.KMS.AuditKey().Equal(auditKey) {
		t.Error("the second start has another audit key: it did not open the same database and root key")
	}
}
