package sidecar_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dcaas/dcaas/sidecar"
)

func TestListenUnixMode(t *testing.T) {
	dir := t.TempDir()
	if _, err := sidecar.ListenUnixMode(filepath.Join(dir, "world.sock"), 0o666); err == nil {
		t.Fatal("a world-accessible socket mode was accepted")
	}
	path := filepath.Join(dir, "group.sock")
	ln, err := sidecar.ListenUnixMode(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode = %v, %v; want 0660", fi.Mode().Perm(), err)
	}
}
