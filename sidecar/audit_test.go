package sidecar

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// auditLines reads the local audit records of file, failing t on a line
// that is not one JSON record.
func auditLines(t *testing.T, file string) []localRecord {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []localRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r localRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: a line that is not a record: %q", file, sc.Text())
		}
		recs = append(recs, r)
	}
	return recs
}

// TestLocalAuditRotates: past its size the local audit log is moved aside
// (audit.jsonl.1, the older ones one number up, keep of them), so a
// caller refused in a loop cannot fill the disk; the files kept hold the
// newest records, in order, none cut; a file truncated under the sidecar
// (logrotate's copytruncate) is written on, not rotated early.
func TestLocalAuditRotates(t *testing.T) {
	dir := t.TempDir()
	const maxBytes, keep, n = 1024, 2, 200
	a, err := openLocalAudit(dir, maxBytes, keep, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for i := range n {
		if err := a.Append("uid:1000", "crypto.encrypt", []string{fmt.Sprintf("key_%04d", i)}, "denied", "forbidden"); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, auditFile)
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Fatalf("audit.jsonl.3 exists (%v): more than %d rotated files kept", err, keep)
	}
	var kept []localRecord
	for _, f := range []string{path + ".2", path + ".1", path} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxBytes+200 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %d bytes, mode %v; want at most about %d, 0600", f, fi.Size(), fi.Mode().Perm(), maxBytes)
		}
		kept = append(kept, auditLines(t, f)...)
	}
	if len(kept) < 2*maxBytes/150 {
		t.Fatalf("only %d records kept", len(kept))
	}
	for i, r := range kept {
		if want := fmt.Sprintf("key_%04d", n-len(kept)+i); len(r.Keys) != 1 || r.Keys[0] != want {
			t.Fatalf("record %d of those kept names %v, want %s: the newest records, in order", i, r.Keys, want)
		}
	}

	// Truncated under it: written on from the start, no rotation before
	// the file is full again.
	before := auditLines(t, path+".1")
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	a.size = maxBytes // as if the sidecar had not seen it
	if err := a.Append("uid:1000", "keys.import", []string{"key_x"}, "ok", ""); err != nil {
		t.Fatal(err)
	}
	if got := auditLines(t, path); len(got) != 1 || got[0].Keys[0] != "key_x" {
		t.Fatalf("after a copytruncate audit.jsonl holds %+v, want the one new record", got)
	}
	if after := auditLines(t, path+".1"); len(after) != len(before) || after[0].Keys[0] != before[0].Keys[0] {
		t.Fatalf("a truncated log was rotated: audit.jsonl.1 changed")
	}
}
