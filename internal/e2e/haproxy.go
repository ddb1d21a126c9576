package e2e

import (
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/dcaas/dcaas/internal/kms"
)

// EnvSkipHAProxy set to "1" skips every test that needs HAProxy (an
// explicit choice: without it, a missing haproxy fails the test).
const EnvSkipHAProxy = "DCAAS_SKIP_HAPROXY"

// HAProxy health checks: every checkInterval, every checkFastInterval
// while a backend changes state, down after checkFall failed checks, up
// again after checkRise good ones. A check's connection, TLS handshake
// included, must be done within min(connectTimeout, its interval): short
// enough to notice a killed replica at once (its port refuses), long
// enough for a race-enabled replica on a busy machine to finish a
// handshake.
const (
	checkInterval     = 500 * time.Millisecond
	checkFastInterval = 250 * time.Millisecond
	checkFall         = 2
	checkRise         = 2
	connectTimeout    = 500 * time.Millisecond
)

// haproxyConfig is HAProxy in TCP mode: TLS passes through to the
// replicas, so their certificates and mutual TLS work as without it. The
// frontend listens on a loopback socket the test opened (fd@3), so there
// is no race for a port. Health checks are GET /healthz over TLS,
// verified against the KMS CA; a replica marked down has its sessions
// shut, and a connection that fails is retried on another replica.
var haproxyConfig = template.Must(template.New("haproxy.cfg").Parse(`global
	stats socket {{.Admin}} mode 600 level admin
	nbthread 1

defaults
	mode tcp
	timeout connect {{.ConnectMS}}ms
	timeout client 2m
	timeout server 2m
	timeout check 2s
	retries 3
	option redispatch 1

frontend kms
	bind fd@3
	default_backend replicas

backend replicas
	balance roundrobin
	option httpchk
	http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost
	http-check expect status 200
	default-server check check-ssl verify required ca-file {{.CAFile}} inter {{.InterMS}}ms fastinter {{.FastMS}}ms downinter {{.FastMS}}ms fall {{.Fall}} rise {{.Rise}} on-marked-down shutdown-sessions
{{- range .Servers}}
	server {{.Name}} {{.Addr}}
{{- end}}
`))

// HAProxy is an haproxy process load-balancing TCP connections over KMS
// replicas.
type HAProxy struct {
	*process
	url      string
	admin    string // the stats socket
	backends []*KMS
	servers  []string // the HAProxy server name of each backend
	ep       Endpoint
}

