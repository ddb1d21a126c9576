package peer

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// maxSocketPath is the longest path bind(2) takes on Linux (sun_path
// holds 108 bytes, NUL included).
const maxSocketPath = 107

// ListenUnix listens on a Unix socket at path whose file has permission
// bits mode (0 means 0600). The socket is never reachable with looser
// permissions: it is bound inside a fresh 0700 directory next to path,
// chmod'ed, then hard-linked into place (which never replaces a file).
//
// A stale socket at path (nobody accepting) is removed first. A live
// socket or anything that is not a socket is left alone and reported as
// ErrPathInUse. Closing the listener removes the socket file if it is
// still the one it created.
func ListenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if mode == 0 {
		mode = 0o600
	}
	if mode&^os.ModePerm != 0 {
		return nil, fmt.Errorf("peer: socket mode %v: only permission bits allowed", mode)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp(filepath.Dir(path), ".sock-")
	if err != nil {
		return nil, fmt.Errorf("peer: listening on %s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	if len(tmp) > maxSocketPath {
		return nil, fmt.Errorf("peer: socket directory of %s too long: binding needs %d bytes, at most %d fit",
			path, len(tmp), maxSocketPath)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("peer: listening on %s: %w", path, err)
	}
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		_ = ul.Close()
		return nil, fmt.Errorf("peer: listening on %s: %w", path, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			err = fmt.Errorf("%w: created meanwhile", ErrPathInUse)
		}
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &listener{UnixListener: ul, path: path, file: fi}, nil
}

// removeStale removes a socket at path that nobody accepts on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%w: %s exists and is not a socket", ErrPathInUse, path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		_ = c.Close()
		return fmt.Errorf("%w: something is serving on %s", ErrPathInUse, path)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist):
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("peer: removing stale socket: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("%w: cannot tell whether %s is stale: %w", ErrPathInUse, path, err)
	}
}

// listener reports path as its address and removes its socket file on
// Close, unless something else has replaced it.
type listener struct {
	*net.UnixListener
	path string
	file os.FileInfo
	once sync.Once
}

// Addr returns the socket's path.
func (l *listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Close stops listening and removes the socket file.
func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.file) {
			_ = os.Remove(l.path)
		}
	})
	return err
}
