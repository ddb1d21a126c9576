package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/pgtest"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// claimEnv names the database a re-executed test binary claims.
const claimEnv = "DCAAS_SQLITE_CLAIM_CHILD"

// claimForever claims the database at path, says so, and waits to be
// killed.
func claimForever(path string) {
	db, err := sqlstore.OpenSQLite(context.Background(), path)
	if err == nil {
		_, err = db.ClaimSoleWriter()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("claimed")
	select {}
}

// TestClaimSoleWriter: one handle at a time holds a SQLite database; a
// second is refused with the holder's process id, also from another
// process; the claim goes with its release or its process, however that
// ends (SIGKILL here); shared and read-only stores do not claim.
func TestClaimSoleWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.db")
	a := openSQLite(t, path)
	defer a.Close()
	b := openSQLite(t, path)
	defer b.Close()

	release, err := a.ClaimSoleWriter()
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.ClaimSoleWriter()
	if !errors.Is(err, store.ErrClaimed) || !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second claim = %v; want ErrClaimed naming process %d", err, os.Getpid())
	}
	if fi, err := os.Stat(path + ".lock"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v, %v; want mode 0600", fi, err)
	}
	release()
	releaseB, err := b.ClaimSoleWriter()
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	releaseB()

	if testing.Short() {
		return
	}
	cmd, lines := startChild(t, claimEnv, path)
	if !lines.Scan() || lines.Text() != "claimed" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the child did not claim the database")
	}
	_, err = a.ClaimSoleWriter()
	if !errors.Is(err, store.ErrClaimed) || !strings.Contains(err.Error(), "process "+strconv.Itoa(cmd.Process.Pid)) {
		t.Errorf("claim while another process holds it = %v; want ErrClaimed naming process %d", err, cmd.Process.Pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	release, err = a.ClaimSoleWriter()
	if err != nil {
		t.Fatalf("claim after the holder was killed: %v", err)
	}
	release()

	ro, err := sqlstore.OpenSQLiteReadOnly(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.ClaimSoleWriter(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("read-only claim = %v; want errors.ErrUnsupported", err)
	}
	pg, err := sqlstore.OpenPostgres(t.Context(), pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if _, err := pg.ClaimSoleWriter(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("PostgreSQL claim = %v; want errors.ErrUnsupported", err)
	}
}
