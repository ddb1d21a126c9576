package kms

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/seal/file"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// openTest is Open over the data dir's own file seal and SQLite database,
// as internal/datadir wires them (which this package's tests cannot
// import: it imports kms).
func openTest(ctx context.Context, t testing.TB, opts Options) (*Server, error) {
	t.Helper()
	fs, err := file.Open(opts.DataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.OpenSQLite(ctx, filepath.Join(opts.DataDir, DBFile))
	if err != nil {
		fs.Close()
		t.Fatal(err)
	}
	opts.Store, opts.Sealer, opts.OwnStore, opts.OwnSealer = db, fs, true, true
	srv, err := Open(ctx, opts)
	if err != nil {
		db.Close()
		fs.Close()
	}
	return srv, err
}

// openQuiet opens a KMS on a fresh data dir under t.TempDir() with the
// clock now and its logs discarded, and closes it when the test ends.
func openQuiet(t *testing.T, now func() time.Time) *KMS {
	t.Helper()
	srv, err := openTest(context.Background(), t, Options{
		DataDir: filepath.Join(t.TempDir(), "kms"), Now: now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.KMS
}
