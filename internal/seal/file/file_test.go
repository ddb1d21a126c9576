package file

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/seal/sealtest"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/testvectors"
)

// pass returns a fresh passphrase secret; "" means none.
func pass(s string) *secret.Bytes {
	if s == "" {
		return nil
	}
	return secret.Copy([]byte(s))
}

// TestConformance runs sealtest.Run with one root key directory per test.
// The suite runs on an unprotected file only: once opened, a protected
// Sealer is the same code, and PBKDF2 on every open would make the suite
// slow (TestPassphraseModes covers reopening protected files).
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	dirs := map[*testing.T]string{}
	sealtest.Run(t, func(t *testing.T) seal.Sealer {
		mu.Lock()
		dir, ok := dirs[t]
		if !ok {
			dir = t.TempDir()
			dirs[t] = dir
		}
		mu.Unlock()
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatalf("Open() error %v", err)
		}
		return s
	})
}

func mustOpen(t *testing.T, dir string, passphrase string) *Sealer {
	t.Helper()
	s, err := Open(dir, pass(passphrase))
	if err != nil {
		t.Fatalf("Open(%q) error %v", passphrase, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCreatesKeyFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data", "kms")
	for _, tt := range []struct {
		passphrase string
		size       int
		protected  bool
	}{
		{"", plainLen, false},
		{"hunter2 but longer", wrappedLen, true},
	} {
		dir := filepath.Join(dir, map[bool]string{false: "plain", true: "wrapped"}[tt.protected])
		s := mustOpen(t, dir, tt.passphrase)
		if s.Protected() != tt.protected {
			t.Errorf("Protected() = %v, want %v", s.Protected(), tt.protected)
		}
		st, err := os.Stat(filepath.Join(dir, keyFileName))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 || int(st.Size()) != tt.size {
			t.Errorf("root.key mode %v size %d, want 0600 and %d", st.Mode().Perm(), st.Size(), tt.size)
		}
		if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("dir mode = %v, %v; want 0700", st.Mode().Perm(), err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) != 1 {
			t.Errorf("dir holds %v, %v; want only root.key", entries, err)
		}
	}
}

func TestPassphraseModes(t *testing.T) {
	t.Parallel()
	const good = "correct horse battery staple"
	tests := []struct {
		name           string
		created, given string
		wantErr        error
	}{
		{"plain, none", "", "", nil},
		{"plain, one given", "", good, ErrPassphrase},
		{"protected, right", good, good, nil},
		{"protected, wrong", good, "correct horse battery stapler", ErrPassphrase},
		{"protected, none", good, "", ErrPassphrase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first := mustOpen(t, dir, tt.created)
			sealed, err := first.Seal(context.Background(), secret.Copy([]byte("k")), nil)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir, pass(tt.given))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Open() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer s.Close()
			got, err := s.Open(context.Background(), sealed, nil)
			if err != nil || string(got.Expose()) != "k" {
				t.Errorf("Open(sealed) = %v, want k", err)
			}
			got.Wipe()
		})
	}
}

func TestChangePassphrase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := mustOpen(t, dir, "")
	sealed, err := s.Seal(context.Background(), secret.Copy([]byte("tmk")), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name, old, new string
		wantErr        error
	}{
		{"protect", "", "first passphrase", nil},
		{"wrong old", "not it", "x", ErrPassphrase},
		{"missing old", "", "x", ErrPassphrase},
		{"rotate", "first passphrase", "second passphrase", nil},
		{"unprotect", "second passphrase", "", nil},
		{"old given for plain file", "second passphrase", "x", ErrPassphrase},
	}
	current := ""
	for _, st := range steps {
		before, _ := os.ReadFile(filepath.Join(dir, keyFileName))
		err := ChangePassphrase(dir, pass(st.old), pass(st.new))
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil) != (err == nil) {
			t.Fatalf("%s: ChangePassphrase() = %v, want %v", st.name, err, st.wantErr)
		}
		if err != nil {
			if after, _ := os.ReadFile(filepath.Join(dir, keyFileName)); !bytes.Equal(after, before) {
				t.Fatalf("%s: a failed ChangePassphrase changed the file", st.name)
			}
			continue
		}
		current = st.new
		r := mustOpen(t, dir, current)
		if r.Protected() != (current != "") {
			t.Errorf("%s: Protected() = %v", st.name, r.Protected())
		}
		got, err := r.Open(context.Background(), sealed, []byte("aad"))
		if err != nil || string(got.Expose()) != "tmk" {
			t.Fatalf("%s: old blob does not open: %v", st.name, err)
		}
		got.Wipe()
		if st, err := os.Stat(filepath.Join(dir, keyFileName)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("root.key mode after change = %v, %v; want 0600", st.Mode().Perm(), err)
		}
	}
	if err := ChangePassphrase(t.TempDir(), nil, pass("x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ChangePassphrase(empty dir) = %v, want os.ErrNotExist", err)
	}
}

