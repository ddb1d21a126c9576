package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/kms"
)

const kmsReadyPrefix = "dcaas kms ready: "

// kmsSealedPrefix starts the line a share-sealed KMS prints when it
// listens, sealed (KMSConfig.Sealed).
const kmsSealedPrefix = "dcaas kms sealed: "

// KMSConfig says how to run `dcaas kms serve`. The zero value is a fresh
// SQLite data dir in t.TempDir() on a free loopback port.
type KMSConfig struct {
	// Name names the process in messages (default "kms").
	Name string
	// DataDir is the data dir (default: a new directory in t.TempDir()).
	DataDir string
	// DataDirArg is what --data-dir says, when it is not DataDir itself:
	// a path relative to Dir (default DataDir).
	DataDirArg string
	// Dir is the working directory of the process (default this one's).
	Dir string
	// Listen is the --listen address (default 127.0.0.1:0, unless Flags
	// hold a --listen).
	Listen string
	// PostgresDSN, when set, runs the KMS with --store postgres on that
	// database, the DSN given in DCAAS_POSTGRES_DSN as an operator would.
	PostgresDSN string
	// RootKey, when set and DataDir has no root.key yet, is written there
	// before the start: replicas on one database share one root key.
	RootKey []byte
	// Flags are further flags of `dcaas kms serve`.
	Flags []string
	// Env holds further environment variables (KEY=value).
	Env []string
	// Sealed: the data dir's root key is split into unseal key shares
	// (dcaas seal init), so the KMS starts sealed: the fixture waits for
	// its "dcaas kms sealed:" line instead of the ready line and a
	// healthy /healthz (each start, Restart included).
	Sealed bool
}

// KMS is a `dcaas kms serve` process. After Stop or Kill9, Restart runs a
// new process on the same data dir and URL.
type KMS struct {
	cfg KMSConfig
	*process
	url    string
	ready  string
	fields map[string]string
}

