package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/client"
)

const sidecarReadyPrefix = "dcaas sidecar ready: "

// SidecarConfig says how to run `dcaas sidecar serve`.
type SidecarConfig struct {
	// Name names the process in messages (default "sidecar").
	Name string
	// KMSURL is --kms: a KMS, a load balancer in front of replicas, or
	// several replicas separated by commas (the sidecar fails over from
	// one to the next).
	KMSURL string
	// CAPEM is the KMS CA, written to a file for --ca.
	CAPEM []byte
	// Token is the one-time enrollment token, given in
	// DCAAS_ENROLL_TOKEN (never on the command line). Secret.
	Token string
	// Waiting starts the sidecar without a token, as a restarted sidecar
	// starts: it serves, GET /v1/status says "enrolled": false, and it
	// waits until Enroll (or its custodian otherwise) hands it one. Token
	// must be empty.
	Waiting bool
	// PollInterval is --poll-interval (0: the binary's default).
	PollInterval time.Duration
	// DataDir is --data-dir (default: a new directory in t.TempDir()).
	DataDir string
	// Flags are further flags of `dcaas sidecar serve`.
	Flags []string
}

// Sidecar is a `dcaas sidecar serve` process serving on a Unix socket.
// After Stop or Kill9, Restart runs a new process on the same data dir
// and socket.
type Sidecar struct {
	cfg    SidecarConfig
	caFile string
	*process
	socket   string
	instance string
	ready    string
}

// StartSidecar starts a sidecar and waits for its ready line, its socket
// and GET /healthz over the socket. With cfg.Token it enrolls with the
// token before it is ready; with cfg.Waiting it is ready unenrolled (see
// Enroll). It fails t if the sidecar does not come up. The process is
// killed when t ends.
func StartSidecar(t testing.TB, cfg SidecarConfig) *Sidecar {
	t.Helper()
	switch {
	case cfg.Waiting && cfg.Token != "":
		t.Fatal("e2e.StartSidecar: Waiting with a Token")
	case !cfg.Waiting && cfg.Token == "":
		t.Fatal("e2e.StartSidecar: no Token (set Waiting to start one that waits for enrollment)")
	}
	if cfg.Name == "" {
		cfg.Name = "sidecar"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	s := &Sidecar{cfg: cfg, caFile: filepath.Join(t.TempDir(), "kms-ca.pem")}
	if err := os.WriteFile(s.caFile, cfg.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if !hasFlag(cfg.Flags, "--socket") {
		s.cfg.Flags = append([]string{"--socket", socketPath(t, cfg.DataDir)}, cfg.Flags...)
	}
	s.launch(t, cfg.Token)
	return s
}

// launch runs `dcaas sidecar serve` with token ("" for none) and waits
// until it serves.
func (s *Sidecar) launch(t testing.TB, token string) {
	t.Helper()
	args := []string{"sidecar", "serve", "--kms", s.cfg.KMSURL, "--ca", s.caFile, "--data-dir", s.cfg.DataDir}
	if s.cfg.PollInterval > 0 {
		args = append(args, "--poll-interval", s.cfg.PollInterval.String())
	}
	args = append(args, s.cfg.Flags...)
	cmd := exec.Command(Binary(t), args...)
	// DCAAS_ENROLL_TOKEN is set either way: an empty value is no token,
	// whatever the test process's environment holds.
	cmd.Env = append(os.Environ(), "DCAAS_ENROLL_TOKEN="+token)
	s.process = startProcess(t, s.cfg.Name, cmd, sidecarReadyPrefix)
	line, ok := s.process.waitReady(t)
	if !ok {
		t.Fatal(s.process.exitedEarly())
	}
	// A sidecar that waits for a token says so after its fields:
	// "… socket=PATH (waiting for a token: …)".
	fieldsPart, _, _ := strings.Cut(line, " (")
	_, fields, err := readyFields(fieldsPart, sidecarReadyPrefix)
	if err != nil {
		t.Fatal(err)
	}
	s.ready, s.socket, s.instance = line, fields["socket"], fields["instance"]
	waiting := fields["enrolled"] == "false"
	switch {
	case s.socket == "":
		t.Fatalf("%s: ready line %q names no socket", s.cfg.Name, line)
	case token != "" && (waiting || s.instance == ""):
		t.Fatalf("%s: started with a token, but the ready line %q names no instance", s.cfg.Name, line)
	case token == "" && !waiting:
		t.Fatalf("%s: started without a token, but the ready line %q does not say enrolled=false", s.cfg.Name, line)
	}
	if st, err := os.Stat(s.socket); err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s: ready, but %s is not a socket (%v)", s.cfg.Name, s.socket, err)
	}
	if err := s.process.waitHealthy(t, s.Client(t, client.WithRetry(1, 0, 0), client.WithTimeout(5*time.Second)).Health); err != nil {
		t.Fatal(err)
	}
}

// Enroll enrolls a sidecar that waits for a token the way an operator or
// an enroll agent does: `dcaas sidecar enroll` on its socket, as the
// custodian of certPEM/keyPEM at ep, which mints a one-time token for
// itself and hands it over the socket (and revokes the instance the data
// dir held before, if any). It fails t unless the command exits 0 having
// enrolled the sidecar, and returns what the command printed.
func (s *Sidecar) Enroll(t testing.TB, ep Endpoint, certPEM, keyPEM []byte) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{"ca.pem": ep.CAPEM, "cert.pem": certPEM, "key.pem": keyPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), readyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), "sidecar", "enroll", "--socket", s.socket,
		"--kms", strings.Join(ep.URLs, ","), "--ca", filepath.Join(dir, "ca.pem"),
		"--cert", filepath.Join(dir, "cert.pem"), "--key", filepath.Join(dir, "key.pem"))
	cmd.Env = append(os.Environ(), "DCAAS_EKB_STORE=")
	cmd.WaitDelay = stopTimeout
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: dcaas sidecar enroll: %v\nstdout:\n%s\nstderr:\n%s", s.cfg.Name, err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "enrolled the sidecar: instance=") {
		t.Fatalf("%s: dcaas sidecar enroll did not enroll it:\n%s", s.cfg.Name, out.String())
	}
	st, err := s.Client(t).Status(t.Context())
	if err != nil {
		t.Fatalf("%s: status after enrolling: %v", s.cfg.Name, err)
	}
	if !st.Enrolled || st.InstanceID == "" {
		t.Fatalf("%s: status after dcaas sidecar enroll = %+v, want enrolled", s.cfg.Name, st)
	}
	s.instance = st.InstanceID
	return out.String()
}

