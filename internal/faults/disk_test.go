package faults_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite": checkpoints and integrity checks from outside the KMS

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// mountTimeout bounds mount and umount.
const mountTimeout = 30 * time.Second

// mountTmpfs mounts a tmpfs of size bytes ("16m") on a fresh directory and
// unmounts it when the test ends (after everything registered later, like
// a KMS serving from it, has stopped). It skips the test, saying why,
// where mounting is not permitted.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs as a data dir that can fill up (CI runs the tests as root)")
	}
	dir, err := mountAt(t, size)
	if err != nil {
		t.Skipf("cannot mount a tmpfs here (%v); the disk-full and read-only data dir tests need mount(2), i.e. root with CAP_SYS_ADMIN", err)
	}
	return dir
}

// tryTmpfs is mountTmpfs that reports failure instead of skipping.
func tryTmpfs(t *testing.T, size string) (string, bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		return "", false
	}
	dir, err := mountAt(t, size)
	return dir, err == nil
}

func mountAt(t *testing.T, size string) (string, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir); err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := runCmd("umount", dir); err != nil {
			// Something still holds a file open: detach it rather than
			// leak the mount, and say so.
			t.Errorf("umount %s: %v: %s", dir, err, out)
			if out, err := runCmd("umount", "-l", dir); err != nil {
				t.Errorf("umount -l %s: %v: %s", dir, err, out)
			}
		}
	})
	return dir, nil
}

// remount changes the mount options of a tmpfs from mountTmpfs ("ro",
// "rw").
func remount(t *testing.T, dir, mode string) {
	t.Helper()
	if out, err := runCmd("mount", "-o", "remount,"+mode, dir); err != nil {
		t.Fatalf("mount -o remount,%s %s: %v: %s", mode, dir, err, out)
	}
}

func runCmd(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), mountTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// fillDisk writes a file in dir until the file system has no byte left
// and returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var total int64
	for chunk := len(buf); chunk > 0; chunk /= 16 {
		for {
			n, err := f.Write(buf[:chunk])
			total += int64(n)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatalf("filling %s: %v", dir, err)
			}
			if total > 1<<30 {
				t.Fatalf("wrote 1 GiB into %s and it is not full: is it the small tmpfs?", dir)
			}
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bavail != 0 {
		t.Fatalf("%s still has %d free blocks after filling", dir, st.Bavail)
	}
	t.Logf("filled %s with %d bytes", dir, total)
	return path
}

// openDB opens the KMS database from outside the KMS (the test's own
// connection), read-only if ro.
func openDB(t *testing.T, path string, ro bool) *sql.DB {
	t.Helper()
	q := url.Values{}
	q.Set("_busy_timeout", "10000")
	if ro {
		q.Set("mode", "ro")
	}
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}).String())
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// checkpointTruncate moves everything in the write-ahead log into the
// database file and truncates the log to nothing, as SQLite does on its
// own from time to time. On a full disk the next write then has no room
// at all.
func checkpointTruncate(t *testing.T, path string) {
	t.Helper()
	db := openDB(t, path, false)
	defer db.Close()
	var busy, logFrames, done int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil {
		t.Fatalf("wal_checkpoint: %v", err)
	}
	if busy != 0 {
		t.Fatalf("wal_checkpoint(TRUNCATE) could not finish: busy")
	}
}

