package main_test

// End-to-end tests of the dcaas binary: they build it once, run
// `dcaas kms serve` as a child process on a loopback port, and talk to it
// over real HTTPS with the credentials it writes into its data dir, the way
// an operator and the custodians would.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite", to tamper with the audit log

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// Bounds on everything that waits on the child. Generous: a race-enabled
// binary on a loaded two-core machine is slow, and a bound that trips is a
// failed test, not a flake to retry.
const (
	readyTimeout   = 90 * time.Second // start to the "ready" line
	stopTimeout    = 30 * time.Second // signal to exit
	commandTimeout = 90 * time.Second // a one-shot command (audit verify, bad flags)
	loadTimeout    = 60 * time.Second // the crash test's load reaching its mark
)

// The binary under test, built once per test binary by buildBinary.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "dcaas-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "TestMain:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	return m.Run()
}

// raceEnabled reports whether this test binary was built with -race; the
// binary under test is then built with -race too, so a data race in the
// server fails these tests (the child exits 66 on a graceful stop).
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// goTool finds the go command: on PATH, else under $GOROOT.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("the go command is not on PATH and $GOROOT/bin/go does not exist")
}

// binary returns the path of the dcaas binary, building it on first use.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the dcaas binary; skipped in -short mode")
	}
	binOnce.Do(func() {
		gotool, err := goTool()
		if err != nil {
			binError = err
			return
		}
		out := filepath.Join(binDir, "dcaas")
		args := []string{"build", "-o", out}
		if raceEnabled() {
			args = append(args, "-race")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, gotool, append(args, ".")...)
		if b, err := cmd.CombinedOutput(); err != nil {
			binError = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
			return
		}
		binPath = out
	})
	if binError != nil {
		t.Fatalf("building dcaas: %v", binError)
	}
	return binPath
}

// kmsProc is a running `dcaas kms serve`.
type kmsProc struct {
	t       *testing.T
	dataDir string
	cmd     *exec.Cmd
	stderr  string // file the child's stderr goes to

	ready  string            // the ready line
	url    string            // https://host:port, from the ready line
	fields map[string]string // key=value fields of the ready line

	mu     sync.Mutex
	lines  []string // every stdout line
	exited chan struct{}
	err    error // from Wait, once exited is closed
}

const readyPrefix = "dcaas kms ready: "

// launch starts `dcaas kms serve --data-dir dataDir` with extra flags (a
// --listen flag defaults to 127.0.0.1:0) and waits for its ready line. It
// returns an error if the child exits first; everything else fails t. The
// child is killed when the test ends.
func launch(t *testing.T, dataDir string, extra ...string) (*kmsProc, error) {
	t.Helper()
	return launchWithDir(t, "", dataDir, dataDir, extra...)
}

// launchWithDir is launch with the child running in workDir (""; this
// process's) and given dataDirArg for --data-dir, which names dataDir.
func launchWithDir(t *testing.T, workDir, dataDir, dataDirArg string, extra ...string) (*kmsProc, error) {
	t.Helper()
	args := []string{"kms", "serve", "--data-dir", dataDirArg}
	if !hasFlag(extra, "--listen") {
		args = append(args, "--listen", "127.0.0.1:0")
	}
	args = append(args, extra...)
	errf, err := os.CreateTemp(t.TempDir(), "stderr-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	p := &kmsProc{t: t, dataDir: dataDir, stderr: errf.Name(), exited: make(chan struct{})}
	p.cmd = exec.Command(binary(t), args...)
	p.cmd.Dir = workDir
	p.cmd.Stderr = errf
	p.cmd.WaitDelay = stopTimeout
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start dcaas: %v", err)
	}
	t.Cleanup(p.cleanup)

	readyc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			if strings.HasPrefix(line, readyPrefix) {
				select {
				case readyc <- line:
				default:
				}
			}
		}
		// Every read is done: Wait may close the pipe now.
		err := p.cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.exited)
	}()

	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case line := <-readyc:
		p.ready = line
	case <-p.exited:
		return nil, fmt.Errorf("dcaas kms serve exited before it was ready (%v); stderr:\n%s", p.exitErr(), p.stderrText())
	case <-timer.C:
		t.Fatalf("dcaas kms serve: no ready line within %v; stderr:\n%s", readyTimeout, p.stderrText())
	}
	if err := p.parseReady(); err != nil {
		t.Fatal(err)
	}
	return p, nil
}

