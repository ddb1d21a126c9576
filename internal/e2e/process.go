package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
)

// Bounds on everything that waits on a child. Generous: a race-enabled
// binary on a loaded two-core machine is slow, and a bound that trips is a
// failed test, not a flake to retry.
const (
	readyTimeout = 90 * time.Second // start to ready
	stopTimeout  = 30 * time.Second // a signal to the exit
	pollEvery    = 10 * time.Millisecond
)

// errExited is returned (wrapped) when a child exits before it is ready.
var errExited = errors.New("e2e: the process exited before it was ready")

// process is a child process whose stdout lines are kept, whose stderr
// goes to a file, and which is killed when its test ends.
type process struct {
	name   string // for messages: "kms A", "sidecar", "haproxy"
	cmd    *exec.Cmd
	stderr string // the file stderr goes to

	mu     sync.Mutex
	lines  []string
	err    error // from Wait, once exited is closed
	ready  chan string
	exited chan struct{}
}

// startProcess starts cmd and registers its cleanup with t. The first
// stdout line starting with readyPrefix ("" for none) is sent on ready.
func startProcess(t testing.TB, name string, cmd *exec.Cmd, readyPrefix string) *process {
	t.Helper()
	errf, err := os.CreateTemp(t.TempDir(), "stderr-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	p := &process{name: name, cmd: cmd, stderr: errf.Name(), ready: make(chan string, 1), exited: make(chan struct{})}
	cmd.Stderr = errf
	cmd.WaitDelay = stopTimeout
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { p.cleanup(t) })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			if readyPrefix != "" && strings.HasPrefix(line, readyPrefix) {
				select {
				case p.ready <- line:
				default:
				}
			}
		}
		// Every read is done: Wait may close the pipe now.
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.exited)
	}()
	return p
}

// waitReady waits for the ready line; ok is false if the child exited
// first. It fails t on timeout.
func (p *process) waitReady(t testing.TB) (line string, ok bool) {
	t.Helper()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case line := <-p.ready:
		return line, true
	case <-p.exited:
		return "", false
	case <-timer.C:
		t.Fatalf("%s: no ready line within %v; stderr:\n%s", p.name, readyTimeout, p.Stderr())
		return "", false
	}
}

// waitHealthy calls health (an SDK client's Health) until it answers
// "ok", for at most readyTimeout. It returns an error wrapping errExited if
// the child exits first.
func (p *process) waitHealthy(t testing.TB, health func(context.Context) (*api.Health, error)) error {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		h, err := health(ctx)
		cancel()
		switch {
		case err == nil && h.Status == "ok":
			return nil
		case !p.Running():
			return p.exitedEarly()
		case time.Now().After(deadline):
			t.Fatalf("%s: GET /healthz never answered ok within %v (last %+v, %v); stderr:\n%s", p.name, readyTimeout, h, err, p.Stderr())
		}
		time.Sleep(pollEvery)
	}
}

// exitedEarly is the error for a child that exited before it was ready.
func (p *process) exitedEarly() error {
	return fmt.Errorf("%w: %s (%v); stderr:\n%s", errExited, p.name, p.exitErr(), p.Stderr())
}

// running reports whether the child has not exited yet.
func (p *process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *process) stdoutLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Stderr is the tail of the child's stderr, for failure messages.
// stderrAll is the whole of the current process's stderr.
func (p *process) stderrAll() string {
	b, err := os.ReadFile(p.stderr)
	if err != nil {
		return fmt.Sprintf("(stderr unreadable: %v)", err)
	}
	return string(b)
}

// Stderr is the tail of the current process's stderr.
func (p *process) Stderr() string {
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

func (p *process) waitExit(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.exited:
		return true
	case <-timer.C:
		return false
	}
}

// WaitExit waits at most d for the process to exit by itself (after a
// signal the test sent to Pid) and returns how it exited: nil for 0. It
// fails t if the process still runs after d.
func (p *process) WaitExit(t testing.TB, d time.Duration) error {
	t.Helper()
	if !p.waitExit(d) {
		t.Fatalf("%s did not exit within %v; stderr:\n%s", p.name, d, p.Stderr())
	}
	return p.exitErr()
}

// Pid is the process id of the current process.
func (p *process) Pid() int { return p.cmd.Process.Pid }

// Stop asks the process to shut down (SIGTERM) and checks that it exits 0
// (a race-enabled child that saw a data race exits 66). A
// software-enclave sidecar retires its instance at the KMS as it stops
// (unless its flags hold --retire-on-exit=false); Kill9 leaves it
// registered.
func (p *process) Stop(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	if !p.waitExit(stopTimeout) {
		t.Fatalf("%s did not exit within %v of SIGTERM; stderr:\n%s", p.name, stopTimeout, p.Stderr())
	}
	if err := p.exitErr(); err != nil {
		t.Fatalf("%s after SIGTERM: %v, want exit 0; stderr:\n%s", p.name, err, p.Stderr())
	}
}

// Kill9 kills the process with SIGKILL (a crash) and waits until it is
// gone.
func (p *process) Kill9(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("SIGKILL %s: %v", p.name, err)
	}
	if !p.waitExit(stopTimeout) {
		t.Fatalf("%s survived SIGKILL for %v", p.name, stopTimeout)
	}
}

// cleanup kills the child if it still runs, reports a data race it
// printed, and prints its stderr when the test failed.
func (p *process) cleanup(t testing.TB) {
	if p.Running() {
		_ = p.cmd.Process.Kill()
		if !p.waitExit(stopTimeout) {
			t.Errorf("%s (pid %d) survived SIGKILL", p.name, p.cmd.Process.Pid)
		}
	}
	if s := p.Stderr(); strings.Contains(s, "WARNING: DATA RACE") {
		t.Errorf("%s reported a data race:\n%s", p.name, s)
	} else if t.Failed() {
		t.Logf("%s stderr:\n%s", p.name, s)
	}
}

// readyFields splits "PREFIX first k=v k=v …" into the first field and the
// key=value fields after it. A value may be Go-quoted (custodian="CN=…").
func readyFields(line, prefix string) (string, map[string]string, error) {
	parts := strings.Fields(strings.TrimPrefix(line, prefix))
	fields := map[string]string{}
	first := ""
	for i, kv := range parts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			if i == 0 {
				first = kv
				continue
			}
			return "", nil, fmt.Errorf("ready line %q: field %q is not key=value", line, kv)
		}
		fields[k] = v
	}
	return first, fields, nil
}

// hasFlag reports whether args set flag (--flag v or --flag=v).
func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// FreePort returns a loopback TCP port nobody listens on right now: for a
// URL that refuses connections, or a port to hand a process (which may
// find it taken by then, and should be retried).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// LogLines are the JSON lines of logs (a process's stderr, a captured
// slog JSON handler) whose msg starts with prefix, decoded.
func LogLines(logs, prefix string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			if msg, _ := m["msg"].(string); strings.HasPrefix(msg, prefix) {
				out = append(out, m)
			}
		}
	}
	return out
}
