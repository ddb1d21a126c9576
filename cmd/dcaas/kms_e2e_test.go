package main_test

// End-to-end tests of the dcaas binary: they run `dcaas kms serve` as a
// child process on a loopback port (through the e2e fixture, which builds
// the binary once) and talk to it over real HTTPS with the credentials it
// writes into its data dir, the way an operator and the custodians would.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// Bounds on what these tests wait for beyond the fixture's own (which
// bounds starting and stopping processes). Generous: a race-enabled binary
// on a loaded two-core machine is slow, and a bound that trips is a failed
// test, not a flake to retry.
const (
	stopTimeout    = 30 * time.Second // a one-shot command's exit after its pipes close
	commandTimeout = 90 * time.Second // a one-shot command (audit verify, bad flags)
	loadTimeout    = 60 * time.Second // the crash test's load reaching its mark
)

func TestMain(m *testing.M) { e2e.Main(m) }

// startKMS starts `dcaas kms serve --data-dir dataDir` with extra flags
// and fails the test if it does not come up.
func startKMS(t *testing.T, dataDir string, extra ...string) *e2e.KMS {
	t.Helper()
	return e2e.StartKMS(t, e2e.KMSConfig{DataDir: dataDir, Flags: extra})
}

// launch is startKMS that returns an error, with the child's stderr, when
// the child exits before it is ready.
func launch(t *testing.T, dataDir string, extra ...string) (*e2e.KMS, error) {
	t.Helper()
	return e2e.LaunchKMS(t, e2e.KMSConfig{DataDir: dataDir, Flags: extra})
}

// rawClient returns a JSON client of the KMS that trusts DIR/ca.pem and
// authenticates with certPEM/keyPEM (nil for none): these tests check
// status codes and error bodies of the raw API.
func rawClient(t *testing.T, p *e2e.KMS, certPEM, keyPEM []byte) *kmstest.Client {
	t.Helper()
	return kmstest.NewClient(t, p.URL(), p.ReadFile(t, "ca.pem"), certPEM, keyPEM)
}

// rawAdmin is rawClient with the admin credentials of the data dir.
func rawAdmin(t *testing.T, p *e2e.KMS) *kmstest.Client {
	t.Helper()
	return rawClient(t, p, p.ReadFile(t, "admin/cert.pem"), p.ReadFile(t, "admin/key.pem"))
}