// startKMS is launch that fails the test if the KMS does not come up.
func startKMS(t *testing.T, dataDir string, extra ...string) *kmsProc {
	t.Helper()
	p, err := launch(t, dataDir, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// parseReady splits "dcaas kms ready: https://ADDR k=v k=v ...".
func (p *kmsProc) parseReady() error {
	parts := strings.Fields(strings.TrimPrefix(p.ready, readyPrefix))
	if len(parts) == 0 || !strings.HasPrefix(parts[0], "https://") {
		return fmt.Errorf("ready line %q does not start with an https:// address", p.ready)
	}
	p.url = parts[0]
	p.fields = map[string]string{}
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("ready line %q: field %q is not key=value", p.ready, kv)
		}
		p.fields[k] = v
	}
	return nil
}

func (p *kmsProc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *kmsProc) stdoutLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// stderrText is the tail of the child's stderr, for failure messages.
func (p *kmsProc) stderrText() string {
	b, err := os.ReadFile(p.stderr)
	if err != nil {
		return fmt.Sprintf("(stderr unreadable: %v)", err)
	}
	const max = 8 << 10
	if len(b) > max {
		b = append([]byte("…"), b[len(b)-max:]...)
	}
	return string(b)
}

func (p *kmsProc) waitExit(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.exited:
		return true
	case <-timer.C:
		return false
	}
}

// stop asks the KMS to shut down (SIGTERM) and checks that it exits 0.
func (p *kmsProc) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM: %v", err)
	}
	if !p.waitExit(stopTimeout) {
		p.t.Fatalf("dcaas kms serve did not exit within %v of SIGTERM; stderr:\n%s", stopTimeout, p.stderrText())
	}
	if err := p.exitErr(); err != nil {
		p.t.Fatalf("dcaas kms serve after SIGTERM: %v, want exit 0; stderr:\n%s", err, p.stderrText())
	}
}

// kill9 kills the KMS with SIGKILL (a crash) and waits for it to be gone.
func (p *kmsProc) kill9() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatalf("SIGKILL: %v", err)
	}
	if !p.waitExit(stopTimeout) {
		p.t.Fatalf("dcaas kms serve survived SIGKILL for %v", stopTimeout)
	}
}

// cleanup kills the child if it still runs and reports data races it
// printed.
func (p *kmsProc) cleanup() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		if !p.waitExit(stopTimeout) {
			p.t.Errorf("dcaas kms serve (pid %d) survived SIGKILL", p.cmd.Process.Pid)
		}
	}
	if s := p.stderrText(); strings.Contains(s, "WARNING: DATA RACE") {
		p.t.Errorf("dcaas kms serve reported a data race:\n%s", s)
	} else if p.t.Failed() {
		p.t.Logf("dcaas kms serve stderr:\n%s", s)
	}
}

