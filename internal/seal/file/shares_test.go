package file

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/testvectors"
)

func parseAll(t *testing.T, files [][]byte) []UnsealShare {
	t.Helper()
	out := make([]UnsealShare, len(files))
	for i, f := range files {
		s, err := ParseShare(f)
		if err != nil {
			t.Fatalf("share file %d: %v", i+1, err)
		}
		out[i] = s
	}
	return out
}

func TestInitSharesOpenEverySubset(t *testing.T) {
	dir := t.TempDir()
	s0, set, files, err := InitShares(dir, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer s0.Close()
	if set.Threshold != 3 || set.Shares != 5 || len(files) != 5 {
		t.Fatalf("set %+v, %d files", set, len(files))
	}
	if got, ok, err := SharesOf(dir); err != nil || !ok || got != set {
		t.Fatalf("SharesOf = %+v, %v, %v; want %+v", got, ok, err, set)
	}
	st, _ := os.Stat(filepath.Join(dir, keyFileName))
	if st.Mode().Perm() != 0o600 || st.Size() != int64(sharesLen) {
		t.Fatalf("root.key mode %v, %d bytes; want 0600, %d", st.Mode().Perm(), st.Size(), sharesLen)
	}
	ctx := context.Background()
	sealed, err := s0.Seal(ctx, secret.New([]byte("tenant master key")), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	shares := parseAll(t, files)
	for i, s := range shares {
		if s.Index != i+1 || s.Set != set {
			t.Fatalf("share file %d says index %d, set %+v", i+1, s.Index, s.Set)
		}
	}
	// Every subset of 3 or more opens the same root key; every subset of
	// 2 is refused.
	for mask := 1; mask < 1<<5; mask++ {
		var sub []UnsealShare
		for i := range 5 {
			if mask&(1<<i) != 0 {
				sub = append(sub, shares[i])
			}
		}
		sl, err := OpenShares(dir, sub)
		if len(sub) < 3 {
			if err == nil {
				t.Fatalf("%d shares opened a 3-of-5 root key", len(sub))
			}
			continue
		}
		if err != nil {
			t.Fatalf("shares %b: %v", mask, err)
		}
		pt, err := sl.Open(ctx, sealed, []byte("aad"))
		if err != nil || string(pt.Expose()) != "tenant master key" {
			t.Fatalf("shares %b: the sealer does not open what the first sealed: %v", mask, err)
		}
		if !sl.Protected() {
			t.Fatal("a share-sealed root key reports itself unprotected")
		}
		sl.Close()
	}

	// A wrong share of this set: refused as a whole.
	bad := shares[2]
	bad.Value = secret.New(bytes.Repeat([]byte{7}, 32))
	if _, err := OpenShares(dir, []UnsealShare{shares[0], shares[1], bad}); !errors.Is(err, ErrUnsealKey) {
		t.Fatalf("a wrong share: %v, want ErrUnsealKey", err)
	}
	// A share of another set.
	_, _, other, err := InitShares(t.TempDir(), 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenShares(dir, []UnsealShare{shares[0], shares[1], parseAll(t, other)[2]}); err == nil || errors.Is(err, ErrUnsealKey) || !strings.Contains(err.Error(), "share set") {
		t.Fatalf("a share of another set: %v", err)
	}
	// Never created twice; the other seal modes refuse it.
	if _, _, _, err := InitShares(dir, 5, 3); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("InitShares over an existing root.key: %v, want fs.ErrExist", err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrSharesRequired) {
		t.Fatalf("Open of a share-sealed root.key: %v, want ErrSharesRequired", err)
	}
	if err := ChangePassphrase(dir, nil, secret.New([]byte("pw"))); !errors.Is(err, ErrSharesRequired) {
		t.Fatalf("ChangePassphrase of a share-sealed root.key: %v, want ErrSharesRequired", err)
	}
	if _, ok, err := SharesOf(t.TempDir()); ok || err != nil {
		t.Fatalf("SharesOf an empty dir: %v, %v", ok, err)
	}
}

func TestInitSharesRefusesBadCounts(t *testing.T) {
	for _, c := range []struct{ n, k int }{{0, 0}, {3, 0}, {2, 3}, {256, 2}} {
		dir := filepath.Join(t.TempDir(), "d")
		if _, _, _, err := InitShares(dir, c.n, c.k); err == nil {
			t.Errorf("InitShares(%d, %d) accepted", c.n, c.k)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("InitShares(%d, %d) refused but made %s", c.n, c.k, dir)
		}
	}
}

// TestRekey: new shares open the same root key (what it sealed before
// still opens), the old ones no longer open root.key, and every refusal —
// too few shares, a wrong share, a share of another set, bad counts, a
// failed write of the new shares — leaves root.key byte for byte as it was.
func TestRekey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s0, set, files, err := InitShares(dir, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s0.Seal(ctx, secret.New([]byte("tenant master key")), []byte("aad"))
	s0.Close()
	if err != nil {
		t.Fatal(err)
	}
	old := parseAll(t, files)
	before, err := os.ReadFile(filepath.Join(dir, keyFileName))
	if err != nil {
		t.Fatal(err)
	}
	_, _, otherFiles, err := InitShares(t.TempDir(), 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	wrong := old[2]
	wrong.Value = secret.New(bytes.Repeat([]byte{7}, 32))
	keep := func(ShareSet, [][]byte) error { return nil }
	for _, c := range []struct {
		name   string
		shares []UnsealShare
		n, k   int
		write  func(ShareSet, [][]byte) error
		want   error  // errors.Is, or nil for a message check
		msg    string // in the error
	}{
		{"too few shares", old[:2], 5, 3, keep, nil, "2 of the 3 shares"},
		{"a wrong share", []UnsealShare{old[0], old[1], wrong}, 5, 3, keep, ErrUnsealKey, ""},
		{"a share of another set", []UnsealShare{old[0], old[1], parseAll(t, otherFiles)[2]}, 5, 3, keep, nil, "share set"},
		{"threshold above shares", old[:3], 2, 3, keep, nil, "threshold"},
		{"threshold 0", old[:3], 3, 0, keep, nil, "threshold"},
		{"256 shares", old[:3], 256, 2, keep, nil, "threshold"},
		{"writing the new shares fails", old[:3], 4, 2, func(ShareSet, [][]byte) error { return fs.ErrPermission }, fs.ErrPermission, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Rekey(dir, c.shares, c.n, c.k, c.write)
			switch {
			case err == nil:
				t.Fatal("Rekey succeeded")
			case c.want != nil && !errors.Is(err, c.want):
				t.Fatalf("Rekey: %v, want %v", err, c.want)
			case c.want == nil && !strings.Contains(err.Error(), c.msg):
				t.Fatalf("Rekey: %v, want it to say %q", err, c.msg)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, keyFileName)); !bytes.Equal(after, before) {
				t.Fatal("a refused Rekey changed root.key")
			}
		})
	}

	// 3 of the 5 old shares (not the first three) make a 2-of-4 split.
	var got [][]byte
	newSet, err := Rekey(dir, []UnsealShare{old[4], old[0], old[3]}, 4, 2, func(s ShareSet, f [][]byte) error {
		for _, b := range f {
			got = append(got, bytes.Clone(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if newSet.Shares != 4 || newSet.Threshold != 2 || newSet.ID == set.ID || len(got) != 4 {
		t.Fatalf("new set %+v (old %s), %d files", newSet, set.IDString(), len(got))
	}
	if cur, ok, err := SharesOf(dir); err != nil || !ok || cur != newSet {
		t.Fatalf("SharesOf after Rekey = %+v, %v, %v; want %+v", cur, ok, err, newSet)
	}
	st, _ := os.Stat(filepath.Join(dir, keyFileName))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("root.key mode %v after Rekey, want 0600", st.Mode().Perm())
	}
	fresh := parseAll(t, got)
	for _, pair := range [][]UnsealShare{{fresh[0], fresh[1]}, {fresh[3], fresh[2]}, {fresh[1], fresh[3]}} {
		sl, err := OpenShares(dir, pair)
		if err != nil {
			t.Fatalf("new shares %d, %d: %v", pair[0].Index, pair[1].Index, err)
		}
		pt, err := sl.Open(ctx, sealed, []byte("aad"))
		sl.Close()
		if err != nil || string(pt.Expose()) != "tenant master key" {
			t.Fatalf("the rekeyed root key does not open what it sealed before: %v", err)
		}
	}
	if _, err := OpenShares(dir, fresh[:1]); err == nil {
		t.Fatal("one share opened a 2-of-4 root key")
	}
	if _, err := OpenShares(dir, old[:3]); err == nil || !strings.Contains(err.Error(), "share set") {
		t.Fatalf("old shares after Rekey: %v, want a share set refusal", err)
	}
	// The old shares still open a copy of the old root.key (why backups
	// must be replaced too): the root key did not change.
	copyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(copyDir, keyFileName), before, 0o600); err != nil {
		t.Fatal(err)
	}
	sl, err := OpenShares(copyDir, old[:3])
	if err != nil {
		t.Fatalf("old shares on the old root.key: %v", err)
	}
	sl.Close()
	// Rekeying again with the new shares works; a root.key not split
	// into shares is refused.
	if _, err := Rekey(dir, fresh[:2], 3, 2, keep); err != nil {
		t.Fatalf("second Rekey: %v", err)
	}
	plain := t.TempDir()
	if s, err := Open(plain, nil); err != nil {
		t.Fatal(err)
	} else {
		s.Close()
	}
	if _, err := Rekey(plain, fresh[:2], 3, 2, keep); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Rekey of a root.key not split into shares: %v, want ErrCorrupt", err)
	}
}

// TestSplit: a root key in clear (mode 0) or under a passphrase (mode 1)
// moves to shares; what it sealed before opens with any K of them, and
// every refusal (a wrong or missing passphrase, a failed write, a root.key
// split already) leaves root.key as it was.
func TestSplit(t *testing.T) {
	ctx := context.Background()
	for _, pass := range []string{"", "correct horse"} {
		t.Run("passphrase "+strconv.Quote(pass), func(t *testing.T) {
			dir := t.TempDir()
			s0, err := Open(dir, secret.New([]byte(pass)))
			if err != nil {
				t.Fatal(err)
			}
			sealed, err := s0.Seal(ctx, secret.New([]byte("tenant master key")), nil)
			s0.Close()
			if err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(filepath.Join(dir, keyFileName))
			keep := func(ShareSet, [][]byte) error { return nil }
			type refusal struct {
				name  string
				pass  string
				write func(ShareSet, [][]byte) error
				want  error
			}
			refusals := []refusal{
				{"wrong passphrase", pass + "x", keep, ErrPassphrase},
				{"the write fails", pass, func(ShareSet, [][]byte) error { return fs.ErrPermission }, fs.ErrPermission},
			}
			if pass != "" {
				refusals = append(refusals, refusal{"no passphrase", "", keep, ErrPassphrase})
			}
			for _, c := range refusals {
				if _, err := Split(dir, secret.New([]byte(c.pass)), 3, 2, c.write); !errors.Is(err, c.want) {
					t.Fatalf("%s: Split = %v, want %v", c.name, err, c.want)
				}
				if after, _ := os.ReadFile(filepath.Join(dir, keyFileName)); !bytes.Equal(after, before) {
					t.Fatalf("%s: a refused Split changed root.key", c.name)
				}
			}
			if _, err := Split(dir, secret.New([]byte(pass)), 2, 3, keep); err == nil {
				t.Fatal("Split with threshold above shares succeeded")
			}
			var files [][]byte
			set, err := Split(dir, secret.New([]byte(pass)), 3, 2, func(_ ShareSet, f [][]byte) error {
				for _, b := range f {
					files = append(files, bytes.Clone(b))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if got, ok, err := SharesOf(dir); err != nil || !ok || got != set || set.Shares != 3 || set.Threshold != 2 {
				t.Fatalf("SharesOf after Split = %+v, %v, %v; Split said %+v", got, ok, err, set)
			}
			shares := parseAll(t, files)
			sl, err := OpenShares(dir, []UnsealShare{shares[2], shares[0]})
			if err != nil {
				t.Fatal(err)
			}
			defer sl.Close()
			if pt, err := sl.Open(ctx, sealed, nil); err != nil || string(pt.Expose()) != "tenant master key" {
				t.Fatalf("the split root key does not open what it sealed before: %v", err)
			}
			if _, err := Open(dir, secret.New([]byte(pass))); !errors.Is(err, ErrSharesRequired) {
				t.Fatalf("Open after Split: %v, want ErrSharesRequired", err)
			}
			if _, err := Split(dir, secret.New([]byte(pass)), 3, 2, keep); !errors.Is(err, ErrSharesRequired) {
				t.Fatalf("Split of a split root.key: %v, want ErrSharesRequired", err)
			}
		})
	}
}

func TestParseShare(t *testing.T) {
	var set ShareSet
	copy(set.ID[:], "0123456789abcdef")
	set.Threshold, set.Shares = 2, 3
	good := EncodeShare(set, 2, secret.New(bytes.Repeat([]byte{0x5a}, 32)))
	s, err := ParseShare(good)
	if err != nil || s.Index != 2 || s.Set != set || !s.Value.Equal(secret.New(bytes.Repeat([]byte{0x5a}, 32))) {
		t.Fatalf("ParseShare(EncodeShare) = %v, %v", s, err)
	}
	if strings.Contains(s.String(), "5a5a") || strings.Contains(string(good[:bytes.LastIndexByte(good[:len(good)-1], '\n')]), "5a5a") {
		t.Fatal("the share's value shows in its String or in the file's comments")
	}
	hexLine := strings.TrimSpace(string(good[bytes.LastIndexByte(good[:len(good)-1], '\n'):]))
	flip := func(i int) string {
		b := []byte(hexLine)
		if b[i] == '0' {
			b[i] = '1'
		} else {
			b[i] = '0'
		}
		return string(b)
	}
	// A record with a good checksum but inconsistent fields.
	rec := func(k, n, idx byte) string {
		r := shareRecord(ShareSet{ID: set.ID, Threshold: int(k), Shares: int(n)}, int(idx), secret.New(make([]byte, 32)))
		return hex.EncodeToString(r)
	}
	for _, c := range []struct {
		name string
		in   string
		want error
	}{
		{"hex line only", hexLine, nil},
		{"upper case, spaced", strings.ToUpper(hexLine[:20]) + " \n " + hexLine[20:], nil},
		{"typo in the value", flip(60), ErrShareChecksum},
		{"typo in the index", flip(45), ErrShareChecksum},
		{"typo in the checksum", flip(len(hexLine) - 1), ErrShareChecksum},
		{"empty", "", ErrShareFormat},
		{"comments only", "# nothing\n", ErrShareFormat},
		{"short", hexLine[:100], ErrShareFormat},
		{"long", hexLine + "00", ErrShareFormat},
		{"not hex", strings.Replace(hexLine, "4", "g", 1), ErrShareFormat},
		{"bad magic", "00" + hexLine[2:], ErrShareFormat},
		{"index 0", rec(2, 3, 0), ErrShareFormat},
		{"index over N", rec(2, 3, 4), ErrShareFormat},
		{"threshold 0", rec(0, 3, 1), ErrShareFormat},
		{"threshold over N", rec(4, 3, 1), ErrShareFormat},
		{"huge", strings.Repeat("#\n", 3000), ErrShareFormat},
	} {
		_, err := ParseShare([]byte(c.in))
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// FuzzParseShare: ParseShare never panics, and what it accepts encodes
// back to a record that parses to the same share.
func FuzzParseShare(f *testing.F) {
	var set ShareSet
	set.Threshold, set.Shares = 3, 5
	f.Add(EncodeShare(set, 4, secret.New(make([]byte, 32))))
	f.Add([]byte("# x\n44534831"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseShare(data)
		if err != nil {
			if !errors.Is(err, ErrShareFormat) && !errors.Is(err, ErrShareChecksum) {
				t.Fatalf("an error of neither kind: %v", err)
			}
			return
		}
		again, err := ParseShare(EncodeShare(s.Set, s.Index, s.Value))
		if err != nil || again.Set != s.Set || again.Index != s.Index || !again.Value.Equal(s.Value) {
			t.Fatalf("re-encoded share differs: %v", err)
		}
	})
}

// TestFormatsDocRootKeyShares checks docs/formats.md §8: the quoted share
// records are exactly what EncodeShare builds for their fields, the
// quoted root.key header is what encodeSharesKeyFile builds, and the
// quoted shares combine to the quoted unseal key, which opens the quoted
// root.key to the quoted root key.
func TestFormatsDocRootKeyShares(t *testing.T) {
	got := testvectors.FormatsDoc(t, "../../../docs/formats.md")
	seq := func(from byte) []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = from + byte(i)
		}
		return b
	}
	var set ShareSet
	copy(set.ID[:], seq(0))
	set.Threshold, set.Shares = 3, 5
	var points []kcrypto.Share
	for i := 1; i <= 3; i++ {
		name := "unseal-share-" + string(rune('0'+i))
		q, ok := got[name]
		if !ok {
			t.Fatalf("formats.md has no vector %s", name)
		}
		s, err := ParseShare([]byte(hex.EncodeToString(q)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Set != set || s.Index != i {
			t.Fatalf("%s: set %+v index %d", name, s.Set, s.Index)
		}
		if built := shareRecord(set, i, s.Value); !bytes.Equal(built, q) {
			t.Fatalf("%s is not what the code builds: %x", name, built)
		}
		points = append(points, kcrypto.Share{X: byte(i), Y: s.Value})
	}
	uk, err := kcrypto.Combine(points)
	if err != nil || !bytes.Equal(uk.Expose(), seq(0xa0)) {
		t.Fatalf("the quoted shares combine to %x, %v; want a0 a1 … bf", uk.Expose(), err)
	}
	file := got["root-key-shares"]
	built, err := encodeSharesKeyFile(set, secret.New(seq(0x40)), uk)
	if err != nil {
		t.Fatal(err)
	}
	if len(file) != sharesLen || !bytes.Equal(file[:sharesHdrLen], built[:sharesHdrLen]) {
		t.Fatalf("the quoted root.key (%d bytes) does not start with the header the code builds: %x", len(file), built[:sharesHdrLen])
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, keyFileName), file, 0o600); err != nil {
		t.Fatal(err)
	}
	aead, err := unsealAEAD(uk, set.ID[:])
	if err != nil {
		t.Fatal(err)
	}
	root, err := aead.Open(nil, file[sharesHdrLen:], file[:sharesHdrLen])
	if err != nil || !bytes.Equal(root, seq(0x40)) {
		t.Fatalf("the quoted root.key opens to %x, %v; want 40 41 … 5f", root, err)
	}
	var shares []UnsealShare
	for i, p := range points {
		shares = append(shares, UnsealShare{Set: set, Index: i + 1, Value: p.Y})
	}
	if _, err := OpenShares(dir, shares); err != nil {
		t.Fatalf("OpenShares of the quoted example: %v", err)
	}
}
