package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, tc := range []struct {
		data string
		mode os.FileMode
	}{{"first", 0o600}, {"second, longer", 0o644}} {
		if err := Write(path, []byte(tc.data), tc.mode); err != nil {
			t.Fatalf("Write = %v", err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != tc.data {
			t.Fatalf("ReadFile = %q, %v; want %q", got, err, tc.data)
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != tc.mode {
			t.Fatalf("mode = %v, want %v", fi.Mode().Perm(), tc.mode)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want 1 (no temp files left)", len(entries))
	}
	if err := Write(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("Write into a missing directory succeeded")
	}
}
