package main_test

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/dcaas/dcaas/internal/e2e"
)

// TestKMSScrubsSecretsFromEnviron: the seal passphrase given in the
// environment is gone from /proc/<pid>/environ once the KMS has read it
// (before, os.Unsetenv left it there for the process's life, readable by
// any process of the same uid).
func TestKMSScrubsSecretsFromEnviron(t *testing.T) {
	t.Parallel()
	const pass = "correct-horse-battery-staple-7"
	p := e2e.StartKMS(t, e2e.KMSConfig{Env: []string{"DCAAS_SEAL_PASSPHRASE=" + pass}})
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(environ, []byte(pass)) {
		t.Fatal("/proc/<pid>/environ of the running KMS still holds DCAAS_SEAL_PASSPHRASE's value")
	}
	if !bytes.Contains(environ, []byte("DCAAS_SEAL_PASSPHRASE=\x00")) {
		t.Errorf("the variable was not scrubbed in place: %q", environ)
	}
}
