package main_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/audit/audittest"
)

// TestAuditArchiveAndPrune: the operator's retention procedure with the
// real binary: archive the oldest records (verified as they are read),
// prune them from the KMS, twice; the pruned log verifies alone and with
// its archives, which verify alone too. Archives given out of order, one
// missing, or changed, and a start moved in the database (records deleted
// past a prune) are each refused.
func TestAuditArchiveAndPrune(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir, "--audit-retention", "1s")
	auditKey := filepath.Join(dataDir, "audit-key.pem")
	admin := []string{"--kms", p.URL(), "--ca", filepath.Join(dataDir, "ca.pem"),
		"--cert", filepath.Join(dataDir, "admin/cert.pem"), "--key", filepath.Join(dataDir, "admin/key.pem")}
	w := newTenantWorld(t, p, "acme")
	work := func() {
		for range 3 {
			w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)
		}
		time.Sleep(1100 * time.Millisecond) // past the KMS's --audit-retention of 1s
	}
	dcaas := func(args ...string) string {
		t.Helper()
		out, errOut, code := runDcaas(t, args...)
		if code != 0 {
			t.Fatalf("dcaas %s = exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	lastRecord := regexp.MustCompile(`its last record: (\d+):([0-9a-f]{64})`)
	archives := t.TempDir()
	// Nothing old enough yet: no file, and no failure (a scheduled job).
	none := filepath.Join(archives, "none.jsonl")
	if out := dcaas(append([]string{"audit", "archive", "--audit-key", auditKey, "--out", none, "--older-than", "1000h"}, admin...)...); !strings.Contains(out, "nothing to archive") {
		t.Fatalf("dcaas audit archive with nothing old enough printed %q", out)
	}
	if _, err := os.Stat(none); !os.IsNotExist(err) {
		t.Fatalf("dcaas audit archive with nothing to archive wrote %s (%v)", none, err)
	}
	var ends []int64
	for i, name := range []string{"a1.jsonl", "a2.jsonl"} {
		work()
		file := filepath.Join(archives, name)
		out := dcaas(append([]string{"audit", "archive", "--audit-key", auditKey, "--out", file, "--older-than", "1s"}, admin...)...)
		m := lastRecord.FindStringSubmatch(out)
		if m == nil || !strings.Contains(out, "archived records ") {
			t.Fatalf("dcaas audit archive printed %q", out)
		}
		end, _ := strconv.ParseInt(m[1], 10, 64)
		if i > 0 && !strings.Contains(out, "archived records "+strconv.FormatInt(ends[i-1]+1, 10)+" to ") {
			t.Errorf("the second archive does not start after the first's end %d: %q", ends[i-1], out)
		}
		ends = append(ends, end)
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("the archive's mode = %v, %v; want 0600", fi.Mode().Perm(), err)
		}
		// It verifies on its own, with the key alone.
		if out := dcaas("audit", "verify", "--archive", file, "--key", auditKey); !strings.Contains(out, "audit archives OK") {
			t.Fatalf("dcaas audit verify --archive printed %q", out)
		}
		out = dcaas(append([]string{"audit", "prune", "--archive", file, "--audit-key", auditKey}, admin...)...)
		if !strings.Contains(out, "audit log pruned: it now starts after record "+m[1]+":"+m[2]) {
			t.Fatalf("dcaas audit prune printed %q", out)
		}
		// The same archive again: the log starts after it already.
		if _, errOut, code := runDcaas(t, append([]string{"audit", "prune", "--archive", file, "--audit-key", auditKey}, admin...)...); code == 0 || !strings.Contains(errOut, "starts after record "+m[1]) {
			t.Errorf("a second prune of the same archive = exit %d, stderr %q", code, errOut)
		}
	}
	a1, a2 := filepath.Join(archives, "a1.jsonl"), filepath.Join(archives, "a2.jsonl")
	p.Stop(t)

	out := verifyOK(t, "--data-dir", dataDir)
	if !strings.Contains(out, "records 1 to "+strconv.FormatInt(ends[1], 10)+" were pruned") {
		t.Errorf("dcaas audit verify of the pruned log does not say what was pruned: %q", out)
	}
	out = verifyOK(t, "--data-dir", dataDir, "--archive", a1, "--archive", a2)
	if !strings.Contains(out, "together they hold every record from 1 on") {
		t.Errorf("dcaas audit verify with both archives = %q", out)
	}
	// The archives as arguments, as a shell glob gives them.
	if out := verifyOK(t, "--data-dir", dataDir, a1, a2); !strings.Contains(out, "together they hold every record from 1 on") {
		t.Errorf("dcaas audit verify with both archives as arguments = %q", out)
	}
	verifyOK(t, "--data-dir", dataDir, "--archive", a2) // from a1's end on
	verifyFails(t, `NOT COVERED: the archives end at record `+strconv.FormatInt(ends[0], 10), "--data-dir", dataDir, "--archive", a1)
	verifyFails(t, `archive NOT VERIFIED: .*a1.jsonl: audit: the archive starts after record 0, but the archive before it ends at record`, "--data-dir", dataDir, "--archive", a2, "--archive", a1)

	// An archive changed: a record's caller rewritten.
	b, err := os.ReadFile(a1)
	if err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(archives, "changed.jsonl")
	if err := os.WriteFile(changed, bytes.Replace(b, []byte(`"caller":"CN=admin,O=dcaas"`), []byte(`"caller":"CN=nobody,O=dcaas"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	verifyFails(t, `archive NOT VERIFIED: .*chain broken at record`, "--archive", changed, "--key", auditKey)

	// Someone who can write the database deletes more records and names a
	// later signed record as the start.
	recs := dbRecords(t, dataDir)
	if recs[0].Seq != ends[1]+1 {
		t.Fatalf("the database's log starts at record %d, want %d (the pruned records deleted)", recs[0].Seq, ends[1]+1)
	}
	var later audittest.Record
	for _, r := range recs {
		if r.Sig != nil && r.Action != audit.ActionPruned && r.Seq < recs[len(recs)-1].Seq-3 {
			later = r
		}
	}
	if later.Seq == 0 {
		t.Fatal("no signed record to move the start to")
	}
	moved := tamper(t, dataDir, func(db *audittest.DB) {
		start := audit.Start{Seq: later.Seq, Hash: later.Hash, Sig: later.Sig}
		if _, err := db.Exec(t.Context(), `UPDATE settings SET value = ? WHERE name = 'audit-start'`, start.Marshal()); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(t.Context(), `DELETE FROM audit WHERE seq <= ?`, later.Seq); err != nil {
			t.Fatal(err)
		}
	})
	verifyFails(t, `BROKEN at record `+strconv.FormatInt(later.Seq+1, 10)+`: the log starts after record `+strconv.FormatInt(later.Seq, 10)+`.*no record of that prune`, "--data-dir", moved)
	// And one who removes the start: the records before are missing.
	unset := tamper(t, dataDir, func(db *audittest.DB) {
		if _, err := db.Exec(t.Context(), `DELETE FROM settings WHERE name = 'audit-start'`); err != nil {
			t.Fatal(err)
		}
	})
	verifyFails(t, `BROKEN at record 1: it is missing`, "--data-dir", unset)
}

// TestAuditKeyRotationCLI: an admin rotates the audit key and, once the
// replicas had the time to switch, retires the old one, with the real
// binary; the data dir's audit-key.pem stays the first key, and `dcaas
// audit verify` with it verifies the whole log and names both changes.
func TestAuditKeyRotationCLI(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir, "--cert-check-interval", "200ms", "--audit-retention", "1s")
	admin := []string{"--kms", p.URL(), "--ca", filepath.Join(dataDir, "ca.pem"),
		"--cert", filepath.Join(dataDir, "admin/cert.pem"), "--key", filepath.Join(dataDir, "admin/key.pem")}
	firstPEM := readFile(t, dataDir, "audit-key.pem")
	w := newTenantWorld(t, p, "acme")
	out, errOut, code := runDcaas(t, append([]string{"audit", "key", "rotate"}, admin...)...)
	if code != 0 || !strings.Contains(out, "audit log signed with key ed25519:") {
		t.Fatalf("dcaas audit key rotate = exit %d, %q, stderr %q", code, out, errOut)
	}
	w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)
	time.Sleep(500 * time.Millisecond) // two --cert-check-interval: every replica switched
	if out, errOut, code := runDcaas(t, append([]string{"audit", "key", "retire"}, admin...)...); code != 0 {
		t.Fatalf("dcaas audit key retire = exit %d, %q, stderr %q", code, out, errOut)
	}
	w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)
	// Archived and pruned past the rotation, twice: the second archive
	// starts after a record the new key signed, and carries the key
	// records that let the first key verify it alone.
	auditKey := filepath.Join(dataDir, "audit-key.pem")
	var archives []string
	for _, name := range []string{"r1.jsonl", "r2.jsonl"} {
		time.Sleep(1100 * time.Millisecond) // past --audit-retention
		file := filepath.Join(t.TempDir(), name)
		for _, args := range [][]string{
			append([]string{"audit", "archive", "--audit-key", auditKey, "--out", file, "--older-than", "1s"}, admin...),
			{"audit", "verify", "--key", auditKey, file},
			append([]string{"audit", "prune", "--archive", file, "--audit-key", auditKey}, admin...),
		} {
			if out, errOut, code := runDcaas(t, args...); code != 0 {
				t.Fatalf("dcaas %s = exit %d, %q, stderr %q", strings.Join(args, " "), code, out, errOut)
			}
		}
		archives = append(archives, file)
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)
	}
	p.Stop(t)
	if out := verifyOK(t, append([]string{"--data-dir", dataDir}, archives...)...); !strings.Contains(out, "every record from 1 on") {
		t.Errorf("dcaas audit verify with the archives after a rotation = %q", out)
	}
	if got := readFile(t, dataDir, "audit-key.pem"); !bytes.Equal(got, firstPEM) {
		t.Fatalf("audit-key.pem changed with the rotation:\n%s\nwant the first key\n%s", got, firstPEM)
	}
	out = verifyOK(t, "--data-dir", dataDir)
	if !regexp.MustCompile(`audit key rotated to ed25519:[0-9a-f]{16} at record \d+`).MatchString(out) || !strings.Contains(out, "retired at record") {
		t.Errorf("dcaas audit verify after a rotation = %q, want the rotation and the retirement named", out)
	}
}