// client returns a JSON client of the KMS that trusts DIR/ca.pem and
// authenticates with certPEM/keyPEM (nil for none).
func (p *kmsProc) client(t *testing.T, certPEM, keyPEM []byte) *kmstest.Client {
	t.Helper()
	caPEM := readFile(t, p.dataDir, "ca.pem")
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.pem holds no certificate")
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certPEM != nil {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatalf("tls.X509KeyPair: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	tr := &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 16, TLSHandshakeTimeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return &kmstest.Client{Base: p.url, HTTP: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// admin is a client with the admin credentials of the data dir.
func (p *kmsProc) admin(t *testing.T) *kmstest.Client {
	t.Helper()
	return p.client(t, readFile(t, p.dataDir, "admin/cert.pem"), readFile(t, p.dataDir, "admin/key.pem"))
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
	cmd := exec.CommandContext(ctx, binary(t), args...)
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

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tenantWorld is what the crash and restart tests set up through the API.
type tenantWorld struct {
	admin, cust, pipe *kmstest.Client
	custCreds         api.AppCredentials
	pipeCreds         api.AppCredentials
}

func newTenantWorld(t *testing.T, p *kmsProc, tenant string) *tenantWorld {
	t.Helper()
	w := &tenantWorld{admin: p.admin(t)}
	var tn api.Tenant
	w.admin.MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: tenant}, &tn)
	if tn.Name != tenant || tn.MasterKeyVersion != 1 {
		t.Fatalf("POST /v1/tenants = %+v, want %s at master key version 1", tn, tenant)
	}
	w.admin.MustDo(t, "POST", "/v1/tenants/"+tenant+"/apps", api.CreateAppRequest{Name: "payments-api", Role: api.RoleCustodian}, &w.custCreds)
	if w.custCreds.KeyPEM == "" || w.custCreds.CertPEM == "" {
		t.Fatalf("custodian credentials without key_pem or cert_pem: %+v", w.custCreds.DN)
	}
	w.admin.MustDo(t, "POST", "/v1/tenants/"+tenant+"/apps", api.CreateAppRequest{Name: "deployer", Role: api.RolePipeline}, &w.pipeCreds)
	w.cust = p.client(t, []byte(w.custCreds.CertPEM), []byte(w.custCreds.KeyPEM))
	w.pipe = p.client(t, []byte(w.pipeCreds.CertPEM), []byte(w.pipeCreds.KeyPEM))
	return w
}

// reconnect returns the same identities as clients of another run.
func (w *tenantWorld) reconnect(t *testing.T, p *kmsProc) *tenantWorld {
	t.Helper()
	return &tenantWorld{
		admin:     p.admin(t),
		cust:      p.client(t, []byte(w.custCreds.CertPEM), []byte(w.custCreds.KeyPEM)),
		pipe:      p.client(t, []byte(w.pipeCreds.CertPEM), []byte(w.pipeCreds.KeyPEM)),
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
	work := t.TempDir()
	dataDir := filepath.Join(work, "kms")
	// Start from a relative --data-dir on an explicit port; the ready line
	// must name both resolved. A port picked this way can be taken by
	// someone else before the child binds it, so a bind failure retries.
	var p *kmsProc
	var port int
	for attempt := 0; p == nil; attempt++ {
		port = freePort(t)
		var err error
		p, err = launchWithDir(t, work, dataDir, "kms", "--listen", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil && (attempt == 4 || !strings.Contains(err.Error(), "address already in use")) {
			t.Fatal(err)
		}
	}

	if want := "https://127.0.0.1:" + strconv.Itoa(port); p.url != want {
		t.Errorf("ready line address = %q, want %q (line %q)", p.url, want, p.ready)
	}
	if got := p.fields["data-dir"]; !sameDir(t, got, dataDir) {
		t.Errorf("ready line data-dir = %q, want %q", got, dataDir)
	}
	if got, want := p.fields["fips"], strconv.FormatBool(kcrypto.FIPS()); got != want {
		t.Errorf("ready line fips = %q, want %q (line %q)", got, want, p.ready)
	}
	for _, f := range []struct{ key, file string }{{"ca", "ca.pem"}, {"admin-cert", "admin/cert.pem"}, {"admin-key", "admin/key.pem"}} {
		if got := p.fields[f.key]; got != filepath.Join(p.fields["data-dir"], f.file) {
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
	p.client(t, nil, nil).MustDo(t, "GET", "/healthz", nil, &h)
	if h.Status != "ok" || h.FIPS != kcrypto.FIPS() || h.Seal != "file" {
		t.Errorf("GET /healthz = %+v, want status ok, fips %t, seal file", h, kcrypto.FIPS())
	}
	// Admin credentials work; no credentials get a JSON 401.
	p.admin(t).MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
	err := p.client(t, nil, nil).Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "globex"}, nil)
	kmstest.WantError(t, err, 401, api.CodeUnauthenticated)

	if lines := p.stdoutLines(); len(lines) != 1 {
		t.Errorf("stdout = %q, want exactly the ready line", lines)
	}
	p.stop()
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

// ackedKey is a data key whose creation the KMS acknowledged.
type ackedKey struct {
	api.DataKey
	typ api.KeyType
}

func TestKMSSurvivesSIGKILL(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir)
	w := newTenantWorld(t, p, "acme")

	var (
		mu    sync.Mutex
		acked []ackedKey
	)
	types := []api.KeyType{api.KeyAES256GCM, api.KeyHMACSHA256, api.KeyEd25519, api.KeyECDSAP256}
	for _, typ := range types {
		var dk api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: typ, Purpose: "before-crash"}, &dk)
		acked = append(acked, ackedKey{dk, typ})
	}
	// A token minted before the crash and used only after it.
	early := w.token(t)
	// A sidecar enrolled before the crash.
	before := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	before.Enroll(t, p.client(t, nil, nil), w.token(t).Token)

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
				acked = append(acked, ackedKey{dk, typ})
				mu.Unlock()
				if n.Add(1) == mark {
					reachOne.Do(func() { close(reached) })
				}
			}
		})
	}
	timer := time.NewTimer(loadTimeout)
	var failure error
	select {
	case <-reached:
	case failure = <-loadErrs:
	case <-timer.C:
		failure = fmt.Errorf("only %d data keys created in %v", n.Load(), loadTimeout)
	}
	timer.Stop()
	killed.Store(true)
	p.kill9()
	wg.Wait()
	if failure != nil {
		t.Fatal(failure)
	}
	close(loadErrs)
	for err := range loadErrs {
		t.Error(err)
	}
	t.Logf("SIGKILL with %d data keys acknowledged (%d under load)", len(acked), n.Load())

	// Restart on the same data dir.
	p2 := startKMS(t, dataDir)
	w2 := w.reconnect(t, p2)

	// The tenant and its apps are still there.
	err := w2.admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
	kmstest.WantError(t, err, 409, api.CodeConflict)
	// The token minted before the crash works, once.
	anon := p2.client(t, nil, nil)
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
	created := auditedKeys(t, w2.admin)
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
	p2.stop()
	// … and after it stopped.
	out, errOut, code = runDcaas(t, "audit", "verify", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, "audit log OK") {
		t.Errorf("dcaas audit verify = exit %d, stdout %q, stderr %q; want 0 and \"audit log OK\"", code, out, errOut)
	}
}