// StartKMS starts a KMS and waits until it is ready: its ready line, then
// GET /healthz answering "ok". It fails t if the KMS does not come up.
// The process is killed when t ends.
func StartKMS(t testing.TB, cfg KMSConfig) *KMS {
	t.Helper()
	k, err := LaunchKMS(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// LaunchKMS is StartKMS that returns an error, instead of failing t, when
// the process exits before it is ready (a bad flag, a busy port, a root
// key that does not open); the error holds its stderr.
func LaunchKMS(t testing.TB, cfg KMSConfig) (*KMS, error) {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "kms"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(t.TempDir(), "kms")
	}
	if cfg.DataDirArg == "" {
		cfg.DataDirArg = cfg.DataDir
	}
	if cfg.Listen == "" && !hasFlag(cfg.Flags, "--listen") {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.RootKey != nil {
		writeRootKey(t, cfg.DataDir, cfg.RootKey)
	}
	k := &KMS{cfg: cfg}
	if err := k.launch(t); err != nil {
		return nil, err
	}
	return k, nil
}

func writeRootKey(t testing.TB, dataDir string, key []byte) {
	t.Helper()
	path := filepath.Join(dataDir, "root.key")
	if _, err := os.Stat(path); err == nil {
		return
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, key, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (k *KMS) launch(t testing.TB) error {
	t.Helper()
	args := []string{"kms", "serve", "--data-dir", k.cfg.DataDirArg}
	if k.cfg.Listen != "" {
		args = append(args, "--listen", k.cfg.Listen)
	}
	env := os.Environ()
	if k.cfg.PostgresDSN != "" {
		args = append(args, "--store", "postgres")
		env = append(env, "DCAAS_POSTGRES_DSN="+k.cfg.PostgresDSN)
	}
	args = append(args, k.cfg.Flags...)
	cmd := exec.Command(Binary(t), args...)
	cmd.Dir = k.cfg.Dir
	cmd.Env = append(env, k.cfg.Env...)
	prefix := kmsReadyPrefix
	if k.cfg.Sealed {
		prefix = kmsSealedPrefix
	}
	k.process = startProcess(t, k.cfg.Name, cmd, prefix)
	line, ok := k.process.waitReady(t)
	if !ok {
		return k.process.exitedEarly()
	}
	first, fields, err := readyFields(line, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(first, "https://") {
		t.Fatalf("%s: ready line %q does not start with an https:// address", k.cfg.Name, line)
	}
	k.ready, k.url, k.fields = line, first, fields
	if k.cfg.Sealed {
		return nil
	}
	return k.waitHealthy(t)
}

// waitHealthy polls GET /healthz through the SDK until it answers "ok".
func (k *KMS) waitHealthy(t testing.TB) error {
	t.Helper()
	c := k.Endpoint(t).Anonymous(t, client.WithRetry(1, 0, 0), client.WithTimeout(5*time.Second))
	return k.process.waitHealthy(t, c.Health)
}

// Restart starts the KMS again after Stop or Kill9, on the same data dir
// and the same address, and waits until it is ready.
func (k *KMS) Restart(t testing.TB) {
	t.Helper()
	if k.process.Running() {
		t.Fatalf("%s: Restart while it runs", k.cfg.Name)
	}
	if !hasFlag(k.cfg.Flags, "--listen") {
		k.cfg.Listen = k.Addr()
	}
	// The address is free once the old process is gone; a socket of it
	// in the kernel may still hold it for a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := k.launch(t)
		if err == nil {
			return
		}
		if !errors.Is(err, errExited) || !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			t.Fatalf("restart: %v", err)
		}
		time.Sleep(pollEvery)
	}
}

// URL is the KMS's base URL, https://127.0.0.1:PORT.
func (k *KMS) URL() string { return k.url }

// Addr is the host:port the KMS listens on.
func (k *KMS) Addr() string { return strings.TrimPrefix(k.url, "https://") }

// Name is the name the KMS has in messages.
func (k *KMS) Name() string { return k.cfg.Name }

// DataDir is the KMS's data dir (absolute unless KMSConfig.DataDir was
// relative).
func (k *KMS) DataDir() string { return k.cfg.DataDir }

// ReadyLine is the line the current process printed when it was ready.
func (k *KMS) ReadyLine() string { return k.ready }

// Field is a key=value field of the ready line ("data-dir", "seal", …).
func (k *KMS) Field(key string) string { return k.fields[key] }

// StdoutLines are the lines the current process printed on stdout.
func (k *KMS) StdoutLines() []string { return k.process.stdoutLines() }

// StderrAll is the whole of the current process's stderr (its log: one
// line per request at the default level, so the tail may not reach back).
func (k *KMS) StderrAll() string { return k.process.stderrAll() }

// ReadFile reads a file of the data dir (name relative to it).
func (k *KMS) ReadFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k.cfg.DataDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Endpoint is how to reach this KMS: its URL, the CA of its data dir and
// the admin credentials the first start wrote there.
func (k *KMS) Endpoint(t testing.TB) Endpoint {
	t.Helper()
	return Endpoint{
		URLs:         []string{k.url},
		CAPEM:        k.ReadFile(t, kms.CAFile),
		AdminCertPEM: k.ReadFile(t, kms.AdminCert),
		AdminKeyPEM:  k.ReadFile(t, kms.AdminKey),
	}
}

// StartReplicas starts n KMS replicas ("kms A", "kms B", …) on the
// PostgreSQL database dsn, each with its own data dir in t.TempDir() and
// any extra flags. A initializes the database; the others get A's root
// key before their first start and find the CA in the database.
func StartReplicas(t testing.TB, n int, dsn string, flags ...string) []*KMS {
	t.Helper()
	if n < 1 || n > 26 {
		t.Fatalf("StartReplicas(%d): want 1 to 26 replicas", n)
	}
	work := t.TempDir()
	out := make([]*KMS, n)
	for i := range out {
		letter := string(rune('a' + i))
		cfg := KMSConfig{
			Name:        "kms " + strings.ToUpper(letter),
			DataDir:     filepath.Join(work, "kms-"+letter),
			PostgresDSN: dsn,
			Flags:       flags,
		}
		if i > 0 {
			cfg.RootKey = out[0].ReadFile(t, "root.key")
		}
		out[i] = StartKMS(t, cfg)
	}
	return out
}

// Endpoint is where and how to reach a KMS: base URLs (one replica,
// several, or a load balancer), the CA PEM its server certificates chain
// to, and the admin's client certificate and key (secret).
type Endpoint struct {
	URLs                      []string
	CAPEM                     []byte
	AdminCertPEM, AdminKeyPEM []byte
}

// At returns e with other base URLs (a load balancer's, several
// replicas').
func (e Endpoint) At(urls ...string) Endpoint {
	e.URLs = urls
	return e
}

// Client returns an SDK client of e's URLs that authenticates with
// certPEM and keyPEM (both nil: anonymous). It is closed when t ends.
func (e Endpoint) Client(t testing.TB, certPEM, keyPEM []byte, opts ...client.Option) *client.KMS {
	t.Helper()
	c, err := client.NewKMS(e.URLs, e.CAPEM, certPEM, keyPEM, opts...)
	if err != nil {
		t.Fatalf("client.NewKMS(%v): %v", e.URLs, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Admin is Client with the admin credentials.
func (e Endpoint) Admin(t testing.TB, opts ...client.Option) *client.KMS {
	t.Helper()
	return e.Client(t, e.AdminCertPEM, e.AdminKeyPEM, opts...)
}

// Anonymous is Client without a client certificate (enough for Health).
func (e Endpoint) Anonymous(t testing.TB, opts ...client.Option) *client.KMS {
	t.Helper()
	return e.Client(t, nil, nil, opts...)
}

// String names the endpoint's URLs, for messages.
func (e Endpoint) String() string { return fmt.Sprint(e.URLs) }