// integrityCheck runs SQLite's integrity check on the database.
func integrityCheck(t *testing.T, path string) {
	t.Helper()
	db := openDB(t, path, true)
	defer db.Close()
	rows, err := db.Query("PRAGMA integrity_check")
	if err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		problems = append(problems, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || problems[0] != "ok" {
		t.Errorf("PRAGMA integrity_check of %s = %q, want ok", path, problems)
	}
}

// verifyAudit checks the KMS's audit hash chain and returns how many
// records it holds.
func verifyAudit(t *testing.T, env *kmstest.Env) int64 {
	t.Helper()
	res, err := audit.Verify(t.Context(), env.Server().Store, env.Server().KMS.AuditKey())
	if err != nil {
		t.Fatalf("audit chain after %d good records: %v", res.Records, err)
	}
	return res.Records
}

// wantUnavailable checks that err is the KMS's 503 for a store that
// cannot take writes, with a message an operator can act on.
func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) {
		t.Errorf("%s: error %v, want an API error 503 unavailable", what, err)
		return
	}
	if e.Status != 503 || e.Code != api.CodeUnavailable {
		t.Errorf("%s: %d %s (%s), want 503 unavailable", what, e.Status, e.Code, e.Message)
		return
	}
	// Either the store refused the write, or it took it and the audit
	// record could not follow (then the request is not acknowledged).
	if !strings.Contains(e.Message, "disk full") && !strings.Contains(e.Message, "audit log cannot be written") {
		t.Errorf("%s: message %q does not say why (database full, read-only or unreachable)", what, e.Message)
	}
}

// writes are KMS requests that change its database, each with a fresh
// name per attempt so a retry after the fault is not a conflict.
func writes(w *world, round int) []struct {
	name string
	do   func() error
} {
	return []struct {
		name string
		do   func() error
	}{
		{"create data key", func() error {
			return w.cust.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)
		}},
		{"create tenant", func() error {
			return w.env.Admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: fmt.Sprintf("tenant-%d", round)}, nil)
		}},
		{"create app", func() error {
			return w.env.Admin.Do("POST", "/v1/tenants/acme/apps", api.CreateAppRequest{Name: fmt.Sprintf("app-%d", round), Role: api.RoleCustodian}, nil)
		}},
		{"mint enrollment token", func() error {
			return w.pipe.Do("POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: w.creds.DN}, nil)
		}},
	}
}

// TestFaultDiskFull fills the file system under a running KMS's data dir:
// every write must fail with 503 unavailable and a clear message, the
// health check and a sidecar's loaded keys keep working, and once space
// returns writes work again, the audit chain verifies, the database is
// intact and every acknowledged key still rewraps — across a restart too.
func TestFaultDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, "32m")
	w := newWorld(t, func(o *kms.Options) { o.DataDir = filepath.Join(mnt, "kms") })
	dbPath := filepath.Join(w.env.DataDir, kms.DBFile)
	s := w.startSidecar(t, nil) // its data dir is elsewhere: only the KMS's disk fills
	acked := w.createKeys(t, 20, 4, api.KeyAES256GCM)
	s.load(t, w, acked[:4])

	// Full: the log checkpointed to nothing, then every byte taken.
	checkpointTruncate(t, dbPath)
	filler := fillDisk(t, mnt)

	const rounds = 3
	for round := range rounds {
		for _, wr := range writes(w, round) {
			wantUnavailable(t, fmt.Sprintf("%s on a full disk (round %d)", wr.name, round), wr.do())
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// Not everything stops: the health check answers …
	var h api.Health
	w.env.Admin.MustDo(t, "GET", "/healthz", nil, &h)
	// … and the sidecar serves its loaded keys.
	for _, dk := range acked[:4] {
		var enc api.EncryptResponse
		s.do(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: dk.KeyID}, Plaintext: []byte("disk full")}, &enc)
	}
	// A release reads the database, but is audited: it cannot be, so it is
	// refused (the KMS fails closed) — or, if the audit record fits
	// after all, it must release the right keys.
	var cert api.WrappingCertificate
	s.do(t, "GET", "/v1/wrapping-certificate", nil, &cert)
	var wrapped api.WrappedKeys
	err := w.cust.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{acked[5].EKB}, WrappingCertPEM: cert.CertPEM}, &wrapped)
	if err != nil {
		wantUnavailable(t, "rewrap on a full disk", err)
		t.Logf("rewrap on a full disk: refused, as it cannot be audited: %v", err)
	} else if len(wrapped.Keys) != 1 || wrapped.Keys[0].KeyID != acked[5].KeyID {
		t.Errorf("rewrap on a full disk released %+v, want key %s", wrapped.Keys, acked[5].KeyID)
	}

	// Space returns.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for round := range rounds {
		for _, wr := range writes(w, round) {
			// The same names as on the full disk: no half-made tenant or
			// app may be in the way.
			if err := wr.do(); err != nil {
				t.Errorf("%s after space returned (round %d): %v", wr.name, round, err)
			}
		}
	}
	acked = append(acked, w.createKeys(t, 5, 2, api.KeyAES256GCM)...)
	checkIntact := func(when string) {
		t.Helper()
		n := verifyAudit(t, w.env)
		integrityCheck(t, dbPath)
		// Every acknowledged key, from before the fault and after it,
		// still rewraps, and the sidecar opens it.
		s.load(t, w, acked)
		if st := s.status(t); st.KeysLoaded != len(acked) {
			t.Errorf("%s: sidecar holds %d keys, want %d", when, st.KeysLoaded, len(acked))
		}
		t.Logf("%s: audit chain of %d records verifies, database intact, %d keys rewrap", when, n, len(acked))
	}
	checkIntact("after space returned")
	w.env.Restart()
	checkIntact("after a restart")
}