// checkReleases rewraps every key to side's wrapping certificate, unwraps
// them there, and checks that they are the acknowledged keys: same ids
// and versions, and signing keys matching the public keys published at
// creation.
func checkReleases(t *testing.T, cust *kmstest.Client, side *kmstest.FakeSidecar, keys []ackedKey) {
	t.Helper()
	const chunk = 500
	for start := 0; start < len(keys); start += chunk {
		batch := keys[start:min(start+chunk, len(keys))]
		ekbs := make([][]byte, len(batch))
		for i, k := range batch {
			ekbs[i] = k.EKB
		}
		var got api.WrappedKeys
		if err := cust.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: side.Enrollment.WrappingCertPEM}, &got); err != nil {
			t.Fatalf("rewrap of %d acknowledged EKBs (from %d) to instance %s: %v", len(ekbs), start, side.Enrollment.InstanceID, err)
		}
		if len(got.Keys) != len(batch) {
			t.Fatalf("rewrap returned %d keys, want %d", len(got.Keys), len(batch))
		}
		deks := side.Unwrap(t, &got)
		for i, k := range batch {
			g := got.Keys[i]
			if g.KeyID != k.KeyID || g.Version != k.Version || g.Metadata.Type != k.typ {
				t.Errorf("rewrapped key %d = %s v%d %s, want %s v%d %s", start+i, g.KeyID, g.Version, g.Metadata.Type, k.KeyID, k.Version, k.typ)
			}
			if k.typ.Signing() {
				checkPublic(t, k.typ, deks[i].Expose(), k.PublicKeyPEM)
			}
			deks[i].Wipe()
		}
	}
}

func checkPublic(t *testing.T, typ api.KeyType, material []byte, pubPEM string) {
	t.Helper()
	block, _ := pem.Decode([]byte(pubPEM))
	if block == nil {
		t.Fatalf("%s: no public key PEM", typ)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	switch typ {
	case api.KeyEd25519:
		if !ed25519.NewKeyFromSeed(material).Public().(ed25519.PublicKey).Equal(pub) {
			t.Error("an unwrapped ed25519 key does not match the public key published at creation")
		}
	case api.KeyECDSAP256:
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			t.Fatalf("ecdsa-p256 public key is a %T", pub)
		}
		priv, err := ecdsa.ParseRawPrivateKey(ec.Curve, material)
		if err != nil || !priv.PublicKey.Equal(pub) {
			t.Errorf("an unwrapped ecdsa-p256 key does not match the public key published at creation (%v)", err)
		}
	}
}

// auditedKeys reads the whole audit log through the API and returns the key
// ids of successful data-key creations. Reading the log is audited too, so
// a page never comes back empty: the reader is done when a page holds
// nothing but its own earlier reads.
func auditedKeys(t *testing.T, admin *kmstest.Client) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	var after int64
	for range 10000 {
		var page api.AuditPage
		admin.MustDo(t, "GET", "/v1/audit?after="+strconv.FormatInt(after, 10), nil, &page)
		done := true
		for _, r := range page.Records {
			if r.Action == "datakey.create" && r.Outcome == "ok" {
				out[r.KeyID] = true
			}
			if r.Action != "audit.read" {
				done = false
			}
			after = r.Seq
		}
		if done {
			return out
		}
	}
	t.Fatal("GET /v1/audit does not come to an end")
	return nil
}

