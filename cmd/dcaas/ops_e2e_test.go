package main_test

// Issue 15, "Health and logs", on the real binary: /readyz and an honest
// /healthz, the store's loss and return logged once each, the build info,
// `dcaas version` and JSON startup errors.

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store/pgtest"
)

// newPGProxy starts a proxy to the server of dsn, to cut the database
// away from a KMS, and returns it with the DSN that reaches the same
// database through it.
func newPGProxy(t *testing.T, dsn string) (*e2e.CutProxy, string) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	network, addr := "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		network, addr = "unix", filepath.Join(cfg.Host, ".s.PGSQL."+strconv.Itoa(int(cfg.Port)))
	}
	p := e2e.NewCutProxy(t, func() (net.Conn, error) { return net.Dial(network, addr) })
	host, port, _ := net.SplitHostPort(p.Addr())
	var via string
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Del("host")
		q.Del("port")
		u.RawQuery, u.Host = q.Encode(), p.Addr()
		via = u.String()
	} else {
		via = dsn + " host=" + host + " port=" + port // a later keyword wins
	}
	return p, via
}

// logged are the JSON lines of a process's stderr whose msg starts with
// prefix.
func logged(stderr, prefix string) []map[string]any { return e2e.LogLines(stderr, prefix) }

// startupErrors is what a serve command that failed to start wrote on
// stderr, with the err of its JSON error line unescaped (--log-format
// json, the default, writes it as one JSON line: quotes in the message
// are escaped there).
func startupErrors(stderr string) string {
	out := stderr
	for _, l := range logged(stderr, "dcaas ") {
		if e, ok := l["err"].(string); ok && l["level"] == "ERROR" {
			out += "\n" + e
		}
	}
	return out
}

// TestKMSStoreDownAndBack: /healthz answered 200 "ok" while PostgreSQL was
// down, there was no /readyz, and the outage wrote no log line (issue 15).
// A KMS on PostgreSQL behind a proxy that is cut and restored: /readyz
// answers 503 naming the store (on the HTTPS and the plain metrics
// listener), /healthz 200 "ok" with ready false; the loss is logged once as a
// warning and the return once at info. The metrics carry dcaas_build_info.
func TestKMSStoreDownAndBack(t *testing.T) {
	proxy, dsn := newPGProxy(t, pgtest.DSN(t))
	p := e2e.StartKMS(t, e2e.KMSConfig{PostgresDSN: dsn, Flags: []string{"--metrics-listen", "127.0.0.1:0"}})
	https := rawClient(t, p, nil, nil).HTTP
	plain := &http.Client{Timeout: 30 * time.Second}
	metrics := p.Field("metrics")
	for _, u := range []string{p.URL() + "/readyz", metrics + "/readyz"} {
		c := https
		if strings.HasPrefix(u, "http:") {
			c = plain
		}
		if code, h := e2e.HealthAt(t, c, u); code != 200 || h.Status != api.HealthOK || len(h.Checks) != 2 {
			t.Fatalf("GET %s = %d %+v, want 200 ok with two checks", u, code, h)
		}
	}
	if status, body := httpGet(t, plain, metrics+"/metrics"); status != 200 || !strings.Contains(body, "dcaas_build_info{") || !strings.Contains(body, `goversion="go`) {
		t.Errorf("GET /metrics = %d, want dcaas_build_info with its labels:\n%.300s", status, body)
	}

	proxy.Cut()
	for range 3 {
		code, h := e2e.HealthAt(t, https, p.URL()+"/readyz")
		if code != 503 || h.Status != api.HealthNotReady || len(h.Failed) == 0 || h.Failed[0] != "store" {
			t.Fatalf("/readyz with the store down = %d %+v, want 503 failed [store …]", code, h)
		}
	}
	if code, h := e2e.HealthAt(t, plain, metrics+"/readyz"); code != 503 || h.Failed[0] != "store" {
		t.Errorf("/readyz on the metrics listener with the store down = %d %+v", code, h)
	}
	if code, h := e2e.HealthAt(t, https, p.URL()+"/healthz"); code != 200 || h.Status != api.HealthOK || h.Ready {
		t.Errorf("/healthz with the store down = %d %+v, want 200 ok, ready false", code, h)
	}
	down := logged(p.StderrAll(), "the KMS store is unavailable")
	if len(down) != 1 || down[0]["level"] != "WARN" {
		t.Errorf("store loss lines = %v, want one warning\n%s", down, p.Stderr())
	}

	proxy.Restore()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := e2e.HealthAt(t, https, p.URL()+"/readyz")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d 30 s after the store came back", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	back := logged(p.StderrAll(), "the KMS store is available again")
	if len(back) != 1 || back[0]["level"] != "INFO" {
		t.Errorf("store return lines = %v, want one at info\n%s", back, p.Stderr())
	}
	if n := len(logged(p.StderrAll(), "the KMS store is unavailable")); n != 1 {
		t.Errorf("the loss was logged %d times, want once", n)
	}
	// One request line per probe, with the route pattern.
	var probes int
	for _, l := range logged(p.StderrAll(), "request") {
		if l["route"] == "GET /readyz" && l["request_id"] != "" {
			probes++
		}
	}
	if probes == 0 {
		t.Errorf("no request line for GET /readyz:\n%s", p.Stderr())
	}
}

