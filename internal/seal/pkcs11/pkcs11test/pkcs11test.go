// Package pkcs11test gives tests a SoftHSM2 token. Once per test binary,
// Start runs scripts/softhsm.sh init (which installs SoftHSM2 when it is
// missing) into a new temporary directory and points SOFTHSM2_CONF at it;
// every test of the binary then shares that one token and tells its state
// apart by key label (KeyLabel).
//
// Fresh instead makes a token of a test's own, for tests that run the
// module only in child processes (the dcaas binary).
//
// A test that cannot get a token fails with the reason. DCAAS_SKIP_HSM=1
// in the environment skips such tests instead, for machines that cannot
// install packages.
//
// A package using it removes the directory from TestMain:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		pkcs11test.Cleanup()
//		os.Exit(code)
//	}
package pkcs11test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/secret"
)

// SkipEnv is the environment variable that, set to 1, makes Start skip
// rather than fail when SoftHSM2 is unavailable.
const SkipEnv = "DCAAS_SKIP_HSM"

// Label is the label of the token Start initializes.
const Label = "dcaas-test"

// Token is the test binary's SoftHSM2 token.
type Token struct {
	Module  string // the PKCS#11 module path
	Label   string // the token label
	Dir     string // the SoftHSM2 home: softhsm2.conf, tokens/, user.pin
	PINFile string // holds the user PIN
	Conf    string // the SOFTHSM2_CONF path (already set in this process)
	Took    time.Duration

	pin []byte
}

// PIN returns a copy of the user PIN that the caller owns.
func (tk *Token) PIN() *secret.Bytes { return secret.Copy(tk.pin) }

// Env returns the environment a child process needs to reach the token
// (SOFTHSM2_CONF), appended to os.Environ().
func (tk *Token) Env() []string { return append(os.Environ(), "SOFTHSM2_CONF="+tk.Conf) }

var (
	once  sync.Once
	token *Token
	err   error
)

// Start returns the test binary's token, setting it up on the first call.
// It fails t when SoftHSM2 cannot be installed or initialized, and skips t
// when DCAAS_SKIP_HSM=1.
func Start(t testing.TB) *Token {
	t.Helper()
	if os.Getenv(SkipEnv) == "1" {
		t.Skipf("%s=1: skipping a test that needs SoftHSM2", SkipEnv)
	}
	once.Do(func() { token, err = setUp() })
	if err != nil {
		t.Fatalf("SoftHSM2 is needed and could not be set up (set %s=1 to skip these tests): %v", SkipEnv, err)
	}
	return token
}

// Fresh initializes a token of t's own in a directory under t.TempDir(),
// for tests that use the module only in child processes: it does not set
// SOFTHSM2_CONF in this process (pass Env, or Conf, to the children). Like
// Start, it fails t when SoftHSM2 cannot be set up and skips t when
// DCAAS_SKIP_HSM=1.
func Fresh(t testing.TB) *Token {
	t.Helper()
	if os.Getenv(SkipEnv) == "1" {
		t.Skipf("%s=1: skipping a test that needs SoftHSM2", SkipEnv)
	}
	tk, err := initToken(t.TempDir())
	if err != nil {
		t.Fatalf("SoftHSM2 is needed and could not be set up (set %s=1 to skip these tests): %v", SkipEnv, err)
	}
	return tk
}

// KeyLabel is a root-key label of t's own: the same for every call with t,
// different for every other test of the binary.
func KeyLabel(t testing.TB) string { return "dcaas-test/" + t.Name() }

// Cleanup removes the token directory, if Start made one.
func Cleanup() {
	if token != nil {
		os.RemoveAll(token.Dir)
	}
}

// setUp makes the binary's token and points SOFTHSM2_CONF at it.
func setUp() (*Token, error) {
	dir, err := os.MkdirTemp("", "dcaas-softhsm-")
	if err != nil {
		return nil, err
	}
	tk, err := initToken(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := os.Setenv("SOFTHSM2_CONF", tk.Conf); err != nil {
		return nil, err
	}
	return tk, nil
}

// initToken runs scripts/softhsm.sh init dir and reads what it made.
func initToken(dir string) (*Token, error) {
	start := time.Now()
	script, err := findScript()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("bash", script, "init", dir)
	cmd.Env = append(os.Environ(), "SOFTHSM_LABEL="+Label)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s init: %w\n%s", script, err, stderr.Bytes())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if k, v, found := strings.Cut(line, "="); ok && found {
			env[k] = unquote(v)
		}
	}
	tk := &Token{
		Module:  env["DCAAS_PKCS11_MODULE"],
		Label:   env["DCAAS_PKCS11_TOKEN"],
		Dir:     dir,
		PINFile: env["DCAAS_PKCS11_PIN_FILE"],
		Conf:    env["SOFTHSM2_CONF"],
	}
	if tk.Module == "" || tk.Label == "" || tk.PINFile == "" || tk.Conf == "" {
		return nil, fmt.Errorf("%s init printed %q, want the four exports", script, out)
	}
	if tk.pin, err = os.ReadFile(tk.PINFile); err != nil {
		return nil, err
	}
	tk.Took = time.Since(start)
	return tk, nil
}

// unquote undoes bash's printf %q for the plain paths the script prints.
func unquote(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// findScript looks for scripts/softhsm.sh in the working directory and its
// parents (go test runs in the package directory).
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "scripts", "softhsm.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("scripts/softhsm.sh not found in any parent of the working directory")
		}
		dir = parent
	}
}
