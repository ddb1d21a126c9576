package kms

import (
	"context"
	"path/filepath"
	"testing"

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