// TestFaultReadOnlyDataDir remounts a stopped KMS's data dir read-only:
// the KMS must refuse to start, saying why, and start again untouched once
// the file system is writable.
func TestFaultReadOnlyDataDir(t *testing.T) {
	mnt := mountTmpfs(t, "32m")
	w := newWorld(t, func(o *kms.Options) { o.DataDir = filepath.Join(mnt, "kms") })
	acked := w.createKeys(t, 10, 2, api.KeyAES256GCM)
	before := verifyAudit(t, w.env)
	// A running KMS holds its database open for writing, and Linux refuses
	// to remount a file system read-only under an open writer (EBUSY): the
	// file system goes read-only while it is stopped. (A store that turns
	// read-only under a running KMS: TestFaultReadOnlyStore.)
	w.env.Stop()
	remount(t, mnt, "ro")
	srv, err := datadir.Open(t.Context(), w.env.Opts)
	if err == nil {
		srv.Close()
		t.Fatal("datadir.Open succeeded on a read-only data dir")
	}
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("datadir.Open on a read-only data dir = %v, want store.ErrUnavailable saying read-only", err)
	}
	t.Logf("datadir.Open on a read-only data dir: %v", err)

	remount(t, mnt, "rw")
	w.env.Restart()
	if n := verifyAudit(t, w.env); n < before {
		t.Errorf("the audit log shrank from %d to %d records", before, n)
	}
	integrityCheck(t, filepath.Join(w.env.DataDir, kms.DBFile))
	side := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	side.Enroll(t, w.env.Anonymous(), w.token(t))
	rewrapAll(t, w.cust, side, acked)
	w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)
}

// rewrapAll rewraps keys to side and opens them there.
func rewrapAll(t *testing.T, cust *kmstest.Client, side *kmstest.FakeSidecar, keys []api.DataKey) {
	t.Helper()
	ekbs := make([][]byte, len(keys))
	for i, k := range keys {
		ekbs[i] = k.EKB
	}
	var got api.WrappedKeys
	cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: side.Enrollment.WrappingCertPEM}, &got)
	for i, dek := range side.Unwrap(t, &got) {
		if got.Keys[i].KeyID != keys[i].KeyID {
			t.Errorf("rewrapped key %d is %s, want %s", i, got.Keys[i].KeyID, keys[i].KeyID)
		}
		dek.Wipe()
	}
}

// readOnlyAfterStart is the KMS database opened read-only
// (sqlstore.OpenSQLiteReadOnly) for everything but the writes datadir.Open makes while
// starting: it registers the TLS server certificate it just issued, with
// its audit record, in a transaction, so it cannot start over a store
// that is read-only from the first instant.
// After started is set the store is read-only throughout, like a database
// whose disk went read-only under a running KMS.
type readOnlyAfterStart struct {
	store.Store // read-only
	rw          store.Store
	started     atomic.Bool
}