func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runDcaas runs a one-shot dcaas command and returns its output and exit
// code.
func runDcaas(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2e.Binary(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = stopTimeout
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		t.Fatalf("dcaas %s did not finish within %v", strings.Join(args, " "), commandTimeout)
	case errors.As(err, &exit) && exit.Exited():
		code = exit.ExitCode()
	default:
		t.Fatalf("dcaas %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

// runCLI runs a one-shot dcaas command, fails the test unless it exits 0
// (wantOK) or not (!wantOK), and returns its stdout and stderr together.
func runCLI(t *testing.T, wantOK bool, args ...string) string {
	t.Helper()
	out, errOut, code := runDcaas(t, args...)
	if wantOK != (code == 0) {
		t.Fatalf("dcaas %s exited %d (stdout %q, stderr %q)", strings.Join(args, " "), code, out, errOut)
	}
	return out + errOut
}

// with returns the arguments args followed by the connection flags c.
func with(c []string, args ...string) []string { return append(args, c...) }

// binaryKMS is a KMS process that a test drives with the dcaas binary, as
// operators do, with the connection flags of its data dir's admin.
type binaryKMS struct {
	url, ca string
	admin   []string
}

// startBinaryKMS starts `dcaas kms serve` with extra flags on a new data dir.
func startBinaryKMS(t *testing.T, extra ...string) *binaryKMS {
	t.Helper()
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir, extra...)
	k := &binaryKMS{url: p.URL(), ca: filepath.Join(dataDir, "ca.pem")}
	k.admin = k.conn(filepath.Join(dataDir, "admin", "cert.pem"), filepath.Join(dataDir, "admin", "key.pem"))
	return k
}

// conn returns the connection flags of the identity in the files cert and
// key.
func (k *binaryKMS) conn(cert, key string) []string {
	return []string{"--kms", k.url, "--ca", k.ca, "--cert", cert, "--key", key}
}

// register runs `dcaas what create name` (what: app or admin) with extra
// flags as the admin, its credentials into a new directory, and returns
// the new identity's connection flags.
func (k *binaryKMS) register(t *testing.T, what, name string, extra ...string) []string {
	t.Helper()
	dir := t.TempDir()
	runCLI(t, true, with(k.admin, append([]string{what, "create", name, "--out-dir", dir}, extra...)...)...)
	return k.conn(filepath.Join(dir, name+"-cert.pem"), filepath.Join(dir, name+"-key.pem"))
}

// startKMSWithToken starts an in-process KMS (kmstest) with tenant acme,
// its custodian app custodian and the pipeline app deployer, and returns
// it, the custodian's client and a one-time enrollment token the pipeline
// minted for a sidecar of the custodian.
func startKMSWithToken(t *testing.T, custodian string) (env *kmstest.Env, cust *kmstest.Client, token string) {
	t.Helper()
	env = kmstest.Start(t, nil)
	env.Tenant(t, "acme")
	cust, creds := env.App(t, "acme", custodian, api.RoleCustodian)
	pipe, _ := env.App(t, "acme", "deployer", api.RolePipeline)
	return env, cust, pipe.EnrollmentToken(t, creds.DN)
}

// tenantWorld is what the crash and restart tests set up through the API.
type tenantWorld struct {
	admin, cust, pipe *kmstest.Client
	custCreds         api.AppCredentials
	pipeCreds         api.AppCredentials
}

func newTenantWorld(t *testing.T, p *e2e.KMS, tenant string) *tenantWorld {
	t.Helper()
	tn := e2e.NewTenant(t, p.Endpoint(t), tenant)
	if tn.Info.Name != tenant || tn.Info.MasterKeyVersion != 1 {
		t.Fatalf("POST /v1/tenants = %+v, want %s at master key version 1", tn.Info, tenant)
	}
	if tn.CustodianCreds.KeyPEM == "" || tn.CustodianCreds.CertPEM == "" {
		t.Fatalf("custodian credentials without key_pem or cert_pem: %+v", tn.CustodianCreds.DN)
	}
	w := &tenantWorld{custCreds: *tn.CustodianCreds, pipeCreds: *tn.PipelineCreds}
	return w.reconnect(t, p)
}

// reconnect returns the same identities as clients of another run.
func (w *tenantWorld) reconnect(t *testing.T, p *e2e.KMS) *tenantWorld {
	t.Helper()
	return &tenantWorld{
		admin:     rawAdmin(t, p),
		cust:      rawClient(t, p, []byte(w.custCreds.CertPEM), []byte(w.custCreds.KeyPEM)),
		pipe:      rawClient(t, p, []byte(w.pipeCreds.CertPEM), []byte(w.pipeCreds.KeyPEM)),
		custCreds: w.custCreds,
		pipeCreds: w.pipeCreds,
	}
}

func (w *tenantWorld) token(t *testing.T) api.EnrollmentToken {
	t.Helper()
	var tok api.EnrollmentToken
	w.pipe.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: w.custCreds.DN}, &tok)
	return tok
}

