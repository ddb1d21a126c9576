package client

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrBadKeyID is returned by EKBStore for a key id that cannot safely be a
// file name, or a version below 1.
var ErrBadKeyID = errors.New("client: key id or version not usable in an EKB store")

// EKBStore keeps EKBs as files in a directory, one file per key version
// named "<key id>.v<version>.ekb", mode 0600. An EKB is the DEK encrypted
// under the tenant master key, so the files are not secret in the way a
// key is, but they are what the custodian must not lose.
//
// Dir must be set; Put creates it (mode 0700). Several processes may use
// one store: a version is written once, atomically, and never replaced.
type EKBStore struct {
	Dir string
}

// EKBVersion names one stored EKB.
type EKBVersion struct {
	KeyID   string
	Version int
}

const ekbSuffix = ".ekb"

// validKeyID accepts what the KMS issues ("key_…", "drv_…"): 1 to 128
// letters, digits, '_' and '-', not starting with '-'. Nothing else can
// reach a file name, so no path can escape Dir.
func validKeyID(id string) bool {
	if id == "" || len(id) > 128 || id[0] == '-' {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (s EKBStore) path(keyID string, version int) (string, error) {
	if s.Dir == "" {
		return "", errors.New("client: EKBStore.Dir is empty")
	}
	if !validKeyID(keyID) || version < 1 {
		return "", fmt.Errorf("%w: %q version %d", ErrBadKeyID, keyID, version)
	}
	return filepath.Join(s.Dir, keyID+".v"+strconv.Itoa(version)+ekbSuffix), nil
}

// Put stores version of keyID. The file appears complete or not at all: it
// is written to a temporary file, synced, then linked into place, and the
// directory is synced. Storing the same bytes again is a no-op; other
// bytes for a stored version are refused with an error wrapping
// fs.ErrExist.
func (s EKBStore) Put(keyID string, version int, ekb []byte) error {
	final, err := s.path(keyID, version)
	if err != nil {
		return err
	}
	if len(ekb) == 0 {
		return errors.New("client: empty EKB")
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("client: EKB store: %w", err)
	}
	tmp, err := os.CreateTemp(s.Dir, ".ekb-*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("client: EKB store: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(ekb); err != nil {
		tmp.Close()
		return fmt.Errorf("client: EKB store: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("client: EKB store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("client: EKB store: %w", err)
	}
	// A hard link never replaces an existing file; where the file system
	// has none, fall back to rename after a check.
	if err := os.Link(tmp.Name(), final); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			if _, serr := os.Lstat(final); serr == nil {
				err = fs.ErrExist
			} else if rerr := os.Rename(tmp.Name(), final); rerr != nil {
				return fmt.Errorf("client: EKB store: %w", rerr)
			} else {
				err = nil
			}
		}
		if errors.Is(err, fs.ErrExist) {
			have, rerr := os.ReadFile(final)
			if rerr == nil && bytes.Equal(have, ekb) {
				return nil
			}
			return fmt.Errorf("client: EKB store: %s version %d is already stored with other bytes: %w", keyID, version, fs.ErrExist)
		}
	}
	return syncDir(s.Dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("client: EKB store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("client: EKB store: syncing %s: %w", dir, err)
	}
	return nil
}

// Get returns the stored EKB of version of keyID; an error wrapping
// fs.ErrNotExist if there is none. The caller owns the returned slice.
func (s EKBStore) Get(keyID string, version int) ([]byte, error) {
	p, err := s.path(keyID, version)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("client: EKB store: no %s version %d in %s: %w", keyID, version, s.Dir, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("client: EKB store: %w", err)
	}
	return b, nil
}

// Latest returns the highest stored version of keyID and its EKB; an error
// wrapping fs.ErrNotExist if none is stored.
func (s EKBStore) Latest(keyID string) (int, []byte, error) {
	if !validKeyID(keyID) {
		return 0, nil, fmt.Errorf("%w: %q", ErrBadKeyID, keyID)
	}
	all, err := s.List()
	if err != nil {
		return 0, nil, err
	}
	best := 0
	for _, v := range all {
		if v.KeyID == keyID {
			best = max(best, v.Version)
		}
	}
	if best == 0 {
		return 0, nil, fmt.Errorf("client: EKB store: no version of %s in %s: %w", keyID, s.Dir, fs.ErrNotExist)
	}
	b, err := s.Get(keyID, best)
	return best, b, err
}

// List returns every stored EKB version, sorted by key id and version.
// Files that are not EKBs of the store are ignored. A missing Dir is an
// empty store.
func (s EKBStore) List() ([]EKBVersion, error) {
	if s.Dir == "" {
		return nil, errors.New("client: EKBStore.Dir is empty")
	}
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client: EKB store: %w", err)
	}
	var out []EKBVersion
	for _, e := range ents {
		v, ok := parseEKBName(e.Name())
		if !ok {
			continue
		}
		regular := e.Type().IsRegular()
		if e.Type()&fs.ModeSymlink != 0 {
			// A Kubernetes Secret or ConfigMap volume presents each file
			// as a symlink into its current ..data directory: follow it
			// (an EKB is sealed under the tenant's key, so where it comes
			// from is not trusted anyway).
			fi, err := os.Stat(filepath.Join(s.Dir, e.Name()))
			regular = err == nil && fi.Mode().IsRegular()
		}
		if regular {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b EKBVersion) int {
		if c := strings.Compare(a.KeyID, b.KeyID); c != 0 {
			return c
		}
		return a.Version - b.Version
	})
	return out, nil
}

func parseEKBName(name string) (EKBVersion, bool) {
	base, ok := strings.CutSuffix(name, ekbSuffix)
	if !ok {
		return EKBVersion{}, false
	}
	i := strings.LastIndex(base, ".v")
	if i < 0 {
		return EKBVersion{}, false
	}
	id, vs := base[:i], base[i+2:]
	v, err := strconv.Atoi(vs)
	if err != nil || v < 1 || strconv.Itoa(v) != vs || !validKeyID(id) {
		return EKBVersion{}, false
	}
	return EKBVersion{KeyID: id, Version: v}, true
}
