package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/testvectors"
)

// vectorsKey is the public key of the independent vectors
// (testdata/signed_vectors.json, archive_vectors.py).
func vectorsKey(t testing.TB) kcrypto.LogVerifyKey {
	t.Helper()
	var file struct {
		PublicKeyPEM string `json:"public_key_pem"`
	}
	readJSON(t, "signed_vectors.json", &file)
	key, err := kcrypto.ParseLogVerifyKeyPEM([]byte(file.PublicKeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readChain reads archives into a new chain verified with key and returns
// it and the first failure.
func readChain(key kcrypto.LogVerifyKey, archives ...[]byte) (*ArchiveChain, error) {
	c, err := NewArchiveChain(key)
	if err != nil {
		return nil, err
	}
	for _, a := range archives {
		if err := c.Read(bytes.NewReader(a)); err != nil {
			return c, err
		}
	}
	return c, nil
}

// TestArchiveVectors: two chained archives written by an independent
// implementation (testdata/archive_vectors.py: Python hashlib and
// pyca/cryptography Ed25519) verify, together and the second alone from
// its signed start; every change to them is refused.
func TestArchiveVectors(t *testing.T) {
	key := vectorsKey(t)
	a1, a2 := readTestdata(t, "archive-1.jsonl"), readTestdata(t, "archive-2.jsonl")
	c, err := readChain(key, a1, a2)
	if err != nil || c.Start != 0 || c.End.Seq != 7 || c.Records != 7 {
		t.Fatalf("both archives: %+v, %v; want records 1 to 7", c, err)
	}
	if c, err := readChain(key, a2); err != nil || c.Start != 5 || c.End.Seq != 7 || c.Records != 2 {
		t.Fatalf("the second archive alone: %+v, %v; want records 6 and 7", c, err)
	}
	// The checkpoint of signed_vectors.json (record 3) matches.
	var file struct {
		Checkpoint struct {
			Seq  int64  `json:"seq"`
			Time string `json:"time"`
			Hash string `json:"hash"`
			Sig  string `json:"sig"`
		}
	}
	readJSON(t, "signed_vectors.json", &file)
	vc := file.Checkpoint
	cp := store.AuditCheckpoint{Seq: vc.Seq, Hash: testvectors.Hex(t, vc.Hash), Time: parseTime(t, vc.Time), Sig: testvectors.Hex(t, vc.Sig)}
	c, err = NewArchiveChain(key, cp)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Read(bytes.NewReader(a1)); err != nil || len(c.Matched) != 1 {
		t.Fatalf("the first archive with the checkpoint of record 3: matched %d, %v", len(c.Matched), err)
	}

	lines := func(b []byte) []string { return strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n") }
	edit := func(b []byte, line int, from, to string) []byte {
		ls := lines(b)
		if !strings.Contains(ls[line], from) {
			t.Fatalf("line %d has no %q", line, from)
		}
		ls[line] = strings.Replace(ls[line], from, to, 1)
		return []byte(strings.Join(ls, ""))
	}
	drop := func(b []byte, line int) []byte {
		ls := lines(b)
		return []byte(strings.Join(append(ls[:line:line], ls[line+1:]...), ""))
	}
	var broken *BrokenError
	tests := []struct {
		name     string
		archives [][]byte
		check    func(err error) bool
	}{
		{"out of order", [][]byte{a2, a1}, func(err error) bool { return strings.Contains(err.Error(), "give the archives in order") }},
		{"the first missing, its start moved back", [][]byte{edit(a2, 0, `"seq": 5`, `"seq": 4`)}, func(err error) bool { return errors.Is(err, ErrBadStart) }},
		{"the unsigned record changed", [][]byte{edit(a1, 4, `"key_id": "key_0001"`, `"key_id": "key_0009"`)}, func(err error) bool {
			return errors.As(err, &broken) && broken.Seq == 4
		}},
		{"a record's caller changed", [][]byte{edit(a1, 2, `CN=admin,O=dcaas`, `CN=other,O=dcaas`)}, func(err error) bool {
			return errors.As(err, &broken) && broken.Seq == 2
		}},
		{"cut after an unsigned record", [][]byte{drop(a1, 5)}, func(err error) bool { return strings.Contains(err.Error(), "which is not signed") }},
		{"a record removed", [][]byte{drop(a1, 3)}, func(err error) bool { return errors.As(err, &broken) && broken.Seq == 3 }},
		{"no record", [][]byte{[]byte(lines(a1)[0])}, func(err error) bool { return strings.Contains(err.Error(), "holds no record") }},
		{"another key", [][]byte{edit(a1, 0, "ed25519:56475aa75463474c", "ed25519:0000000000000000")}, func(err error) bool {
			return strings.Contains(err.Error(), "signed by audit key ed25519:0000000000000000")
		}},
		{"another format", [][]byte{edit(a1, 0, "archive/v1", "archive/v9")}, func(err error) bool { return strings.Contains(err.Error(), "not an archive") }},
		{"an unknown field", [][]byte{edit(a1, 1, `"seq": 1,`, `"seq": 1, "extra": 1,`)}, func(err error) bool { return strings.Contains(err.Error(), "unknown field") }},
		{"two values on a line", [][]byte{edit(a1, 1, "\n", " {}\n")}, func(err error) bool { return strings.Contains(err.Error(), "more than one JSON value") }},
		{"a line too long", [][]byte{append(append([]byte(lines(a1)[0]), bytes.Repeat([]byte(" "), maxArchiveLine+1)...), '\n')}, func(err error) bool {
			return strings.Contains(err.Error(), "longer than")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readChain(key, tt.archives...)
			if err == nil || !tt.check(err) {
				t.Fatalf("readChain = %v", err)
			}
		})
	}
	if _, err := readChain(testKey.Public(), a1); err == nil {
		t.Fatal("the archive verified with another key")
	}
}

// TestArchiveWriter: what ArchiveWriter writes ArchiveChain reads back;
// the records after the last signed one are left out, and an archive made
// after it, from its end, chains to it.
func TestArchiveWriter(t *testing.T) {
	m := filled(t, 20)
	for _, i := range []int{3, 4, 19} { // records 4 and 5 covered by 6's signature; 20 by none
		m.records[i].Sig = nil
	}
	var first, second bytes.Buffer
	w, err := NewArchiveWriter(&first, testKey.Public(), Start{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range m.records[:12] {
		if err := w.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	end, n, err := w.Close()
	if err != nil || end.Seq != 12 || n != 12 {
		t.Fatalf("Close() = record %d, %d records, %v", end.Seq, n, err)
	}
	w, _ = NewArchiveWriter(&second, testKey.Public(), StartOf(end))
	for _, r := range m.records[12:] {
		if err := w.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if end, n, err := w.Close(); err != nil || end.Seq != 19 || n != 7 {
		t.Fatalf("Close() = record %d, %d records, %v; want 19 and 7 (record 20 unsigned)", end.Seq, n, err)
	}
	c, err := readChain(testKey.Public(), first.Bytes(), second.Bytes())
	if err != nil || c.End.Seq != 19 || c.Records != 19 {
		t.Fatalf("reading both back = %+v, %v", c, err)
	}
	var empty bytes.Buffer
	w, _ = NewArchiveWriter(&empty, testKey.Public(), Start{})
	_ = w.Add(m.records[19])
	if _, _, err := w.Close(); err == nil {
		t.Fatal("an archive of nothing signed closed without an error")
	}
}

// FuzzArchiveRead: no input makes an archive reader panic, and what it
// accepts is a run of consecutive records after its start, ending with a
// record the key signed.
func FuzzArchiveRead(f *testing.F) {
	key := vectorsKey(f)
	f.Add(readTestdata(f, "archive-1.jsonl"))
	f.Add(readTestdata(f, "archive-2.jsonl"))
	f.Add([]byte(`{"format":"dcaas-audit-archive/v1","key_id":"ed25519:56475aa75463474c","start":{"seq":0}}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := NewArchiveChain(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Read(bytes.NewReader(data)); err != nil {
			return
		}
		if c.End.Seq != c.Start+c.Records || c.End.Check(key) != nil {
			t.Fatalf("accepted an archive from %d of %d records ending at %d (%v)", c.Start, c.Records, c.End.Seq, c.End.Check(key))
		}
	})
}
