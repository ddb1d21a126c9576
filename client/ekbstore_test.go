package client

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

func TestEKBStorePutGet(t *testing.T) {
	s := EKBStore{Dir: filepath.Join(t.TempDir(), "ekbs")}
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Fatalf("List(missing dir) = %v, %v; want empty", l, err)
	}
	put := func(id string, v int, b string) {
		t.Helper()
		if err := s.Put(id, v, []byte(b)); err != nil {
			t.Fatalf("Put(%s, %d) = %v", id, v, err)
		}
	}
	put("key_b", 1, "b1")
	put("key_a", 2, "a2")
	put("key_a", 1, "a1")
	put("key_a", 10, "a10")
	put("drv_x", 1, "d1")

	if got, err := s.Get("key_a", 2); err != nil || string(got) != "a2" {
		t.Fatalf("Get(key_a, 2) = %q, %v", got, err)
	}
	if v, got, err := s.Latest("key_a"); err != nil || v != 10 || string(got) != "a10" {
		t.Fatalf("Latest(key_a) = %d %q %v; want 10 a10", v, got, err)
	}
	list, err := s.List()
	want := []EKBVersion{{"drv_x", 1}, {"key_a", 1}, {"key_a", 2}, {"key_a", 10}, {"key_b", 1}}
	if err != nil || !slices.Equal(list, want) {
		t.Fatalf("List = %v, %v; want %v", list, err, want)
	}
	if _, err := s.Get("key_a", 3); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Get(missing version) = %v, want fs.ErrNotExist", err)
	}
	if _, _, err := s.Latest("key_none"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Latest(missing key) = %v, want fs.ErrNotExist", err)
	}

	// Idempotent with the same bytes; refused with others.
	put("key_a", 2, "a2")
	if err := s.Put("key_a", 2, []byte("other")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Put(other bytes over a stored version) = %v, want fs.ErrExist", err)
	}
	if got, _ := s.Get("key_a", 2); string(got) != "a2" {
		t.Fatalf("the stored version changed to %q", got)
	}

	// Modes, and no temporary file left behind.
	fi, err := os.Stat(s.Dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	ents, _ := os.ReadDir(s.Dir)
	if len(ents) != len(want) {
		t.Fatalf("dir holds %d entries, want %d (leftover temp files?)", len(ents), len(want))
	}
	for _, e := range ents {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}

	// Foreign files are not EKBs of the store.
	for _, name := range []string{"notes.txt", ".ekb-123.tmp", "key_a.v0.ekb", "key_a.v01.ekb", "key_a.vx.ekb", "key.a.v1.ekb", "key_a.ekb"} {
		os.WriteFile(filepath.Join(s.Dir, name), []byte("junk"), 0o600)
	}
	os.Mkdir(filepath.Join(s.Dir, "key_dir.v1.ekb"), 0o700)
	if list, err := s.List(); err != nil || !slices.Equal(list, want) {
		t.Fatalf("List with foreign files = %v, %v; want %v", list, err, want)
	}
}

func TestEKBStoreRejectsBadNames(t *testing.T) {
	dir := t.TempDir()
	s := EKBStore{Dir: filepath.Join(dir, "store")}
	bad := []string{"", ".", "..", "../escape", "a/b", `a\b`, "/abs", "-flag", "key\x00", "key.v1", "ключ", string(make([]byte, 129))}
	for _, id := range bad {
		if err := s.Put(id, 1, []byte("x")); !errors.Is(err, ErrBadKeyID) {
			t.Errorf("Put(%q) = %v, want ErrBadKeyID", id, err)
		}
		if _, err := s.Get(id, 1); !errors.Is(err, ErrBadKeyID) {
			t.Errorf("Get(%q) = %v, want ErrBadKeyID", id, err)
		}
		if _, _, err := s.Latest(id); !errors.Is(err, ErrBadKeyID) {
			t.Errorf("Latest(%q) = %v, want ErrBadKeyID", id, err)
		}
	}
	for _, v := range []int{0, -1} {
		if err := s.Put("key_a", v, []byte("x")); !errors.Is(err, ErrBadKeyID) {
			t.Errorf("Put(version %d) = %v, want ErrBadKeyID", v, err)
		}
	}
	if err := s.Put("key_a", 1, nil); err == nil {
		t.Error("Put(empty EKB) accepted")
	}
	if err := (EKBStore{}).Put("key_a", 1, []byte("x")); err == nil {
		t.Error("Put with an empty Dir accepted")
	}
	// Nothing was written anywhere.
	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, _ error) error {
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Fatalf("refused names wrote %v", files)
	}
}