// TestSidecarProbesAndBuildInfo: the sidecar's --metrics-listen serves
// /readyz (503 while it waits for a token: not enrolled), /healthz (200)
// and dcaas_build_info.
func TestSidecarProbesAndBuildInfo(t *testing.T) {
	env := kmstest.Start(t, nil)
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	e2e.StartSidecar(t, e2e.SidecarConfig{KMSURL: env.URL, CAPEM: env.CAPEM, Waiting: true, Flags: []string{"--metrics-listen", addr}})
	c := &http.Client{Timeout: 30 * time.Second}
	if code, h := e2e.HealthAt(t, c, "http://"+addr+"/readyz"); code != 503 || len(h.Failed) != 1 || h.Failed[0] != "enrolled" || h.KMSReachable == nil {
		t.Errorf("/readyz of a waiting sidecar = %d %+v, want 503 failed [enrolled] with kms_reachable", code, h)
	}
	if code, h := e2e.HealthAt(t, c, "http://"+addr+"/healthz"); code != 200 || h.Status != api.HealthOK || h.Ready {
		t.Errorf("/healthz of a waiting sidecar = %d %+v, want 200 ok, ready false", code, h)
	}
	if status, body := httpGet(t, c, "http://"+addr+"/metrics"); status != 200 || !strings.Contains(body, "dcaas_build_info{") {
		t.Errorf("sidecar /metrics = %d, want dcaas_build_info:\n%.300s", status, body)
	}
}

// TestStartupErrorsInJSON: a failure to start was plain text while every
// other line was JSON (issue 15). With --log-format json (the default) it
// is one JSON error line; with text it stays a sentence; the exit code is
// 1 either way.
func TestStartupErrorsInJSON(t *testing.T) {
	bin := e2e.Binary(t)
	for _, tc := range []struct {
		args []string
		json bool
		want string
	}{
		{[]string{"kms", "serve", "--data-dir", t.TempDir(), "--listen", "nonsense"}, true, "--listen"},
		{[]string{"kms", "serve", "--data-dir", t.TempDir(), "--listen", "nonsense", "--log-format", "text"}, false, "--listen"},
		{[]string{"sidecar", "serve", "--data-dir", t.TempDir()}, true, "--kms and --ca are required"},
		{[]string{"kms", "serve", "--data-dir", t.TempDir(), "--log-level", "loud"}, true, "--log-level"},
	} {
		cmd := exec.Command(bin, tc.args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("%v: exit %v, want 1", tc.args, err)
			continue
		}
		out := strings.TrimSpace(stderr.String())
		if !tc.json {
			if !strings.HasPrefix(out, "dcaas: ") || !strings.Contains(out, tc.want) {
				t.Errorf("%v: stderr %q, want a plain sentence naming %s", tc.args, out, tc.want)
			}
			continue
		}
		var line map[string]any
		if strings.Contains(out, "\n") || json.Unmarshal([]byte(out), &line) != nil {
			t.Errorf("%v: stderr %q, want one JSON line", tc.args, out)
			continue
		}
		if e, _ := line["err"].(string); line["level"] != "ERROR" || !strings.Contains(e, tc.want) {
			t.Errorf("%v: %v, want an ERROR line whose err names %s", tc.args, line, tc.want)
		}
	}
}

// TestVersion: the binary said "(devel)". `dcaas version` and --version
// say the version the build stamped (the Makefile stamps `git describe`),
// and never "(devel)" when nothing was stamped.
func TestVersion(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(e2e.Binary(t), "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "dcaas ") || strings.Contains(string(out), "(devel)") || !strings.Contains(string(out), "go: go1.") {
		t.Errorf("dcaas version = %q, %v", out, err)
	}
	// A build stamped as the Makefile's build target does.
	bin := filepath.Join(t.TempDir(), "dcaas")
	const pkg = "github.com/dcaas/dcaas/internal/buildinfo"
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X "+pkg+".version=v1.2.3-4-gabcdef-dirty -X "+pkg+".revision=abcdef0123", ".")
	build.Env = os.Environ()
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil || !strings.Contains(string(out), "v1.2.3-4-gabcdef-dirty") {
			t.Errorf("dcaas %v = %q, %v; want the stamped version", args, out, err)
		}
	}
	if out, _ := exec.Command(bin, "version").Output(); !strings.Contains(string(out), "commit: abcdef0123") {
		t.Errorf("dcaas version = %q, want the stamped commit", out)
	}
}
