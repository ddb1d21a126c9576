package main_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/seal/pkcs11/pkcs11test"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/pgtest"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// TestSealMigrateToSoftHSM moves a file-sealed data dir to a SoftHSM2
// token with `dcaas seal migrate` and serves it with `--seal pkcs11`; the
// failed attempts before change nothing.
func TestSealMigrateToSoftHSM(t *testing.T) {
	e2e.Binary(t)
	tk := pkcs11test.Fresh(t)
	t.Setenv("SOFTHSM2_CONF", tk.Conf)
	t.Setenv("DCAAS_PKCS11_PIN", "")
	dataDir := filepath.Join(t.TempDir(), "kms")

	p := startKMS(t, dataDir)
	w := newTenantWorld(t, p, "acme")
	side := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	side.Enroll(t, rawClient(t, p, nil, nil), w.token(t).Token)
	var ekbs [][]byte
	for _, typ := range []api.KeyType{api.KeyAES256GCM, api.KeyEd25519} {
		var dk api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: typ}, &dk)
		ekbs = append(ekbs, dk.EKB)
		w.admin.MustDo(t, "POST", "/v1/tenants/acme/master-key/rotate", nil, nil)
	}
	before := side.Release(t, w.cust, ekbs)
	caPEM := readFile(t, dataDir, "ca.pem")

	hsm := []string{"--pkcs11-module", tk.Module, "--pkcs11-token", tk.Label}
	migrate := append([]string{"seal", "migrate", "--data-dir", dataDir, "--to", "pkcs11"}, hsm...)
	serveHSM := append([]string{"--seal", "pkcs11", "--pkcs11-pin-file", tk.PINFile}, hsm...)

	// While the KMS runs, migrate refuses, naming it, and makes nothing.
	_, stderr, code := runDcaas(t, append(migrate, "--pkcs11-pin-file", tk.PINFile, "--pkcs11-create-key")...)
	if code == 0 || !strings.Contains(stderr, "running on this database") || !strings.Contains(stderr, fmt.Sprintf("(pid %d)", p.Pid())) ||
		!strings.Contains(stderr, "nothing was changed") {
		t.Fatalf("seal migrate with the KMS running: exit %d, stderr %q; want a refusal naming pid %d", code, stderr, p.Pid())
	}
	p.Stop(t)

	// Failed attempts: each says why and that nothing changed.
	fails := []struct {
		name, pin string
		args      []string
		want      string
	}{
		{"no PIN", "", []string{"--pkcs11-create-key"}, "DCAAS_PKCS11_PIN"},
		{"wrong PIN", "not-the-pin", []string{"--pkcs11-create-key"}, "PIN refused"},
		{"no key in the HSM", "", []string{"--pkcs11-pin-file", tk.PINFile}, "--pkcs11-create-key"},
		{"unknown token", "", []string{"--pkcs11-pin-file", tk.PINFile, "--pkcs11-token", "other"}, "token not found"},
	}
	for _, f := range fails {
		t.Setenv("DCAAS_PKCS11_PIN", f.pin)
		_, stderr, code := runDcaas(t, append(migrate, f.args...)...)
		if code == 0 || !strings.Contains(stderr, f.want) || !strings.Contains(stderr, "nothing was changed") {
			t.Errorf("%s: seal migrate exit %d, stderr %q; want a failure naming %q", f.name, code, stderr, f.want)
		}
	}
	t.Setenv("DCAAS_PKCS11_PIN", "")
	if _, err := launch(t, dataDir, serveHSM...); err == nil || !strings.Contains(err.Error(), "root key not found") {
		t.Errorf("kms serve --seal pkcs11 without an HSM key = %v, want root key not found", err)
	}
	p = startKMS(t, dataDir)
	w = w.reconnect(t, p)
	kmstest.SameKeys(t, "after the failed migrations", side.Release(t, w.cust, ekbs), before)
	p.Stop(t)

	// A run killed after it took the migration lock leaves the lock: no
	// KMS starts, and the next run says so and finishes the migration.
	db, err := sqlstore.OpenSQLite(t.Context(), filepath.Join(dataDir, "kms.db"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.BeginSealMigration(t.Context(), store.SealMigration{Holder: "killed", Host: "ops-host", PID: 99999, From: "file", To: "pkcs11", Started: time.Now()}, time.Now())
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := launch(t, dataDir); err == nil || !strings.Contains(err.Error(), "has not finished") || !strings.Contains(err.Error(), "pid 99999") {
		t.Errorf("kms serve during an unfinished migration = %v, want a refusal naming it", err)
	}
	listen := freeAddr(t)
	stdout, stderr, code := runDcaas(t, append(migrate, "--pkcs11-pin-file", tk.PINFile, "--pkcs11-create-key", "--listen", listen)...)
	if code != 0 || !strings.Contains(stdout, "re-sealed 3 master key versions, 1 HMAC keys, 1 CA keys, 1 audit key, 0 import keys and 1 custodian seed keys") {
		t.Fatalf("seal migrate: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "an earlier migration (started") || !strings.Contains(stdout, "pid 99999) did not finish; this run finishes it") {
		t.Errorf("seal migrate after a killed run:\n%s\nwant it to name the unfinished run", stdout)
	}
	if again, stderr, code := runDcaas(t, append(migrate, "--pkcs11-pin-file", tk.PINFile)...); code != 0 || !strings.Contains(again, "nothing to re-seal: all 7 items were already sealed under pkcs11") {
		t.Errorf("second seal migrate: exit %d, stdout %q, stderr %q; want nothing to re-seal", code, again, stderr)
	}
	// The start command it printed works as printed.
	runPrintedServe(t, stdout, listen, dataDir, tk.PINFile)
	if _, err := launch(t, dataDir); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Errorf("kms serve with the file seal after the migration = %v, want the CA key not opening", err)
	}

	p = startKMS(t, dataDir, serveHSM...)
	if p.Field("seal") != "pkcs11" {
		t.Errorf("ready line %q: want seal=pkcs11", p.ReadyLine())
	}
	var h api.Health
	rawClient(t, p, nil, nil).MustDo(t, "GET", "/healthz", nil, &h)
	if h.Seal != "pkcs11" {
		t.Errorf("/healthz seal = %q, want pkcs11", h.Seal)
	}
	w = w.reconnect(t, p)
	kmstest.SameKeys(t, "after the migration", side.Release(t, w.cust, ekbs), before)
	if !bytes.Equal(readFile(t, dataDir, "ca.pem"), caPEM) {
		t.Error("ca.pem changed in the migration")
	}
	p.Stop(t)
}

func TestKMSServeSealFlags(t *testing.T) {
	t.Parallel()
	e2e.Binary(t)
	dataDir := filepath.Join(t.TempDir(), "kms")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--seal", "tpm"}, `--seal "tpm"`},
		{[]string{"--seal", "pkcs11"}, "--pkcs11-module and --pkcs11-token"},
		{[]string{"--pkcs11-token", "t"}, "need --seal pkcs11"},
		{[]string{"--seal", "pkcs11", "--pkcs11-pin", "1234"}, "unknown flag: --pkcs11-pin"},
	} {
		_, stderr, code := runDcaas(t, append([]string{"kms", "serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0"}, tt.args...)...)
		if code == 0 || !strings.Contains(startupErrors(stderr), tt.want) {
			t.Errorf("kms serve %v: exit %d, stderr %q; want an error naming %q", tt.args, code, stderr, tt.want)
		}
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runPrintedServe runs the "Start the KMS with:" command of seal migrate's
// output literally (split as a POSIX shell splits it, dcaas being the
// binary under test), waits until it serves /healthz on addr with the
// pkcs11 seal, and stops it with SIGTERM, which must exit 0.
func runPrintedServe(t *testing.T, out, addr, dataDir, pinFile string) {
	t.Helper()
	var line string
	for _, l := range strings.Split(out, "\n") {
		if c, ok := strings.CutPrefix(l, "Start the KMS with: "); ok {
			line = c
		}
	}
	args, err := shellSplit(line)
	if err != nil || len(args) < 3 || args[0] != "dcaas" {
		t.Fatalf("seal migrate printed %q (%v); want a dcaas command", line, err)
	}
	if pin := bytes.TrimSpace(readFile(t, filepath.Dir(pinFile), filepath.Base(pinFile))); bytes.Contains([]byte(line), pin) {
		t.Fatalf("the printed command %q holds the PIN", line)
	}
	cmd := exec.Command(e2e.Binary(t), args[1:]...)
	cmd.Env = append(os.Environ(), "DCAAS_PKCS11_PIN=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "dcaas kms ready: ") {
				ready <- sc.Text()
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case l := <-ready:
		if !strings.Contains(l, "https://"+addr+" ") || !strings.Contains(l, "seal=pkcs11") {
			t.Errorf("the printed command's KMS is ready with %q; want https://%s and seal=pkcs11", l, addr)
		}
	case err := <-exited:
		t.Fatalf("the printed command %q exited: %v\n%s", line, err, stderr.String())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the printed command %q was not ready within 60s\n%s", line, stderr.String())
	}
	var h api.Health
	kmstest.NewClient(t, "https://"+addr, readFile(t, dataDir, "ca.pem"), nil, nil).MustDo(t, "GET", "/healthz", nil, &h)
	if h.Seal != "pkcs11" {
		t.Errorf("/healthz of the printed command's KMS: seal %q, want pkcs11", h.Seal)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the printed command's KMS after SIGTERM: %v, want exit 0\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the printed command's KMS did not stop within 30s of SIGTERM")
	}
}

// shellSplit splits a command line as a POSIX shell does words made of
// plain characters and single-quoted parts (what seal migrate prints).
func shellSplit(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\'':
			quoted = false
		case quoted:
			cur.WriteByte(c)
		case c == '\'':
			quoted, in = true, true
		case c == ' ':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		case strings.IndexByte("\"\\$`;&|<>()*?", c) >= 0:
			return nil, fmt.Errorf("shellSplit: %q needs a shell", c)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quoted {
		return nil, errors.New("shellSplit: unterminated quote")
	}
	if in {
		out = append(out, cur.String())
	}
	return out, nil
}

// TestSealMigrateRefusesLiveReplicas: the reported incident. seal migrate
// --store postgres with replicas up refuses, naming every live one; a
// replica stopped cleanly no longer counts, a killed one only until its
// lease expires.
func TestSealMigrateRefusesLiveReplicas(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	// The lease outlives a race-built CLI's start on a loaded machine
	// (over a second; with 2 s the killed replica's lease had expired
	// before the check that it still counts).
	const ttl = 8 * time.Second
	reps := e2e.StartReplicas(t, 2, dsn, "--lease-renew-interval", "100ms", "--lease-ttl", ttl.String())
	migrate := []string{"seal", "migrate", "--data-dir", reps[0].DataDir(), "--to", "pkcs11", "--store", "postgres",
		"--postgres-dsn", dsn, "--pkcs11-module", filepath.Join(t.TempDir(), "no-such-module.so"), "--pkcs11-token", "t"}
	refused := func(when string, pids ...int) {
		t.Helper()
		_, stderr, code := runDcaas(t, migrate...)
		if code == 0 || !strings.Contains(stderr, fmt.Sprintf("%d KMS replica(s) are running", len(pids))) || !strings.Contains(stderr, "nothing was changed") {
			t.Fatalf("%s: seal migrate exit %d, stderr %q; want a refusal naming %d replicas", when, code, stderr, len(pids))
		}
		for _, pid := range pids {
			if !strings.Contains(stderr, fmt.Sprintf("(pid %d), last heartbeat", pid)) {
				t.Errorf("%s: the refusal %q does not name pid %d", when, stderr, pid)
			}
		}
	}
	refused("both replicas up", reps[0].Pid(), reps[1].Pid())
	killed := reps[1].Pid()
	killedAt := time.Now()
	reps[1].Kill9(t)
	reps[0].Stop(t)
	refused("one replica killed, its lease not expired yet", killed)
	time.Sleep(time.Until(killedAt.Add(ttl + 500*time.Millisecond)))
	// Past the leases, it goes on to the HSM, which is missing here.
	_, stderr, code := runDcaas(t, migrate...)
	if code == 0 || strings.Contains(stderr, "running on this database") || !strings.Contains(stderr, "nothing was changed") {
		t.Errorf("seal migrate after the killed replica's lease expired: exit %d, stderr %q; want it past the replicas, failing at the HSM", code, stderr)
	}
	// That failure took no lock: the replicas start again.
	reps[0].Restart(t)
}