func TestKMSServeFirstStartInitializesDataDir(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	dataDir := filepath.Join(work, "kms")
	// Start from a relative --data-dir on an explicit port; the ready line
	// must name both resolved. A port picked this way can be taken by
	// someone else before the child binds it, so a bind failure retries.
	var p *e2e.KMS
	var port int
	for attempt := 0; p == nil; attempt++ {
		port = e2e.FreePort(t)
		var err error
		p, err = e2e.LaunchKMS(t, e2e.KMSConfig{Dir: work, DataDir: dataDir, DataDirArg: "kms", Flags: []string{"--listen", "127.0.0.1:" + strconv.Itoa(port)}})
		if err != nil && (attempt == 4 || !strings.Contains(err.Error(), "address already in use")) {
			t.Fatal(err)
		}
	}

	if want := "https://127.0.0.1:" + strconv.Itoa(port); p.URL() != want {
		t.Errorf("ready line address = %q, want %q (line %q)", p.URL(), want, p.ReadyLine())
	}
	if got := p.Field("data-dir"); !sameDir(t, got, dataDir) {
		t.Errorf("ready line data-dir = %q, want %q", got, dataDir)
	}
	if got, want := p.Field("fips"), strconv.FormatBool(kcrypto.FIPS()); got != want {
		t.Errorf("ready line fips = %q, want %q (line %q)", got, want, p.ReadyLine())
	}
	for _, f := range []struct{ key, file string }{{"ca", "ca.pem"}, {"admin-cert", "admin/cert.pem"}, {"admin-key", "admin/key.pem"}} {
		if got := p.Field(f.key); got != filepath.Join(p.Field("data-dir"), f.file) {
			t.Errorf("ready line %s = %q, want it under the data dir", f.key, got)
		}
	}

	// The data dir holds the material, private where it is secret.
	for _, f := range []struct {
		name string
		perm os.FileMode // 0: any
	}{
		{"root.key", 0o600},
		{"kms.db", 0o600},
		{"ca.pem", 0},
		{"admin/cert.pem", 0},
		{"admin/key.pem", 0o600},
	} {
		st, err := os.Stat(filepath.Join(dataDir, f.name))
		if err != nil {
			t.Errorf("first start did not create %s: %v", f.name, err)
			continue
		}
		if !st.Mode().IsRegular() || st.Size() == 0 {
			t.Errorf("%s: mode %v size %d, want a non-empty regular file", f.name, st.Mode(), st.Size())
		}
		if f.perm != 0 && st.Mode().Perm() != f.perm {
			t.Errorf("%s has mode %v, want %v", f.name, st.Mode().Perm(), f.perm)
		}
	}
	for _, d := range []string{"", "admin"} {
		st, err := os.Stat(filepath.Join(dataDir, d))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("data dir %q has mode %v, want no group or other access", d, st.Mode().Perm())
		}
	}
	// ca.pem is the issuer of the admin certificate.
	ca := parseCertPEM(t, readFile(t, dataDir, "ca.pem"))
	adm := parseCertPEM(t, readFile(t, dataDir, "admin/cert.pem"))
	if err := adm.CheckSignatureFrom(ca); err != nil || !ca.IsCA {
		t.Errorf("admin certificate is not issued by ca.pem (CA %v): %v", ca.IsCA, err)
	}

	var h api.Health
	rawClient(t, p, nil, nil).MustDo(t, "GET", "/healthz", nil, &h)
	if h.Status != "ok" || h.FIPS != kcrypto.FIPS() || h.Seal != "file" {
		t.Errorf("GET /healthz = %+v, want status ok, fips %t, seal file", h, kcrypto.FIPS())
	}
	// Admin credentials work; no credentials get a JSON 401.
	rawAdmin(t, p).MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
	err := rawClient(t, p, nil, nil).Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "globex"}, nil)
	kmstest.WantError(t, err, 401, api.CodeUnauthenticated)

	if lines := p.StdoutLines(); len(lines) != 1 {
		t.Errorf("stdout = %q, want exactly the ready line", lines)
	}
	p.Stop(t)
}

func sameDir(t *testing.T, a, b string) bool {
	t.Helper()
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ra == rb
}

func parseCertPEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no PEM certificate in %q", b)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestKMSSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir)
	w := newTenantWorld(t, p, "acme")

	var (
		mu    sync.Mutex
		acked []e2e.AckedKey
	)
	types := []api.KeyType{api.KeyAES256GCM, api.KeyHMACSHA256, api.KeyEd25519, api.KeyECDSAP256}
	for _, typ := range types {
		var dk api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: typ, Purpose: "before-crash"}, &dk)
		acked = append(acked, e2e.AckedKey{DataKey: dk, Type: typ})
	}
	// A token minted before the crash and used only after it.
	early := w.token(t)
	// A sidecar enrolled before the crash.
	before := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	before.Enroll(t, rawClient(t, p, nil, nil), w.token(t).Token)

	// Keep creating data keys from several goroutines and SIGKILL the KMS
	// in the middle of it. Every key the KMS answered 200 for must survive.
	const loaders, mark = 4, 200
	var (
		killed   atomic.Bool
		n        atomic.Int64
		reached  = make(chan struct{})
		reachOne sync.Once
		wg       sync.WaitGroup
		loadErrs = make(chan error, loaders)
	)
	for g := range loaders {
		wg.Go(func() {
			for i := 0; ; i++ {
				typ := types[(g+i)%len(types)]
				var dk api.DataKey
				err := w.cust.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: typ, Labels: map[string]string{"loader": strconv.Itoa(g)}}, &dk)
				if err != nil {
					if !killed.Load() {
						loadErrs <- fmt.Errorf("loader %d before the kill: %w", g, err)
					}
					return
				}
				mu.Lock()
				acked = append(acked, e2e.AckedKey{DataKey: dk, Type: typ})
				mu.Unlock()
				if n.Add(1) == mark {
					reachOne.Do(func() { close(reached) })
				}
			}
		})
	}
	killAtMark(t, p, &wg, &killed, reached, loadErrs, loadTimeout, func() error {
		return fmt.Errorf("only %d data keys created in %v", n.Load(), loadTimeout)
	})
	t.Logf("SIGKILL with %d data keys acknowledged (%d under load)", len(acked), n.Load())

	// Restart on the same data dir.
	p2 := startKMS(t, dataDir)
	w2 := w.reconnect(t, p2)

	// The tenant and its apps are still there.
	err := w2.admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
	kmstest.WantError(t, err, 409, api.CodeConflict)
	// The token minted before the crash works, once.
	anon := rawClient(t, p2, nil, nil)
	kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM()).Enroll(t, anon, early.Token)
	err = anon.Do("POST", "/v1/enrollment", kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM()).EnrollRequest(early.Token), nil)
	kmstest.WantError(t, err, 409, api.CodeAlreadyUsed)

	// Every acknowledged key is still registered and opens: rewrap them
	// all to a sidecar enrolled now and to the one enrolled before the
	// crash, and unwrap them there.
	fresh := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	fresh.Enroll(t, anon, w2.token(t).Token)
	for _, side := range []*kmstest.FakeSidecar{fresh, before} {
		checkReleases(t, w2.cust, side, acked)
	}
	// The key registry kept the current version: version 2 of a key made
	// before the crash can be cut from its version 1 EKB.
	var v2 api.DataKey
	w2.cust.MustDo(t, "POST", "/v1/datakeys/"+acked[0].KeyID+"/versions", api.NewVersionRequest{EKB: acked[0].EKB}, &v2)
	if v2.Version != 2 {
		t.Errorf("new version after restart = %d, want 2", v2.Version)
	}

	// Every acknowledged creation was audited, and the chain is intact.
	created := auditedKeys(t, p2)
	for _, k := range acked {
		if !created[k.KeyID] {
			t.Errorf("key %s was acknowledged but has no datakey.create audit record", k.KeyID)
		}
	}
	// While the KMS runs (an operator checking a live log) …
	out, errOut, code := runDcaas(t, "audit", "verify", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, "audit log OK") {
		t.Errorf("dcaas audit verify on the live KMS = exit %d, stdout %q, stderr %q; want 0 and \"audit log OK\"", code, out, errOut)
	}
	p2.Stop(t)
	// … and after it stopped.
	out, errOut, code = runDcaas(t, "audit", "verify", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, "audit log OK") {
		t.Errorf("dcaas audit verify = exit %d, stdout %q, stderr %q; want 0 and \"audit log OK\"", code, out, errOut)
	}
}

// killAtMark waits until the load under way reaches its mark (reached is
// closed), a worker reports an error before the kill on errs, or timeout
// passes (then tooSlow says what was missing). Then it SIGKILLs p under the
// workers — killed tells them that their failures no longer count — waits
// for them, and fails t with what went wrong before the kill.
func killAtMark(t *testing.T, p *e2e.KMS, wg *sync.WaitGroup, killed *atomic.Bool, reached <-chan struct{}, errs chan error, timeout time.Duration, tooSlow func() error) {
	t.Helper()
	timer := time.NewTimer(timeout)
	var failure error
	select {
	case <-reached:
	case failure = <-errs:
	case <-timer.C:
		failure = tooSlow()
	}
	timer.Stop()
	killed.Store(true)
	p.Kill9(t)
	wg.Wait()
	if failure != nil {
		t.Fatal(failure)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// checkReleases rewraps every key to side through cust and checks that
// side gets the acknowledged keys (e2e.CheckReleases).
func checkReleases(t *testing.T, cust *kmstest.Client, side *kmstest.FakeSidecar, keys []e2e.AckedKey) {
	t.Helper()
	e2e.CheckReleases(t, side, func(ekbs [][]byte) (*api.WrappedKeys, error) {
		var got api.WrappedKeys
		err := cust.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: side.Enrollment.WrappingCertPEM}, &got)
		return &got, err
	}, keys)
}

// auditedKeys reads the whole audit log through the SDK as the admin and
// returns the key ids of successful data-key creations.
func auditedKeys(t *testing.T, p *e2e.KMS) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, r := range e2e.AuditLog(t, p.Endpoint(t).Admin(t)) {
		if r.Action == "datakey.create" && r.Outcome == "ok" {
			out[r.KeyID] = true
		}
	}
	return out
}