// Restart starts the sidecar again after Stop or Kill9, on the same data
// dir and socket and without a token, as a supervisor restarts it. Its
// keys and identity were in the old process's memory: it waits for Enroll
// (InstanceID is "" until then; GET /v1/status names the instance the
// data dir held before).
func (s *Sidecar) Restart(t testing.TB) {
	t.Helper()
	if s.process.Running() {
		t.Fatalf("%s: Restart while it runs", s.cfg.Name)
	}
	// A sidecar killed with SIGKILL leaves its socket file behind; the
	// new process replaces it.
	s.launch(t, "")
}

// socketPath is DIR/sidecar.sock, or a path in a short new directory when
// that is longer than a Unix socket address may be.
func socketPath(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "sidecar.sock")
	if len(p) < 100 {
		return p
	}
	short, err := os.MkdirTemp("", "e2e-sc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	return filepath.Join(short, "sidecar.sock")
}

// Client returns an SDK client of the sidecar's socket, closed when t
// ends.
func (s *Sidecar) Client(t testing.TB, opts ...client.Option) *client.Sidecar {
	t.Helper()
	c, err := client.NewSidecarUnix(s.socket, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Socket is the path of the sidecar's Unix socket.
func (s *Sidecar) Socket() string { return s.socket }

// InstanceID is the instance id the KMS gave the sidecar at enrollment
// ("" while it waits for its first).
func (s *Sidecar) InstanceID() string { return s.instance }

// ReadyLine is the line the current process printed when it was ready.
func (s *Sidecar) ReadyLine() string { return s.ready }

// PollInterval is the sidecar's revocation poll interval, 0 for the
// binary's default.
func (s *Sidecar) PollInterval() time.Duration { return s.cfg.PollInterval }