// StartHAProxy starts HAProxy on a loopback port in front of backends
// (replicas of one KMS, sharing its CA) and waits until its health checks
// have passed on every backend. It skips t when DCAAS_SKIP_HAPROXY=1 and
// fails it when haproxy is not installed (scripts/deps.sh installs it).
// The process is killed when t ends.
func StartHAProxy(t testing.TB, backends ...*KMS) *HAProxy {
	t.Helper()
	bin := haproxyPath(t)
	if len(backends) == 0 {
		t.Fatal("StartHAProxy: no backends")
	}
	// Unix socket paths are short; t.TempDir() may not be.
	dir, err := os.MkdirTemp("", "e2e-haproxy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &HAProxy{admin: filepath.Join(dir, "admin.sock"), backends: backends, ep: backends[0].Endpoint(t)}

	type server struct{ Name, Addr string }
	data := struct {
		Admin, CAFile              string
		ConnectMS, InterMS, FastMS int64
		Fall, Rise                 int
		Servers                    []server
	}{
		Admin: h.admin, CAFile: filepath.Join(backends[0].DataDir(), kms.CAFile),
		ConnectMS: connectTimeout.Milliseconds(), InterMS: checkInterval.Milliseconds(), FastMS: checkFastInterval.Milliseconds(), Fall: checkFall, Rise: checkRise,
	}
	for i, b := range backends {
		name := string(rune('a' + i))
		h.servers = append(h.servers, name)
		data.Servers = append(data.Servers, server{name, b.Addr()})
	}
	cfgPath := filepath.Join(t.TempDir(), "haproxy.cfg")
	f, err := os.Create(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := haproxyConfig.Execute(f, data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	h.url = "https://" + ln.Addr().String()
	cmd := exec.Command(bin, "-db", "-f", cfgPath)
	cmd.ExtraFiles = []*os.File{lnFile} // fd 3 in the child
	h.process = startProcess(t, "haproxy", cmd, "")
	// Only HAProxy accepts on the socket from now on.
	lnFile.Close()
	ln.Close()
	h.ep.URLs = []string{h.url}

	deadline := time.Now().Add(readyTimeout)
	for {
		st, err := h.states()
		ready := err == nil && len(st) == len(backends)
		for _, s := range st {
			ready = ready && s.status == "UP" && strings.HasPrefix(s.check, "L7OK")
		}
		switch {
		case ready:
			return h
		case !h.process.Running():
			t.Fatal(h.process.exitedEarly())
		case time.Now().After(deadline):
			t.Fatalf("haproxy: the backends did not all pass their health checks within %v (%v, %v); stderr:\n%s", readyTimeout, st, err, h.process.Stderr())
		}
		time.Sleep(pollEvery)
	}
}

func haproxyPath(t testing.TB) string {
	t.Helper()
	if os.Getenv(EnvSkipHAProxy) == "1" {
		t.Skipf("%s=1: HAProxy tests skipped", EnvSkipHAProxy)
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/haproxy", "/usr/local/sbin/haproxy"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("haproxy is not installed: run scripts/deps.sh (it installs the Debian package haproxy), or set %s=1 to skip these tests explicitly", EnvSkipHAProxy)
	return ""
}

// URL is HAProxy's base URL, https://127.0.0.1:PORT.
func (h *HAProxy) URL() string { return h.url }

// Endpoint is the backends' endpoint at HAProxy's URL.
func (h *HAProxy) Endpoint() Endpoint { return h.ep }

// SetEnabled takes backend b out of the rotation (enabled false: HAProxy's
// maintenance mode, no new connections) or puts it back, and waits until
// HAProxy reports it in maintenance, or up again. Sessions open to b may
// be shut when it goes into maintenance (on-marked-down
// shutdown-sessions), so disable b before clients connect: a test pins a
// client's connection to another replica by starting the client while b
// is disabled, and that connection stays there after b is back.
func (h *HAProxy) SetEnabled(t testing.TB, b *KMS, enabled bool) {
	t.Helper()
	name := h.server(t, b)
	cmd, want := "disable", "MAINT"
	if enabled {
		cmd, want = "enable", "UP"
	}
	if out, err := h.command(cmd + " server replicas/" + name); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("haproxy: %s server %s: %q, %v", cmd, name, out, err)
	}
	h.waitState(t, b, want)
}

// WaitBackend waits until HAProxy's health checks mark backend b up (or
// down) and returns when it saw that. It fails t after readyTimeout.
func (h *HAProxy) WaitBackend(t testing.TB, b *KMS, up bool) time.Time {
	t.Helper()
	if up {
		return h.waitState(t, b, "UP")
	}
	return h.waitState(t, b, "DOWN")
}

func (h *HAProxy) waitState(t testing.TB, b *KMS, want string) time.Time {
	t.Helper()
	name := h.server(t, b)
	deadline := time.Now().Add(readyTimeout)
	for {
		st, err := h.states()
		if err != nil {
			t.Fatalf("haproxy: %v; stderr:\n%s", err, h.process.Stderr())
		}
		for _, s := range st {
			if s.server == name && s.status == want {
				return time.Now()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy: %s (server %s) not %s within %v: %v", b.Name(), name, want, readyTimeout, st)
		}
		time.Sleep(pollEvery)
	}
}

// server is the HAProxy server name of backend b.
func (h *HAProxy) server(t testing.TB, b *KMS) string {
	t.Helper()
	for i, x := range h.backends {
		if x == b {
			return h.servers[i]
		}
	}
	t.Fatalf("haproxy: %s is not a backend", b.Name())
	return ""
}

// serverState is one backend server's line of `show stat`.
type serverState struct{ server, status, check string }

func (s serverState) String() string { return s.server + ":" + s.status + "/" + s.check }

// command sends one command to HAProxy's admin socket and returns its
// answer.
func (h *HAProxy) command(cmd string) (string, error) {
	c, err := net.DialTimeout("unix", h.admin, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	out, err := io.ReadAll(c)
	return string(out), err
}

// states asks HAProxy for the servers of the backend (`show stat`).
func (h *HAProxy) states() ([]serverState, error) {
	body, err := h.command("show stat")
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(body, "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("show stat: %q: %v", body, err)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	var out []serverState
	for _, row := range rows[1:] {
		if len(row) <= col["check_status"] || row[col["pxname"]] != "replicas" {
			continue
		}
		if sv := row[col["svname"]]; sv != "BACKEND" {
			out = append(out, serverState{sv, row[col["status"]], row[col["check_status"]]})
		}
	}
	return out, nil
}
