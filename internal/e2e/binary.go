package e2e

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store/pgtest"
)

// dcaasPkg is the import path of the dcaas command.
const dcaasPkg = "github.com/dcaas/dcaas/cmd/dcaas"

// buildTimeout bounds one `go build` (normally a link from the build
// cache; the first -race build on a busy machine takes minutes).
const buildTimeout = 10 * time.Minute

var (
	mainCalled bool // set by Main before any test runs

	buildMu  sync.Mutex
	buildDir string            // holds every binary this process built; Main removes it
	builds   map[string]*build // by import path
)

// build is one binary, built at most once per test process.
type build struct {
	once sync.Once
	path string
	err  error
}

// Main runs the tests, then removes the binaries Binary built and stops
// the PostgreSQL cluster pgtest started, and exits with the tests'
// status. Call it from TestMain.
func Main(m *testing.M) {
	mainCalled = true
	code := pgtest.Run(m)
	buildMu.Lock()
	dir := buildDir
	buildMu.Unlock()
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// Binary returns the path of the dcaas binary, building it on first use
// in this test process: later calls, from any test, return the same path.
// The binary has -race when this test binary has it. Binary skips t in
// -short mode.
func Binary(t testing.TB) string {
	t.Helper()
	return binaryOf(t, dcaasPkg)
}

func binaryOf(t testing.TB, pkg string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the dcaas binary; skipped in -short mode")
	}
	if !mainCalled {
		t.Fatal("e2e: the package's TestMain must call e2e.Main(m), which removes the binaries it builds")
	}
	buildMu.Lock()
	if builds == nil {
		builds = map[string]*build{}
	}
	b := builds[pkg]
	if b == nil {
		b = &build{}
		builds[pkg] = b
	}
	buildMu.Unlock()
	b.once.Do(func() {
		if p, ok := prebuilt(t, pkg); ok {
			b.path = p
			return
		}
		begin := time.Now()
		b.path, b.err = goBuild(pkg)
		if b.err == nil {
			t.Logf("e2e: built %s with -race=%t in %v", pkg, raceEnabled(), time.Since(begin).Round(time.Millisecond))
		}
	})
	if b.err != nil {
		t.Fatalf("e2e: building %s: %v", pkg, b.err)
	}
	return b.path
}

// PrebuiltEnv names a dcaas binary built from this tree for this run
// (scripts/test.sh builds one with -race and one without, once, instead
// of one per test package). It is used only when its -race setting is the
// test binary's; otherwise Binary builds its own.
const PrebuiltEnv = "DCAAS_E2E_BINARY"

// prebuilt is the binary PrebuiltEnv names, when it fits this test binary.
func prebuilt(t testing.TB, pkg string) (string, bool) {
	path := os.Getenv(PrebuiltEnv)
	if pkg != dcaasPkg || path == "" {
		return "", false
	}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Logf("e2e: %s=%s: %v; building the binary instead", PrebuiltEnv, path, err)
		return "", false
	}
	race := false
	for _, s := range info.Settings {
		if s.Key == "-race" {
			race = s.Value == "true"
		}
	}
	if info.Path != pkg || race != raceEnabled() {
		t.Logf("e2e: %s=%s is %s with -race=%t, this test wants -race=%t; building the binary instead", PrebuiltEnv, path, info.Path, race, raceEnabled())
		return "", false
	}
	return path, true
}

func goBuild(pkg string) (string, error) {
	gotool, err := goTool()
	if err != nil {
		return "", err
	}
	buildMu.Lock()
	if buildDir == "" {
		if buildDir, err = os.MkdirTemp("", "dcaas-e2e-bin-"); err != nil {
			buildMu.Unlock()
			return "", err
		}
	}
	out := filepath.Join(buildDir, filepath.Base(pkg))
	buildMu.Unlock()
	args := []string{"build", "-o", out}
	if raceEnabled() {
		args = append(args, "-race")
	}
	args = append(args, pkg)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	if b, err := exec.CommandContext(ctx, gotool, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
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

// raceEnabled reports whether this test binary was built with -race.
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
