// Package pgtest gives tests a PostgreSQL database of their own. Start with
// DSN; a package that calls it runs its tests through Main:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		db, err := sqlstore.OpenPostgres(t.Context(), pgtest.DSN(t))
//		…
//	}
//
// The server is, in order of preference:
//
//   - none, and every DSN call skips its test, when DCAAS_SKIP_POSTGRES=1
//     (an explicit choice: nothing is skipped silently);
//   - the server DCAAS_TEST_POSTGRES_DSN names, whose user may create
//     databases; the databases pgtest made there are dropped at the end;
//   - a throwaway cluster that scripts/postgres.sh starts (installing
//     PostgreSQL first if needed) in a temporary directory, once per test
//     binary, and that Main stops and removes at the end.
//
// If PostgreSQL can be neither found nor installed and started, DSN fails
// the test and says why.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Environment variables pgtest reads.
const (
	EnvSkip = "DCAAS_SKIP_POSTGRES"     // "1": skip every test that needs PostgreSQL
	EnvDSN  = "DCAAS_TEST_POSTGRES_DSN" // a server to create test databases on
)

var (
	mainCalled bool // set by Main, before any test runs

	once   sync.Once
	srv    *server
	srvErr error
)

// server is the PostgreSQL server of this test binary.
type server struct {
	dsn   string        // its admin DSN (database postgres, or EnvDSN's)
	dir   string        // the throwaway cluster's directory; "" for EnvDSN
	admin *pgxpool.Pool // on dsn: creates and resets databases

	mu      sync.Mutex
	free    []string // databases reset to empty, ready for another test
	created []string // every database made, to drop on an external server
}

// Main runs the tests and then stops the cluster DSN started, if any, and
// exits with the tests' status. Call it from TestMain.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit: it runs the tests, stops the cluster and
// returns the status to exit with. For a TestMain with more to clean up
// (internal/e2e.Main calls it).
func Run(m *testing.M) int {
	mainCalled = true
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// DSN returns the DSN of a new, empty database that belongs to t alone
// until t ends. It skips t when DCAAS_SKIP_POSTGRES=1 and fails t when no
// server could be started.
func DSN(t testing.TB) string {
	t.Helper()
	if os.Getenv(EnvSkip) == "1" {
		t.Skipf("%s=1: PostgreSQL tests skipped", EnvSkip)
	}
	if !mainCalled {
		t.Fatal("pgtest: the package's TestMain must call pgtest.Main(m) (or pgtest.Run, or e2e.Main), which stops the cluster")
	}
	once.Do(func() {
		begin := time.Now()
		if srv, srvErr = startServer(); srvErr == nil {
			t.Logf("pgtest: %s (%v)", srv.describe(), time.Since(begin).Round(time.Millisecond))
		}
	})
	if srvErr != nil {
		t.Fatalf("pgtest: no PostgreSQL for this test: %v\n"+
			"Install PostgreSQL (scripts/postgres.sh does it as root), point %s at a server "+
			"whose user may create databases, or set %s=1 to skip these tests explicitly.",
			srvErr, EnvDSN, EnvSkip)
	}
	name, err := srv.take(t.Context())
	if err != nil {
		t.Fatalf("pgtest: a database for this test: %v", err)
	}
	t.Cleanup(func() { srv.recycle(name) })
	dsn, err := withDatabase(srv.dsn, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

func (s *server) describe() string {
	if s.dir == "" {
		return "using the server in $" + EnvDSN
	}
	return "started a throwaway cluster in " + s.dir
}

// startServer connects to EnvDSN's server or starts a throwaway cluster.
func startServer() (*server, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return connect(dsn, "")
	}
	script, err := findScript()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dcaas-pgtest-")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, "start", dir)
	// The script's watcher stops the cluster should this process die
	// before Main could.
	cmd.Env = append(os.Environ(), "DCAAS_PG_OWNER_PID="+strconv.Itoa(os.Getpid()))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		stopCluster(script, dir)
		return nil, fmt.Errorf("%s start %s: %v\n%s", script, dir, err, strings.TrimSpace(stderr.String()))
	}
	dsn := strings.TrimSpace(stdout.String())
	s, err := connect(dsn, dir)
	if err != nil {
		stopCluster(script, dir)
		return nil, err
	}
	return s, nil
}

func connect(dsn, dir string) (*server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgxpool.New(ctx, dsn)
	if err == nil {
		err = admin.Ping(ctx)
	}
	if err != nil {
		if admin != nil {
			admin.Close()
		}
		return nil, fmt.Errorf("connecting to %s: %w", redact(dsn), err)
	}
	return &server{dsn: dsn, dir: dir, admin: admin}, nil
}

// findScript finds scripts/postgres.sh in the module that holds the
// working directory (go test runs in the package's directory).
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "scripts", "postgres.sh")
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("the module root %s has no scripts/postgres.sh", dir)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("scripts/postgres.sh not found: no go.mod above the working directory")
		}
		dir = parent
	}
}

// take returns an empty database no other test holds: a recycled one, or
// a new one.
func (s *server) take(ctx context.Context) (string, error) {
	s.mu.Lock()
	if n := len(s.free); n > 0 {
		name := s.free[n-1]
		s.free = s.free[:n-1]
		s.mu.Unlock()
		return name, nil
	}
	s.mu.Unlock()
	name := "t_" + randomName()
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("CREATE DATABASE %s: %w", name, err)
	}
	s.mu.Lock()
	s.created = append(s.created, name)
	s.mu.Unlock()
	return name, nil
}

func randomName() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// recycle empties a database a test is done with and offers it to the next
// test: that costs a few milliseconds where CREATE DATABASE, copying a
// template with fsync on, costs hundreds. The test's connections are
// terminated first. A database that does not reset is left alone.
func (s *server) recycle(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.admin.Exec(ctx,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
		name); err != nil {
		return
	}
	dsn, err := withDatabase(s.dsn, name)
	if err != nil {
		return
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	// Everything a test can make lives in schema public: drop it whole.
	if _, err := conn.Exec(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public`); err != nil {
		return
	}
	s.mu.Lock()
	s.free = append(s.free, name)
	s.mu.Unlock()
}

// shutdown stops the throwaway cluster and removes its directory, or drops
// the databases made on an external server.
func shutdown() error {
	if srv == nil {
		return nil
	}
	if srv.dir != "" {
		srv.admin.Close()
		script, err := findScript()
		if err != nil {
			return err
		}
		return stopCluster(script, srv.dir)
	}
	defer srv.admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for _, name := range srv.created {
		if _, err := srv.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func stopCluster(script, dir string) error {
	out, err := exec.Command("bash", script, "stop", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s stop %s: %v\n%s", script, dir, err, out)
	}
	return os.RemoveAll(dir)
}

// withDatabase returns dsn with its database replaced by name.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parsing %s: %w", redact(dsn), err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil // a later keyword wins
}

// redact hides a URL DSN's password for messages.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return "the DSN"
}
