package peer

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestListenUnixMode(t *testing.T) {
	for _, tc := range []struct {
		mode, want os.FileMode
	}{
		{0, 0o600},
		{0o600, 0o600},
		{0o660, 0o660},
		{0o666, 0o666},
	} {
		t.Run(fmt.Sprintf("%#o", tc.mode), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "sidecar.sock")
			l, err := ListenUnix(path, tc.mode)
			if err != nil {
				t.Fatalf("ListenUnix() = %v", err)
			}
			defer l.Close()
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != tc.want {
				t.Errorf("socket file mode = %v, want socket with %v", fi.Mode(), tc.want)
			}
			if got := l.Addr().String(); got != path {
				t.Errorf("Addr() = %q, want %q", got, path)
			}
			entries, err := os.ReadDir(dir)
			if err != nil || len(entries) != 1 {
				t.Errorf("directory holds %v, want only the socket", entries)
			}
			mustConnect(t, path)
		})
	}
}

func TestListenUnixRefusesBadMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	if l, err := ListenUnix(path, os.ModeSetuid|0o600); err == nil {
		l.Close()
		t.Error("ListenUnix(setuid mode) succeeded")
	}
}

func TestListenUnixReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}

	l, err := ListenUnix(path, 0)
	if err != nil {
		t.Fatalf("ListenUnix() over a stale socket = %v", err)
	}
	defer l.Close()
	mustConnect(t, path)
}

func TestListenUnixLeavesLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	first, err := ListenUnix(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if l, err := ListenUnix(path, 0); !errors.Is(err, ErrPathInUse) {
		if err == nil {
			l.Close()
		}
		t.Fatalf("ListenUnix() over a live socket = %v, want ErrPathInUse", err)
	}
	mustConnect(t, path)
}

func TestListenUnixLeavesRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := ListenUnix(path, 0); !errors.Is(err, ErrPathInUse) {
		if err == nil {
			l.Close()
		}
		t.Fatalf("ListenUnix() over a regular file = %v, want ErrPathInUse", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
		t.Errorf("regular file now %q, %v; want it untouched", b, err)
	}
}

func TestListenUnixCloseRemovesOnlyItsSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	l, err := ListenUnix(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Close(): %v, want it removed", err)
	}

	l, err = ListenUnix(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("someone else's"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Close() removed a file it did not create: %v", err)
	}
}

func mustConnect(t *testing.T, path string) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("Dial(%s) = %v", path, err)
	}
	c.Close()
}