func TestAuditVerifyNamesTamperedRecord(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir)
	w := newTenantWorld(t, p, "acme")
	for range 5 {
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)
	}
	p.stop()
	out, errOut, code := runDcaas(t, "audit", "verify", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, "audit log OK") {
		t.Fatalf("dcaas audit verify before tampering = exit %d, stdout %q, stderr %q; want 0 and \"audit log OK\"", code, out, errOut)
	}

	tests := []struct {
		name   string
		tamper string // SQL with one ? for the seq
	}{
		{"action changed", `UPDATE audit SET action = 'tenant.delete' WHERE seq = ?`},
		{"outcome changed", `UPDATE audit SET outcome = 'denied' WHERE seq = ?`},
		{"record deleted", `DELETE FROM audit WHERE seq = ?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDataDir(t, dataDir)
			db, err := sql.Open("sqlite", filepath.Join(dir, "kms.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			// Tamper with the record of the custodian's creation: one in the
			// middle of the chain, not the last.
			var seq, last int64
			if err := db.QueryRow(`SELECT seq FROM audit WHERE action = 'app.create' AND outcome = 'ok' ORDER BY seq LIMIT 1`).Scan(&seq); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRow(`SELECT MAX(seq) FROM audit`).Scan(&last); err != nil {
				t.Fatal(err)
			}
			if seq >= last {
				t.Fatalf("app.create is record %d of %d, want one in the middle", seq, last)
			}
			res, err := db.Exec(tt.tamper, seq)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("tampering changed %d rows, want 1", n)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			out, errOut, code := runDcaas(t, "audit", "verify", "--data-dir", dir)
			if code == 0 {
				t.Fatalf("dcaas audit verify on a tampered log exited 0; stdout %q", out)
			}
			m := regexp.MustCompile(`BROKEN at record (\d+)`).FindStringSubmatch(out)
			if m == nil || m[1] != strconv.FormatInt(seq, 10) {
				t.Errorf("dcaas audit verify = stdout %q, stderr %q; want it to name record %d", out, errOut, seq)
			}
			if strings.Contains(out, "audit log OK") {
				t.Errorf("dcaas audit verify says OK on a tampered log: %q", out)
			}
		})
	}
}

// copyDataDir copies the database of a stopped KMS into a fresh dir.
func copyDataDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "kms.db") {
			continue
		}
		b := readFile(t, src, e.Name())
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestKMSRestartReusesDataDir(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir)
	caPEM := readFile(t, dataDir, "ca.pem")
	certPEM := readFile(t, dataDir, "admin/cert.pem")
	keyPEM := readFile(t, dataDir, "admin/key.pem")
	rootKey := readFile(t, dataDir, "root.key")
	p.admin(t).MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
	p.stop()

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
		p.admin(t).MustDo(t, "GET", "/healthz", nil, &h)
		err := p.admin(t).Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
		kmstest.WantError(t, err, 409, api.CodeConflict)
		p.admin(t).MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "tenant-" + strconv.Itoa(run)}, nil)
		p.stop()
	}
}

func TestKMSServeBadFlags(t *testing.T) {
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
			if !hasFlag(tt.args, "--listen") {
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
		conn, err := tls.Dial("tcp", strings.TrimPrefix(p.url, "https://"), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
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
			t.Fatalf("the server certificate was not renewed within 30 s; stderr:\n%s", p.stderrText())
		}
		time.Sleep(100 * time.Millisecond)
		second = served()
	}
	if !second.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate expires %v, not after the first's %v", second.NotAfter, first.NotAfter)
	}
	if !strings.Contains(p.stderrText(), "TLS server certificate renewed") {
		t.Errorf("no renewal log line; stderr:\n%s", p.stderrText())
	}
	_, metrics := httpGet(t, p.admin(t).HTTP, p.url+"/metrics")
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
	p.admin(t).MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
	p.stop()
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
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir, "--metrics-listen", "127.0.0.1:0")
	if status, body := httpGet(t, p.client(t, nil, nil).HTTP, p.url+"/metrics"); status != http.StatusUnauthorized || strings.Contains(body, "dcaas_cert_expiry") {
		t.Errorf("anonymous GET /metrics over HTTPS = %d %.200q, want 401 without metrics", status, body)
	}
	if status, body := httpGet(t, p.admin(t).HTTP, p.url+"/metrics"); status != http.StatusOK || !strings.Contains(body, "dcaas_cert_expiry_timestamp_seconds") {
		t.Errorf("admin GET /metrics over HTTPS = %d %.200q, want 200 with the metrics", status, body)
	}
	plain, ok := p.fields["metrics"]
	if !ok || !strings.HasPrefix(plain, "http://127.0.0.1:") {
		t.Fatalf("ready line %q names no metrics listener", p.ready)
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
	p.stop()
}
