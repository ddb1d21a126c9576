package main_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestKMSScrubsSecretsFromEnviron: the seal passphrase given in the
// environment is gone from /proc/<pid>/environ once the KMS has read it
// (before, os.Unsetenv left it there for the process's life, readable by
// any process of the same uid).
func TestKMSScrubsSecretsFromEnviron(t *testing.T) {
	const pass = "correct-horse-battery-staple-7"
	t.Setenv("DCAAS_SEAL_PASSPHRASE", pass)
	p := startKMS(t, filepath.Join(t.TempDir(), "kms"))
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.cmd.Process.Pid))
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
