package sqlstore

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/dcaas/dcaas/internal/store"
)

// ClaimSoleWriter implements store.SoleWriter for SQLite: an exclusive
// flock(2) on PATH.lock next to the database file, which the kernel drops
// when the process ends, however it ends (no stale lock after a crash).
// The file holds the claiming process's id, for the refusal's message.
func (db *DB) ClaimSoleWriter() (release func(), err error) {
	if db.path == "" { // PostgreSQL, or a read-only SQLite database
		return nil, errors.ErrUnsupported
	}
	name := db.path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w: %w", store.ErrUnavailable, err)
	}
	if err := flock(f); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(name); rerr == nil {
			if pid := strings.TrimSpace(string(b)); pid != "" {
				holder = "process " + pid
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s holds %s)", store.ErrClaimed, holder, name)
		}
		return nil, fmt.Errorf("sqlite: locking %s: %w", name, err)
	}
	// Record who holds it; the lock, not the content, is what counts.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil // closing the file drops the lock
}

// flock takes an exclusive lock on f without waiting.
func flock(f *os.File) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := raw.Control(func(fd uintptr) {
		for {
			if lerr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB); lerr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return lerr
}