// writeKeyFile writes dir/root.key with mode 0600.
func writeKeyFile(t *testing.T, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, keyFileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCorruptKeyFile(t *testing.T) {
	plain := append([]byte("DRK1\x00"), make([]byte, 32)...)
	wrapped := append([]byte("DRK1\x01"), make([]byte, wrappedLen-5)...)
	tests := []struct {
		name       string
		data       []byte
		passphrase string
		want       error
	}{
		{"empty", nil, "", ErrCorrupt},
		{"bad magic", append([]byte("DRK2"), plain[4:]...), "", ErrCorrupt},
		{"magic only", []byte("DRK1"), "", ErrCorrupt},
		{"unknown mode", append([]byte("DRK1\x03"), plain[5:]...), "", ErrCorrupt},
		{"split into shares (mode 2)", append([]byte("DRK1\x02"), plain[5:]...), "", ErrSharesRequired},
		{"plain truncated", plain[:len(plain)-1], "", ErrCorrupt},
		{"plain extended", append(bytes.Clone(plain), 0), "", ErrCorrupt},
		{"wrapped truncated", wrapped[:len(wrapped)-1], "p", ErrCorrupt},
		{"wrapped garbage", wrapped, "p", ErrPassphrase},
		{"too large", make([]byte, maxFileLen+1), "", ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(writeKeyFile(t, tt.data), pass(tt.passphrase))
			if !errors.Is(err, tt.want) {
				if s != nil {
					s.Close()
				}
				t.Errorf("Open() error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestUnsafeKeyFile(t *testing.T) {
	dir := t.TempDir()
	mustOpen(t, dir, "")
	path := filepath.Join(dir, keyFileName)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, nil); !errors.Is(err, ErrPermissions) {
			t.Errorf("Open() with root.key mode %v error = %v, want ErrPermissions", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		mustOpen(t, dir, "")
	}
	other := t.TempDir()
	if err := os.Mkdir(filepath.Join(other, keyFileName), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(other, nil); !errors.Is(err, ErrPermissions) {
		t.Errorf("Open() with a directory root.key error = %v, want ErrPermissions", err)
	}
}

// TestConcurrentCreate opens one fresh directory from many goroutines at
// once: exactly one root key must win, so every Sealer opens every blob.
func TestConcurrentCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kms")
	const n = 16
	sealers := make([]*Sealer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { sealers[i], errs[i] = Open(dir, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open #%d error %v", i, err)
		}
		defer sealers[i].Close()
	}
	sealed, err := sealers[0].Seal(context.Background(), secret.Copy([]byte("x")), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range sealers {
		got, err := s.Open(context.Background(), sealed, nil)
		if err != nil {
			t.Fatalf("Sealer #%d cannot open #0's blob: %v", i, err)
		}
		got.Wipe()
	}
}

type vectors struct {
	RootKey     string `json:"root_key"`
	PlainFile   string `json:"plain_file"`
	Passphrase  string `json:"passphrase"`
	WrappedFile string `json:"wrapped_file"`
	Seals       []struct {
		Plaintext, AAD, Sealed string
	} `json:"seals"`
}

// TestVectors opens root key files and blobs made by an independent
// implementation (testdata/vectors.json, Python "cryptography").
func TestVectors(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("testdata", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, file, passphrase string }{
		{"plain", v.PlainFile, ""},
		{"wrapped", v.WrappedFile, v.Passphrase},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := testvectors.Hex(t, tt.file)
			root, _, err := decodeKeyFile(file, pass(tt.passphrase))
			if err != nil {
				t.Fatalf("decodeKeyFile() error %v", err)
			}
			if hex.EncodeToString(root.Expose()) != v.RootKey {
				t.Errorf("root key = %x, want %s", root.Expose(), v.RootKey)
			}
			root.Wipe()
			s := mustOpen(t, writeKeyFile(t, file), tt.passphrase)
			for i, sv := range v.Seals {
				got, err := s.Open(context.Background(), testvectors.Hex(t, sv.Sealed), testvectors.Hex(t, sv.AAD))
				if err != nil {
					t.Fatalf("seal %d: Open() error %v", i, err)
				}
				if !bytes.Equal(got.Expose(), testvectors.Hex(t, sv.Plaintext)) {
					t.Errorf("seal %d: Open() = %x, want %s", i, got.Expose(), sv.Plaintext)
				}
				got.Wipe()
			}
		})
	}
}

func TestSealFormat(t *testing.T) {
	s := mustOpen(t, t.TempDir(), "")
	sealed, err := s.Seal(context.Background(), secret.Copy([]byte("abc")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != overhead+3 || sealed[0] != version {
		t.Errorf("sealed = %x, want version 1 and %d bytes", sealed, overhead+3)
	}
	wrongVersion := bytes.Clone(sealed)
	wrongVersion[0] = 2
	if _, err := s.Open(context.Background(), wrongVersion, nil); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Open(version 2) error = %v, want seal.ErrOpen", err)
	}
	if s.Name() != "file" {
		t.Errorf("Name() = %q, want file", s.Name())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Seal(ctx, secret.Copy([]byte("abc")), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Seal(canceled) error = %v, want context.Canceled", err)
	}
}
