package main_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/e2e"
)

// halfRequest is an HTTP/1.1 POST whose body only half went over conn.
type halfRequest struct {
	conn net.Conn
	body []byte
}

// termMidRequest writes over conn a POST of v as JSON to path at host,
// all but the second half of the body, waits for the server to be in its
// handler and sends SIGTERM to pid: the server then stops with the request
// in flight.
func termMidRequest(t *testing.T, conn net.Conn, host, path string, v any, pid int) halfRequest {
	t.Helper()
	body, _ := json.Marshal(v)
	head := "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n"
	if _, err := conn.Write(append([]byte(head), body[:len(body)/2]...)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the server reads the head: the request is in its handler
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return halfRequest{conn: conn, body: body}
}

// finish checks that the server (what: its name) still runs, writes the
// rest of the request and returns the answer.
func (r halfRequest) finish(t *testing.T, what string, server interface {
	Running() bool
	Stderr() string
}) *http.Response {
	t.Helper()
	if !server.Running() {
		t.Fatalf("the %s exited with a request in flight; stderr:\n%s", what, server.Stderr())
	}
	if _, err := r.conn.Write(r.body[len(r.body)/2:]); err != nil {
		t.Fatalf("writing the rest of the in-flight request: %v", err)
	}
	_ = r.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(r.conn), nil)
	if err != nil {
		t.Fatalf("the in-flight request got no answer: %v; stderr:\n%s", err, server.Stderr())
	}
	return resp
}

// TestSidecarSIGTERMDrains: a sidecar told to stop (SIGTERM) while a
// request is in flight stops accepting at once (its sockets go), lets the
// request finish with 200, and exits 0 leaving no socket file behind. It
// used to return at the signal: the request was cut and the KMS plugin's
// socket stayed.
func TestSidecarSIGTERMDrains(t *testing.T) {
	t.Parallel()
	env, _, token := startKMSWithToken(t, "payments-api")
	short, err := os.MkdirTemp("", "sd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	plugin := filepath.Join(short, "kms-plugin.sock")
	sc := e2e.StartSidecar(t, e2e.SidecarConfig{KMSURL: env.URL, CAPEM: env.CAPEM, Waiting: true,
		Flags: []string{"--socket", filepath.Join(short, "sidecar.sock"), "--shutdown-timeout", "30s",
			"--kms-plugin-socket", plugin, "--kms-plugin-key", "dk_any"}})
	for _, p := range []string{sc.Socket(), plugin} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("before SIGTERM: %v", err)
		}
	}

	// The in-flight request: POST /v1/enroll whose body arrives in two
	// halves, the second only after the signal.
	conn, err := net.Dial("unix", sc.Socket())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := termMidRequest(t, conn, "sidecar", "/v1/enroll", api.SidecarEnrollRequest{Token: token}, sc.Pid())
	// It stops accepting at once: both socket files go while it runs.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, e1 := os.Stat(sc.Socket())
		_, e2 := os.Stat(plugin)
		if errors.Is(e1, fs.ErrNotExist) && errors.Is(e2, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after SIGTERM the socket files are still there (%v, %v)", e1, e2)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp := req.finish(t, "sidecar", sc)
	defer resp.Body.Close()
	var st api.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK || !st.Enrolled {
		t.Fatalf("the in-flight enroll = %d %+v (%v), want 200 enrolled", resp.StatusCode, st, err)
	}
	if err := sc.WaitExit(t, 20*time.Second); err != nil {
		t.Fatalf("sidecar after SIGTERM: %v, want exit 0; stderr:\n%s", err, sc.Stderr())
	}
	for _, p := range []string{sc.Socket(), plugin} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after exit, %s: %v, want it removed", p, err)
		}
	}
}

// TestKMSSIGTERMDrains: the KMS told to stop while a request is in flight
// stops accepting connections at once, lets the request finish with 200
// (the tenant it creates is there after a restart) and exits 0.
func TestKMSSIGTERMDrains(t *testing.T) {
	t.Parallel()
	k := e2e.StartKMS(t, e2e.KMSConfig{DataDir: filepath.Join(t.TempDir(), "kms"), Flags: []string{"--shutdown-timeout", "30s"}})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(k.ReadFile(t, "ca.pem"))
	cert, err := tls.X509KeyPair(k.ReadFile(t, "admin/cert.pem"), k.ReadFile(t, "admin/key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", k.Addr(), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := termMidRequest(t, conn, k.Addr(), "/v1/tenants", api.CreateTenantRequest{Name: "drained"}, k.Pid())
	// It stops accepting at once, while it still runs.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", k.Addr(), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("10s after SIGTERM the KMS still accepts connections")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp := req.finish(t, "KMS", k)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the in-flight POST /v1/tenants = %d, want 200", resp.StatusCode)
	}
	if err := k.WaitExit(t, 20*time.Second); err != nil {
		t.Fatalf("KMS after SIGTERM: %v, want exit 0; stderr:\n%s", err, k.Stderr())
	}
	// The tenant the drained request made is stored: making it again is
	// a conflict.
	k.Restart(t)
	err = rawAdmin(t, k).Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "drained"}, nil)
	if ae := (*api.Error)(nil); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Errorf("POST /v1/tenants drained again after the restart = %v, want 409: the drained request's tenant is missing", err)
	}
}
