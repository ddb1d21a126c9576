package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcaas/dcaas/client"
)

const sidecarReadyPrefix = "dcaas sidecar ready: "

// SidecarConfig says how to run `dcaas sidecar serve`.
type SidecarConfig struct {
	// Name names the process in messages (default "sidecar").
	Name string
	// KMSURL is --kms: a KMS, or a load balancer in front of replicas.
	KMSURL string
	// CAPEM is the KMS CA, written to a file for --ca.
	CAPEM []byte
	// Token is the one-time enrollment token, given in
	// DCAAS_ENROLL_TOKEN (never on the command line). Secret.
	Token string
	// PollInterval is --poll-interval (0: the binary's default).
	PollInterval time.Duration
	// DataDir is --data-dir (default: a new directory in t.TempDir()).
	DataDir string
	// Flags are further flags of `dcaas sidecar serve`.
	Flags []string
}

// Sidecar is a `dcaas sidecar serve` process serving on a Unix socket.
type Sidecar struct {
	cfg      SidecarConfig
	proc     *process
	socket   string
	instance string
	ready    string
}

// StartSidecar starts a sidecar, which enrolls with cfg.Token, and waits
// for its ready line, its socket and GET /healthz over the socket. It
// fails t if the sidecar does not come up. The process is killed when t
// ends.
func StartSidecar(t testing.TB, cfg SidecarConfig) *Sidecar {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "sidecar"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	caFile := filepath.Join(t.TempDir(), "kms-ca.pem")
	if err := os.WriteFile(caFile, cfg.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"sidecar", "serve", "--kms", cfg.KMSURL, "--ca", caFile, "--data-dir", cfg.DataDir}
	if !hasFlag(cfg.Flags, "--socket") {
		args = append(args, "--socket", socketPath(t, cfg.DataDir))
	}
	if cfg.PollInterval > 0 {
		args = append(args, "--poll-interval", cfg.PollInterval.String())
	}
	args = append(args, cfg.Flags...)
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(), "DCAAS_ENROLL_TOKEN="+cfg.Token)
	s := &Sidecar{cfg: cfg, proc: startProcess(t, cfg.Name, cmd, sidecarReadyPrefix)}
	line, ok := s.proc.waitReady(t)
	if !ok {
		t.Fatal(s.proc.exitedEarly())
	}
	_, fields, err := readyFields(line, sidecarReadyPrefix)
	if err != nil {
		t.Fatal(err)
	}
	s.ready, s.socket, s.instance = line, fields["socket"], fields["instance"]
	if s.socket == "" || s.instance == "" {
		t.Fatalf("%s: ready line %q names no socket or instance", cfg.Name, line)
	}
	if st, err := os.Stat(s.socket); err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s: ready, but %s is not a socket (%v)", cfg.Name, s.socket, err)
	}
	if err := s.proc.waitHealthy(t, s.Client(t, client.WithRetry(1, 0, 0), client.WithTimeout(5*time.Second)).Health); err != nil {
		t.Fatal(err)
	}
	return s
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

// InstanceID is the instance id the KMS gave the sidecar at enrollment.
func (s *Sidecar) InstanceID() string { return s.instance }

// ReadyLine is the line the sidecar printed when it was ready.
func (s *Sidecar) ReadyLine() string { return s.ready }

// PollInterval is the sidecar's revocation poll interval, 0 for the
// binary's default.
func (s *Sidecar) PollInterval() time.Duration { return s.cfg.PollInterval }

// Stop asks the sidecar to shut down (SIGTERM) and checks that it exits 0.
func (s *Sidecar) Stop(t testing.TB) { t.Helper(); s.proc.stop(t) }

// Kill9 kills the sidecar with SIGKILL and waits until it is gone.
func (s *Sidecar) Kill9(t testing.TB) { t.Helper(); s.proc.kill9(t) }

// Stderr is the tail of the sidecar's stderr.
func (s *Sidecar) Stderr() string { return s.proc.Stderr() }
