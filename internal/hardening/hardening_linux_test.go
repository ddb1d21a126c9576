package hardening

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The tests re-run the test binary as a child, since both change the
// process for good.
const childEnv = "DCAAS_HARDENING_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "scrub":
		if err := ScrubEnv("DCAAS_TEST_SECRET", "DCAAS_TEST_UNSET"); err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(2)
		}
		if os.Getenv("DCAAS_TEST_SECRET") != "" {
			os.Exit(3)
		}
		b, err := os.ReadFile("/proc/self/environ")
		if err != nil {
			os.Exit(4)
		}
		os.Stdout.Write(b)
		os.Exit(0)
	case "process":
		if err := Process(); err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(2)
		}
		d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
		var rl unix.Rlimit
		if err != nil || d != 0 || unix.Getrlimit(unix.RLIMIT_CORE, &rl) != nil || rl.Cur != 0 || rl.Max != 0 {
			os.Exit(5)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child(t *testing.T, mode string, env ...string) []byte {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), childEnv+"="+mode), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s: %v: %s", mode, err, stderr.String())
	}
	return out
}

// TestScrubEnv: /proc/self/environ, which shows the environment the
// process started with whatever os.Unsetenv did, no longer holds the
// secret; the other variables are intact.
func TestScrubEnv(t *testing.T) {
	const secret = "s3cr3t-passphrase-value"
	environ := child(t, "scrub", "DCAAS_TEST_SECRET="+secret, "DCAAS_TEST_KEEP=visible")
	if bytes.Contains(environ, []byte(secret)) {
		t.Fatalf("/proc/self/environ still holds the secret")
	}
	if !bytes.Contains(environ, []byte("DCAAS_TEST_KEEP=visible\x00")) {
		t.Errorf("/proc/self/environ lost another variable: %q", environ)
	}
	if !bytes.Contains(environ, []byte("DCAAS_TEST_SECRET="+strings.Repeat("\x00", len(secret)))) {
		t.Errorf("the secret's variable is not zeroed in place")
	}
}

func TestProcess(t *testing.T) { child(t, "process") }