func TestKMSRestartReusesDataDir(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir)
	caPEM := readFile(t, dataDir, "ca.pem")
	certPEM := readFile(t, dataDir, "admin/cert.pem")
	keyPEM := readFile(t, dataDir, "admin/key.pem")
	rootKey := readFile(t, dataDir, "root.key")
	rawAdmin(t, p).MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
	p.Stop(t)

	for run := 2; run <= 3; run++ {
		p := startKMS(t, dataDir)
		for _, f := range []struct {
			name string
			want []byte
		}{{"ca.pem", caPEM}, {"admin/cert.pem", certPEM}, {"admin/key.pem", keyPEM}, {"root.key", rootKey}} {
			if got := readFile(t, dataDir, f.name); !bytes.Equal(got, f.want) {
				t.Errorf("start %d rewrote %s", run, f.name)
			}
		}
		// A client built from the first start's files, the admin
		// credentials among them, still trusts the server and is trusted.
		var h api.Health
		rawAdmin(t, p).MustDo(t, "GET", "/healthz", nil, &h)
		err := rawAdmin(t, p).Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
		kmstest.WantError(t, err, 409, api.CodeConflict)
		rawAdmin(t, p).MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "tenant-" + strconv.Itoa(run)}, nil)
		p.Stop(t)
	}
}

func TestKMSServeBadFlags(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		args []string
		want []string // substrings of stderr
		// initializes is true when the failure comes only after the data
		// dir was initialized.
		initializes bool
	}{
		{"listen without a port", []string{"--listen", "nonsense"}, []string{"--listen", "nonsense", "missing port"}, false},
		{"listen port out of range", []string{"--listen", "127.0.0.1:99999"}, []string{"99999", "invalid port"}, true},
		{"listen address in use", []string{"--listen", busy.Addr().String()}, []string{busy.Addr().String(), "address already in use"}, true},
		{"log level", []string{"--log-level", "loud"}, []string{"--log-level", "loud"}, false},
		{"unknown flag", []string{"--colour", "red"}, []string{"unknown flag: --colour"}, false},
		{"argument", []string{"now"}, []string{"unknown command \"now\""}, false},
		{"passphrase file missing", []string{"--seal-passphrase-file", "/nonexistent/pass"}, []string{"/nonexistent/pass"}, false},
		{"server certificate too short", []string{"--server-cert-ttl", "500ms"}, []string{"--server-cert-ttl", "at least 1s"}, false},
		{"negative app certificate lifetime", []string{"--app-cert-ttl", "-1h"}, []string{"--app-cert-ttl", "at least 1s"}, false},
		{"sidecar certificate outliving the CA", []string{"--sidecar-cert-ttl", "100000h"}, []string{"--sidecar-cert-ttl", "cannot outlive the CA"}, false},
		{"lifetime in days", []string{"--server-cert-ttl", "90d"}, []string{"--server-cert-ttl", "90d"}, false},
		{"check interval too short", []string{"--cert-check-interval", "1ms"}, []string{"--cert-check-interval", "between"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "kms")
			args := append([]string{"kms", "serve", "--data-dir", dataDir}, tt.args...)
			if !slices.ContainsFunc(tt.args, func(a string) bool { return a == "--listen" || strings.HasPrefix(a, "--listen=") }) {
				args = append(args, "--listen", "127.0.0.1:0")
			}
			out, errOut, code := runDcaas(t, args...)
			if code == 0 {
				t.Fatalf("dcaas %s exited 0, want an error; stdout %q", strings.Join(args, " "), out)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr = %q, want it to mention %q", errOut, w)
				}
			}
			if strings.Contains(out, "ready") {
				t.Errorf("stdout = %q, want no ready line", out)
			}
			if _, err := os.Stat(dataDir); !tt.initializes && err == nil {
				t.Errorf("a bad flag still created the data dir %s", dataDir)
			}
		})
	}
}