// AcquireLease is a start-up write too; ReleaseLease goes the same way so
// that the read-write KMS the test restarts finds no lease left behind.
// Renewals go to the read-only store and fail, as they would.
func (s *readOnlyAfterStart) AcquireLease(ctx context.Context, l store.Lease) error {
	return s.rw.AcquireLease(ctx, l)
}

func (s *readOnlyAfterStart) ReleaseLease(ctx context.Context, replica string) error {
	return s.rw.ReleaseLease(ctx, replica)
}

func (s *readOnlyAfterStart) InTx(ctx context.Context, fn func(tx store.Tx) error) error {
	if !s.started.Load() {
		return s.rw.InTx(ctx, fn)
	}
	return s.Store.InTx(ctx, fn)
}

// TestFaultReadOnlyStore runs a KMS over its database opened read-only:
// writes must fail with 503 unavailable and a clear message, and the data
// dir must be intact for the read-write KMS afterwards.
func TestFaultReadOnlyStore(t *testing.T) {
	w := newWorld(t, nil)
	acked := w.createKeys(t, 10, 2, api.KeyAES256GCM)
	side := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	side.Enroll(t, w.env.Anonymous(), w.token(t))
	dbPath := filepath.Join(w.env.DataDir, kms.DBFile)
	before := verifyAudit(t, w.env)
	w.env.Stop()

	ro, err := sqlstore.OpenSQLiteReadOnly(t.Context(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ro.Close() })
	var st store.Store = ro
	probe := w.env.Opts
	probe.Store = ro
	if srv, err := datadir.Open(t.Context(), probe); err == nil {
		srv.Close()
	} else {
		// Not a fault in itself: a KMS that cannot record the TLS
		// certificate it issues itself does not start. Let that one write
		// through, and only that one.
		t.Logf("datadir.Open over a read-only store: %v (it registers its new TLS server certificate); letting that start-up write through", err)
		rw, err := sqlstore.OpenSQLite(t.Context(), dbPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rw.Close() })
		st = &readOnlyAfterStart{Store: ro, rw: rw}
	}
	roEnv := kmstest.Start(t, func(o *kms.Options) {
		*o = w.env.Opts
		o.Store = st
	})
	if ras, ok := st.(*readOnlyAfterStart); ok {
		ras.started.Store(true)
	}
	ro2 := &world{env: roEnv, creds: w.creds, pipeCreds: w.pipeCreds}
	ro2.cust = roEnv.Client([]byte(w.creds.CertPEM), []byte(w.creds.KeyPEM))
	ro2.pipe = roEnv.Client([]byte(w.pipeCreds.CertPEM), []byte(w.pipeCreds.KeyPEM))
	for round := range 2 {
		for _, wr := range writes(ro2, round) {
			wantUnavailable(t, wr.name+" over a read-only store", wr.do())
		}
	}
	err = ro2.cust.Do("POST", "/v1/grants", api.GrantRequest{InstanceID: side.Enrollment.InstanceID, EKBs: [][]byte{acked[0].EKB}}, nil)
	wantUnavailable(t, "create grant over a read-only store", err)
	var h api.Health
	roEnv.Admin.MustDo(t, "GET", "/healthz", nil, &h)
	// A release cannot be audited, so it is refused too (fail closed).
	err = ro2.cust.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{acked[0].EKB}, WrappingCertPEM: side.Enrollment.WrappingCertPEM}, nil)
	wantUnavailable(t, "rewrap over a read-only store", err)
	roEnv.Stop()

	// The read-write KMS finds everything as it was, and works.
	w.env.Restart()
	if n := verifyAudit(t, w.env); n < before {
		t.Errorf("the audit log shrank from %d to %d records", before, n)
	}
	integrityCheck(t, dbPath)
	rewrapAll(t, w.cust, side, acked)
	w.env.Tenant(t, "tenant-after")
}
