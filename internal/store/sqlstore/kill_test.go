package sqlstore_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// childEnv names the database a re-executed test binary appends to.
const childEnv = "DCAAS_SQLITE_KILL_CHILD"

// appendForever appends audit records to the database at path and prints
// each acknowledged seq, until it is killed.
func appendForever(path string) {
	ctx := context.Background()
	db, err := sqlstore.OpenSQLite(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for {
		r, err := appendAudit(ctx, db, "x")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stdout, r.Seq) // unbuffered: a printed seq was acknowledged
	}
}

// TestSQLiteKill9 kills a writing process with SIGKILL and checks that every
// append it acknowledged is in the database afterwards.
func TestSQLiteKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "kms.db")
	cmd, lines := startChild(t, childEnv, path)
	var acked int64
	var err error
	for acked < 200 && lines.Scan() {
		if acked, err = strconv.ParseInt(lines.Text(), 10, 64); err != nil {
			t.Fatalf("writer printed %q", lines.Text())
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if acked < 200 {
		t.Fatalf("writer stopped after %d appends", acked)
	}

	db := openSQLite(t, path)
	defer db.Close()
	recs, err := db.AuditAfter(t.Context(), acked-1, 1)
	if err != nil || len(recs) != 1 || recs[0].Seq != acked {
		t.Errorf("after kill -9, AuditAfter(%d, 1) = %+v, %v; want record %d", acked-1, recs, err, acked)
	}
}

// startChild re-executes the test binary with env set to path (TestMain
// runs the child's part) and returns it with its standard output's lines.
// The caller kills it and waits for it.
func startChild(t *testing.T, env, path string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}