// TestEKBStoreConcurrentPut: writers racing on one version with different
// bytes leave exactly one complete file; the others are told it exists.
func TestEKBStoreConcurrentPut(t *testing.T) {
	s := EKBStore{Dir: t.TempDir()}
	const n = 16
	blobs := make([][]byte, n)
	for i := range blobs {
		blobs[i] = bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.Put("key_race", 1, blobs[i]) }()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("writer %d: %v", i, err)
		}
	}
	got, err := s.Get("key_race", 1)
	if err != nil || won != 1 || !slices.ContainsFunc(blobs, func(b []byte) bool { return bytes.Equal(b, got) }) {
		t.Fatalf("%d writers won; stored %d bytes (%v): want one complete blob", won, len(got), err)
	}
	if ents, _ := os.ReadDir(s.Dir); len(ents) != 1 {
		t.Fatalf("dir holds %d entries, want 1", len(ents))
	}
}

func FuzzParseEKBName(f *testing.F) {
	for _, s := range []string{"key_a.v1.ekb", "drv_x.v10.ekb", "../a.v1.ekb", "a.v1.v2.ekb", "a.v-1.ekb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		v, ok := parseEKBName(name)
		if !ok {
			return
		}
		// Whatever parses is a name the store itself would write.
		p, err := EKBStore{Dir: "d"}.path(v.KeyID, v.Version)
		if err != nil || filepath.Base(p) != name || filepath.Dir(p) != "d" {
			t.Fatalf("parseEKBName(%q) = %+v, which maps back to %q (%v)", name, v, p, err)
		}
	})
}

// TestEKBStoreSecretVolume: a Kubernetes Secret or ConfigMap volume shows
// each file as a symlink into a timestamped directory through "..data";
// List must see those EKBs (it saw an empty store), and still ignore
// symlinks that lead nowhere or to a directory.
func TestEKBStoreSecretVolume(t *testing.T) {
	dir := t.TempDir()
	data := "..2026_12_02_22_00_00.123456789"
	if err := os.Mkdir(filepath.Join(dir, data), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"key_a.v1" + ekbSuffix, "key_a.v2" + ekbSuffix, "drv_b.v1" + ekbSuffix} {
		if err := os.WriteFile(filepath.Join(dir, data, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	link(data, "..data")
	link("..data/key_a.v1"+ekbSuffix, "key_a.v1"+ekbSuffix)
	link("..data/key_a.v2"+ekbSuffix, "key_a.v2"+ekbSuffix)
	link("..data/drv_b.v1"+ekbSuffix, "drv_b.v1"+ekbSuffix)
	link("..data/missing"+ekbSuffix, "key_c.v1"+ekbSuffix) // dangling
	link(data, "key_d.v1"+ekbSuffix)                       // a directory

	s := EKBStore{Dir: dir}
	list, err := s.List()
	want := []EKBVersion{{"drv_b", 1}, {"key_a", 1}, {"key_a", 2}}
	if err != nil || !slices.Equal(list, want) {
		t.Fatalf("List = %v, %v; want %v", list, err, want)
	}
	if got, err := s.Get("key_a", 2); err != nil || string(got) != "key_a.v2"+ekbSuffix {
		t.Fatalf("Get(key_a, 2) through the symlink = %q, %v", got, err)
	}
}
