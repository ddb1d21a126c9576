// Package atomicfile writes files so that a crash leaves either the old
// content or the new, never half of one.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
)

// Write writes data to path through a temporary file in the same
// directory: write, fsync, chmod to mode, rename, fsync the directory.
func Write(path string, data []byte, mode os.FileMode) error {
	return WriteFunc(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc is Write of what fill writes, for content made as it is
// written: if fill fails, path is left as it was and fill's error is
// returned.
func WriteFunc(path string, mode os.FileMode, fill func(w io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes the creation, renaming and removal of files in dir
// durable: it fsyncs the directory.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