// TestKMSServeCertificateFlags starts the binary with seconds-long
// certificate lifetimes: the admin and application certificates carry
// --app-cert-ttl, and the TLS server certificate of --server-cert-ttl is
// renewed in place (a new serial for new connections, one log line, the
// expiry gauge following) without a restart.
func TestKMSServeCertificateFlags(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir, "--server-cert-ttl", "10s", "--app-cert-ttl", "2m", "--sidecar-cert-ttl", "1m", "--cert-check-interval", "200ms")
	lifetime := func(c *x509.Certificate) time.Duration { return c.NotAfter.Sub(c.NotBefore) }
	block, _ := pem.Decode(readFile(t, dataDir, "admin/cert.pem"))
	adminCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// NotBefore is backdated a minute for clock skew.
	if got := lifetime(adminCert); got < 2*time.Minute+time.Minute-2*time.Second || got > 3*time.Minute {
		t.Errorf("admin certificate lives %v, want 2m (+1m backdating)", got)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(readFile(t, dataDir, "ca.pem"))
	served := func() *x509.Certificate {
		conn, err := tls.Dial("tcp", p.Addr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	first := served()
	if got := time.Until(first.NotAfter); got > 10*time.Second {
		t.Fatalf("server certificate expires in %v, want at most 10s", got)
	}
	deadline := time.Now().Add(30 * time.Second)
	second := first
	for second.Equal(first) {
		if time.Now().After(deadline) {
			t.Fatalf("the server certificate was not renewed within 30 s; stderr:\n%s", p.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
		second = served()
	}
	if !second.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate expires %v, not after the first's %v", second.NotAfter, first.NotAfter)
	}
	if !strings.Contains(p.Stderr(), "TLS server certificate renewed") {
		t.Errorf("no renewal log line; stderr:\n%s", p.Stderr())
	}
	_, metrics := httpGet(t, rawAdmin(t, p).HTTP, p.URL()+"/metrics")
	for _, want := range []string{
		fmt.Sprintf(`dcaas_cert_expiry_timestamp_seconds{kind="ca"} %s`, strconv.FormatFloat(float64(adminCertIssuer(t, dataDir).NotAfter.Unix()), 'e', -1, 64)),
		`dcaas_cert_expiry_timestamp_seconds{kind="server"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The gauge follows the renewals (the certificate may have been
	// renewed again by now: the gauge is at least the second's expiry).
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, `dcaas_cert_expiry_timestamp_seconds{kind="server"} `); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < float64(second.NotAfter.Unix()) {
				t.Errorf("server expiry gauge = %q, want at least %d", v, second.NotAfter.Unix())
			}
		}
	}
	rawAdmin(t, p).MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
	p.Stop(t)
}

// adminCertIssuer parses the data dir's CA certificate.
func adminCertIssuer(t *testing.T, dataDir string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, dataDir, "ca.pem"))
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// httpGet GETs url with hc and returns the status and the body.
func httpGet(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b.String()
}

// TestKMSMetricsListeners: GET /metrics on the HTTPS listener answered
// anyone (issue 12). It answers admins only there; Prometheus scrapes
// --metrics-listen, a plain-HTTP listener that the ready line names.
func TestKMSMetricsListeners(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir, "--metrics-listen", "127.0.0.1:0")
	if status, body := httpGet(t, rawClient(t, p, nil, nil).HTTP, p.URL()+"/metrics"); status != http.StatusUnauthorized || strings.Contains(body, "dcaas_cert_expiry") {
		t.Errorf("anonymous GET /metrics over HTTPS = %d %.200q, want 401 without metrics", status, body)
	}
	if status, body := httpGet(t, rawAdmin(t, p).HTTP, p.URL()+"/metrics"); status != http.StatusOK || !strings.Contains(body, "dcaas_cert_expiry_timestamp_seconds") {
		t.Errorf("admin GET /metrics over HTTPS = %d %.200q, want 200 with the metrics", status, body)
	}
	plain := p.Field("metrics")
	if !strings.HasPrefix(plain, "http://127.0.0.1:") {
		t.Fatalf("ready line %q names no metrics listener", p.ReadyLine())
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if status, body := httpGet(t, hc, plain+"/metrics"); status != http.StatusOK || !strings.Contains(body, "dcaas_cert_expiry_timestamp_seconds") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("GET %s/metrics = %d %.200q, want 200 with the KMS's and Go's metrics", plain, status, body)
	}
	if status, _ := httpGet(t, hc, plain+"/healthz"); status != http.StatusOK {
		t.Errorf("GET %s/healthz = %d, want 200", plain, status)
	}
	if status, _ := httpGet(t, hc, plain+"/v1/audit"); status != http.StatusNotFound {
		t.Errorf("GET %s/v1/audit = %d, want 404: the plain listener serves metrics and health only", plain, status)
	}
	p.Stop(t)
}
