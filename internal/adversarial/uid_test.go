package adversarial_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
)

// childSocket, when set, makes the test binary a client instead of a test
// run: it calls GET /v1/status on the socket the variable names and prints
// "<status> <code>", or "denied" if it could not even connect.
const childSocket = "DCAAS_ADVERSARIAL_CHILD_SOCKET"

func TestMain(m *testing.M) {
	if path := os.Getenv(childSocket); path != "" {
		os.Exit(child(path))
	}
	os.Exit(m.Run())
}

func child(path string) int {
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	resp, err := c.Get("http://sidecar/v1/status")
	if errors.Is(err, os.ErrPermission) {
		fmt.Print("denied")
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	var eb api.ErrorBody
	data, _ := io.ReadAll(resp.Body)
	code := "-"
	if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
		code = string(eb.Error.Code)
	}
	fmt.Printf("%d %s", resp.StatusCode, code)
	return 0
}

const nobody = 65534

// asNobody runs the test binary (copied where uid 65534 can execute it) as
// uid and gid 65534 against socket and returns what the child printed.
func asNobody(t *testing.T, dir, socket string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "adversarial.test")
	if _, err := os.Stat(bin); errors.Is(err, os.ErrNotExist) {
		data, err := os.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = dir
	cmd.Env = []string{childSocket + "=" + socket}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("child as uid %d: %v: %s", nobody, err, exit.Stderr)
		}
		t.Fatalf("child as uid %d: %v", nobody, err)
	}
	return strings.TrimSpace(string(out))
}

// TestOtherUIDOnTheSocket: another application on the host, running as
// another Unix user, calls the sidecar's socket. With the default 0600
// socket it cannot connect at all; with the socket opened to everyone
// (0666, a deployment mistake) the kernel's SO_PEERCRED still names it and
// the sidecar answers 403 and audits the refusal. Same-process variant with
// a faked allow-list: sidecar TestSidecarRefusesOtherUID; the peer package
// itself: internal/peer TestOtherUID, TestOtherUIDFileMode.
func TestOtherUIDOnTheSocket(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a child process as uid 65534")
	}
	// A directory uid 65534 can traverse (t.TempDir is 0700).
	dir, err := os.MkdirTemp("", "dcaas-adversarial-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	s := w.sidecar(t, w.payCreds.DN, dir, nil)

	if got := asNobody(t, dir, s.socket); got != "denied" {
		t.Fatalf("uid %d through the 0600 socket got %q, want the connection denied", nobody, got)
	}

	if err := os.Chmod(s.socket, 0o666); err != nil {
		t.Fatal(err)
	}
	if got := asNobody(t, dir, s.socket); got != "403 forbidden" {
		t.Fatalf("uid %d through a 0666 socket got %q, want \"403 forbidden\"", nobody, got)
	}
	audit, err := os.ReadFile(filepath.Join(s.dataDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(audit), fmt.Sprintf(`"uid:%d"`, nobody)) || !strings.Contains(string(audit), `"denied"`) {
		t.Fatalf("the sidecar's audit log does not record the refusal of uid %d:\n%s", nobody, audit)
	}
	// Control: the bound user still gets in through the same socket.
	var st api.Status
	s.must(t, "GET", "/v1/status", nil, &st)
}
