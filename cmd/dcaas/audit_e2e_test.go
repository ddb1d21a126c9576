package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit/audittest"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
)

// auditDataDir runs the real KMS binary, makes it write audit records and
// stops it (SIGTERM: a clean stop signs a last checkpoint into
// DIR/audit-checkpoint.json).
func auditDataDir(t *testing.T) string {
	t.Helper()
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir)
	w := newTenantWorld(t, p, "acme")
	for range 5 {
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)
	}
	p.Stop(t)
	return dataDir
}

// tamper copies the stopped KMS's data dir and lets attack rewrite the
// copy's database directly, as someone who can write kms.db (but not
// read the root key) would; it returns the copy.
func tamper(t *testing.T, dataDir string, attack func(db *audittest.DB)) string {
	t.Helper()
	dir := copyDataDir(t, dataDir)
	db, err := audittest.OpenSQLite(filepath.Join(dir, "kms.db"))
	if err != nil {
		t.Fatal(err)
	}
	attack(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// dbRecords reads the audit records of a stopped KMS's kms.db.
func dbRecords(t *testing.T, dataDir string) []audittest.Record {
	t.Helper()
	db, err := audittest.OpenSQLite(filepath.Join(dataDir, "kms.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.Records(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// verifyFails runs dcaas audit verify and checks that it fails, saying
// want (a regexp) and never "audit log OK"; it returns stdout.
func verifyFails(t *testing.T, want string, args ...string) string {
	t.Helper()
	out, errOut, code := runDcaas(t, append([]string{"audit", "verify"}, args...)...)
	if code == 0 || strings.Contains(out, "audit log OK") {
		t.Fatalf("dcaas audit verify %s = exit %d, stdout %q; want a failure", strings.Join(args, " "), code, out)
	}
	if !regexp.MustCompile(want).MatchString(out) {
		t.Errorf("dcaas audit verify %s = stdout %q, stderr %q; want %q", strings.Join(args, " "), out, errOut, want)
	}
	return out
}

func verifyOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runDcaas(t, append([]string{"audit", "verify"}, args...)...)
	if code != 0 || !strings.Contains(out, "audit log OK") {
		t.Fatalf("dcaas audit verify %s = exit %d, stdout %q, stderr %q; want 0 and \"audit log OK\"", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// TestAuditVerifyCatchesDatabaseWriter: someone with write access to the
// KMS database (kms.db), without the audit key sealed in it, rewrites a
// record and recomputes every later hash, deletes one and re-chains,
// reorders, inserts, strips signatures, truncates the tail. The real
// `dcaas audit verify`, with only the data dir's public audit key and
// checkpoint (or ones kept elsewhere), fails on each, naming the first
// record changed.
func TestAuditVerifyCatchesDatabaseWriter(t *testing.T) {
	t.Parallel()
	dataDir := auditDataDir(t)
	out := verifyOK(t, "--data-dir", dataDir)
	if !strings.Contains(out, "matches") {
		t.Errorf("dcaas audit verify did not compare the data dir's checkpoint: %q", out)
	}
	m := regexp.MustCompile(`keep (\d+:[0-9a-f]{64}) and pass it back`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("dcaas audit verify does not print the head to keep: %q", out)
	}
	seenHead := m[1]
	recs := dbRecords(t, dataDir)
	head := int64(len(recs))
	i := len(recs) / 2 // a record in the middle

	for _, a := range audittest.Attacks {
		t.Run(a.Name, func(t *testing.T) {
			dir := tamper(t, dataDir, func(db *audittest.DB) {
				recs, err := db.Records(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Replace(t.Context(), a.Apply(recs, i)); err != nil {
					t.Fatal(err)
				}
			})
			verifyFails(t, `BROKEN at record `+strconv.FormatInt(a.Broken(i), 10)+`:`, "--data-dir", dir)
		})
	}

	// Keep a checkpoint outside, as an operator would.
	kept := filepath.Join(t.TempDir(), "checkpoint.json")
	out = verifyOK(t, "--data-dir", dataDir, "--checkpoint-out", kept, "--expect-head", seenHead)
	if !strings.Contains(out, "the head an earlier verification saw: matches") {
		t.Errorf("dcaas audit verify --expect-head on the same log: %q", out)
	}
	var cp api.AuditCheckpoint
	if err := json.Unmarshal(readFile(t, filepath.Dir(kept), filepath.Base(kept)), &cp); err != nil || cp.Seq != head {
		t.Fatalf("--checkpoint-out wrote %+v, %v; want a checkpoint of record %d", cp, err, head)
	}

	t.Run("truncated", func(t *testing.T) {
		dir := tamper(t, dataDir, func(db *audittest.DB) {
			if err := db.Truncate(t.Context(), head-2, true); err != nil {
				t.Fatal(err)
			}
		})
		// The data dir's checkpoint (written at the clean stop) catches it …
		verifyFails(t, `TRUNCATED: it ends at record `+strconv.FormatInt(head-2, 10), "--data-dir", dir)
		// … and so does the one kept elsewhere, when the data dir's is gone too.
		if err := os.Remove(filepath.Join(dir, "audit-checkpoint.json")); err != nil {
			t.Fatal(err)
		}
		verifyFails(t, `TRUNCATED`, "--data-dir", dir, "--expect-checkpoint", kept)
		// … and so does the head an earlier verification printed.
		verifyFails(t, `TRUNCATED: it ends at record `+strconv.FormatInt(head-2, 10)+`, but an earlier verification saw record `+strconv.FormatInt(head, 10),
			"--data-dir", dir, "--expect-head", seenHead)
		// Without any checkpoint past the new end, it cannot be detected, and
		// verify says so.
		out := verifyOK(t, "--data-dir", dir)
		if !strings.Contains(out, "cannot be detected") && !strings.Contains(out, "could not be detected") {
			t.Errorf("verify without a checkpoint past the end does not warn: %q", out)
		}
	})
	t.Run("signatures stripped", func(t *testing.T) {
		dir := tamper(t, dataDir, func(db *audittest.DB) {
			if err := db.StripSignatures(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
		verifyFails(t, `NOT VERIFIED`, "--data-dir", dir)
	})
	t.Run("checkpoint forged", func(t *testing.T) {
		dir := tamper(t, dataDir, func(db *audittest.DB) {
			if err := db.ForgeCheckpoint(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
		verifyFails(t, `NOT VERIFIED: the checkpoint from the database`, "--data-dir", dir)
	})
	t.Run("another KMS's key", func(t *testing.T) {
		other, err := kcrypto.GenerateLogKey()
		if err != nil {
			t.Fatal(err)
		}
		keyFile := filepath.Join(t.TempDir(), "other.pem")
		if err := os.WriteFile(keyFile, other.Public().PEM(), 0o644); err != nil {
			t.Fatal(err)
		}
		// Record 1 is refused, naming the key that made it, with the
		// checkpoints (whose signatures are checked with the keys the log
		// brings in, so after its first record) and without them.
		verifyFails(t, `BROKEN at record 1: .*record 1 names audit key ed25519:`, "--data-dir", dataDir, "--key", keyFile)
		dir := tamper(t, dataDir, func(db *audittest.DB) {
			if _, err := db.Exec(t.Context(), `DELETE FROM audit_checkpoints`); err != nil {
				t.Fatal(err)
			}
		})
		if err := os.Remove(filepath.Join(dir, "audit-checkpoint.json")); err != nil {
			t.Fatal(err)
		}
		verifyFails(t, `BROKEN at record 1: .*record 1 names audit key ed25519:`, "--data-dir", dir, "--key", keyFile)
	})
	t.Run("no key", func(t *testing.T) {
		dir := copyDataDir(t, dataDir)
		if err := os.Remove(filepath.Join(dir, "audit-key.pem")); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := runDcaas(t, "audit", "verify", "--data-dir", dir)
		if code == 0 || !strings.Contains(errOut, "--key") {
			t.Errorf("dcaas audit verify without a key = exit %d, stderr %q; want a failure asking for --key", code, errOut)
		}
	})
}

// TestAuditKeyAndCheckpointCommands: dcaas audit key prints the key a
// verifier pins (from the KMS and from the data dir, the same), and dcaas
// audit checkpoint has the running KMS sign one to keep.
func TestAuditKeyAndCheckpointCommands(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir)
	conn := []string{"--kms", p.URL(), "--ca", filepath.Join(dataDir, "ca.pem")}
	fromKMS, errOut, code := runDcaas(t, append([]string{"audit", "key", "--json"}, conn...)...)
	if code != 0 {
		t.Fatalf("dcaas audit key --kms = exit %d, stderr %q", code, errOut)
	}
	var ak api.AuditKey
	if err := json.Unmarshal([]byte(fromKMS), &ak); err != nil {
		t.Fatalf("dcaas audit key --json printed %q: %v", fromKMS, err)
	}
	if ak.PublicKeyPEM != string(readFile(t, dataDir, "audit-key.pem")) {
		t.Errorf("the KMS's audit key differs from DIR/audit-key.pem")
	}
	fromDir, _, code := runDcaas(t, "audit", "key", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(fromDir, ak.KeyID) || !strings.Contains(fromDir, ak.PublicKeyPEM) {
		t.Errorf("dcaas audit key --data-dir = exit %d, %q; want key %s", code, fromDir, ak.KeyID)
	}
	if _, err := kcrypto.ParseLogVerifyKeyPEM([]byte(fromDir)); err != nil {
		t.Errorf("the output of dcaas audit key is not a PEM public key: %v", err)
	}

	w := newTenantWorld(t, p, "acme")
	w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)
	admin := append(conn, "--cert", filepath.Join(dataDir, "admin/cert.pem"), "--key", filepath.Join(dataDir, "admin/key.pem"))
	kept := filepath.Join(t.TempDir(), "cp.json")
	out, errOut, code := runDcaas(t, append([]string{"audit", "checkpoint", "--out", kept}, admin...)...)
	var cp api.AuditCheckpoint
	if code != 0 || json.Unmarshal([]byte(out), &cp) != nil || cp.KeyID != ak.KeyID || cp.Seq < 5 {
		t.Fatalf("dcaas audit checkpoint = exit %d, %q, stderr %q; want a checkpoint by key %s", code, out, errOut, ak.KeyID)
	}
	// Verified on the live KMS, the kept checkpoint matches.
	keyFile := filepath.Join(t.TempDir(), "audit-key.pem")
	if err := os.WriteFile(keyFile, []byte(ak.PublicKeyPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	out = verifyOK(t, "--data-dir", dataDir, "--key", keyFile, "--expect-checkpoint", kept)
	if !strings.Contains(out, "checkpoint of record "+strconv.FormatInt(cp.Seq, 10)) {
		t.Errorf("verify does not report the kept checkpoint of record %d: %q", cp.Seq, out)
	}
	p.Stop(t)
}

// copyDataDir copies the database of a stopped KMS, and what a verifier of
// its audit log reads (audit-key.pem, audit-checkpoint.json), into a
// fresh dir.
func copyDataDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "kms.db") && !strings.HasPrefix(e.Name(), "audit-") {
			continue
		}
		b := readFile(t, src, e.Name())
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestAuditVerifyOldDataDir: a data dir from before signed records (made
// here by stripping the key and signatures of a new one) gets an audit
// key at its next start, and verify reports the unkeyed records before it.
func TestAuditVerifyOldDataDir(t *testing.T) {
	t.Parallel()
	dataDir := auditDataDir(t)
	db, err := audittest.OpenSQLite(filepath.Join(dataDir, "kms.db"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := db.Records(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var old []audittest.Record
	for _, r := range recs[1:] { // record 1 is the audit key's creation
		r.Sig = nil
		old = append(old, r)
	}
	if err := db.Replace(t.Context(), audittest.Rechain(audittest.Renumber(old), 0)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DELETE FROM settings WHERE name = 'audit-key'`, `DELETE FROM audit_checkpoints`} {
		if _, err := db.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	for _, f := range []string{"audit-key.pem", "audit-checkpoint.json"} {
		if err := os.Remove(filepath.Join(dataDir, f)); err != nil {
			t.Fatal(err)
		}
	}

	p := startKMS(t, dataDir)
	p.Stop(t)
	out := verifyOK(t, "--data-dir", dataDir)
	want := "records 1 to " + strconv.Itoa(len(old)) + " were written before the audit key existed"
	if !strings.Contains(out, want) {
		t.Errorf("dcaas audit verify of an upgraded data dir = %q, want it to say %q", out, want)
	}
}
