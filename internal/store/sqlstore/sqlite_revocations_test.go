package sqlstore_test

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// createKey creates a key of tenant acme with id.
func createKey(t *testing.T, db *sqlstore.DB, id string) {
	t.Helper()
	err := db.CreateKey(t.Context(),
		store.Key{KeyID: id, Tenant: "acme", CurrentVersion: 1, CreatedAt: t0},
		store.KeyVersion{KeyID: id, Version: 1, CreatedAt: t0})
	if err != nil {
		t.Fatalf("CreateKey(%s) = %v", id, err)
	}
}

// rawExec runs stmt on the file at path through a connection of its own.
func rawExec(t *testing.T, path, stmt string) {
	t.Helper()
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// TestSQLiteRevocationAtomic makes appending the event fail and checks that the
// key or instance row is left as it was: the change and its event commit
// together or not at all.
func TestSQLiteRevocationAtomic(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "kms.db")
	db := openSQLite(t, path)
	defer db.Close()
	createKey(t, db, "k-1")
	if err := db.CreateInstance(ctx, store.Instance{ID: "i-1", Tenant: "acme", EnrolledAt: t0}); err != nil {
		t.Fatalf("CreateInstance(i-1) = %v", err)
	}
	rawExec(t, path, `CREATE TRIGGER refuse BEFORE INSERT ON revocations BEGIN SELECT RAISE(ABORT, 'refused'); END`)

	if err := db.DisableKey(ctx, "k-1", t0); err == nil {
		t.Errorf("DisableKey(k-1) with the feed refusing inserts = nil, want an error")
	}
	if err := db.RevokeInstance(ctx, "i-1", t0); err == nil {
		t.Errorf("RevokeInstance(i-1) with the feed refusing inserts = nil, want an error")
	}
	if k, err := db.GetKey(ctx, "k-1"); err != nil || k.DisabledAt != nil {
		t.Errorf("GetKey(k-1) = DisabledAt %v, %v; want nil, nil", k.DisabledAt, err)
	}
	if in, err := db.GetInstance(ctx, "i-1"); err != nil || in.RevokedAt != nil {
		t.Errorf("GetInstance(i-1) = RevokedAt %v, %v; want nil, nil", in.RevokedAt, err)
	}

	// With the feed working again, the first successful call appends seq 1.
	rawExec(t, path, `DROP TRIGGER refuse`)
	if err := db.DisableKey(ctx, "k-1", t0); err != nil {
		t.Fatalf("DisableKey(k-1) = %v", err)
	}
	if last, err := db.LastRevocation(ctx); err != nil || last != 1 {
		t.Errorf("LastRevocation() = %d, %v; want 1, nil", last, err)
	}
}

// TestSQLiteRevocationTwoHandles disables keys through two DBs on one file, as two
// processes would: BEGIN IMMEDIATE keeps the seqs gap-free and unique.
func TestSQLiteRevocationTwoHandles(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "kms.db")
	a, b := openSQLite(t, path), openSQLite(t, path)
	defer a.Close()
	defer b.Close()
	const n = 40
	for i := range n {
		createKey(t, a, fmt.Sprintf("k%d", i))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		db := a
		if i%2 == 1 {
			db = b
		}
		wg.Go(func() { errs[i] = db.DisableKey(ctx, fmt.Sprintf("k%d", i), t0) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("DisableKey(k%d) = %v", i, err)
		}
	}
	evs, err := b.RevocationsAfter(ctx, "acme", 0, 2*n)
	if err != nil || len(evs) != n {
		t.Fatalf("RevocationsAfter(acme, 0, %d) = %d events, %v; want %d", 2*n, len(evs), err, n)
	}
	seen := map[string]bool{}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) || seen[ev.Subject] {
			t.Errorf("event %d = seq %d for %s; want seq %d, one per key", i, ev.Seq, ev.Subject, i+1)
		}
		seen[ev.Subject] = true
	}
}

// TestSQLiteMigrateFromSchema1 opens a database an older dcaas left at schema 1
// and checks that every later migration is applied and the data kept.
func TestSQLiteMigrateFromSchema1(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "kms.db")
	db := openSQLite(t, path)
	createKey(t, db, "k-1")
	if _, err := appendAudit(ctx, db, "legacy"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateInstance(ctx, store.Instance{ID: "i-1", Tenant: "acme", CustodianDN: "CN=a", Enclave: "tpm", CertSerial: "c", WrappingSerial: "w", WrappingKEM: "p256", WrappingPublic: []byte("pub"), EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, col := range []string{"last_poll_at", "keys_loaded"} {
		rawExec(t, path, `ALTER TABLE instances DROP COLUMN `+col) // 0010
	}
	for _, col := range []string{"ak_fingerprint", "ak_trust", "attested_at", "attestation_profiles"} {
		rawExec(t, path, `ALTER TABLE instances DROP COLUMN `+col) // 0007
	}
	rawExec(t, path, `DROP TABLE approval_votes`)                // 0008
	rawExec(t, path, `DROP TABLE approvals`)                     // 0008
	rawExec(t, path, `DROP TABLE approval_policies`)             // 0008
	rawExec(t, path, `DROP TABLE key_ceremony_components`)       // 0009
	rawExec(t, path, `DROP TABLE key_ceremonies`)                // 0009
	rawExec(t, path, `ALTER TABLE key_versions DROP COLUMN kcv`) // 0009
	rawExec(t, path, `DROP TABLE seal_migration`)                // 0006
	rawExec(t, path, `DROP TABLE kms_leases`)                    // 0006
	rawExec(t, path, `DROP TABLE audit_checkpoints`)             // 0005
	rawExec(t, path, `ALTER TABLE audit DROP COLUMN sig`)        // 0005
	rawExec(t, path, `DROP TABLE revocations`)
	rawExec(t, path, `DROP TABLE releases`) // 0004
	for _, col := range []string{"keys.min_decryption_version", "keys.rotation_period", "key_versions.encryptions", "key_versions.bytes"} {
		table, column, _ := strings.Cut(col, ".")
		rawExec(t, path, `ALTER TABLE `+table+` DROP COLUMN `+column) // 0003
	}
	rawExec(t, path, `DELETE FROM schema_migrations WHERE version > 1`)

	db = openSQLite(t, path)
	defer db.Close()
	if _, err := db.GetKey(ctx, "k-1"); err != nil {
		t.Errorf("after migrating, GetKey(k-1) = %v, want nil", err)
	}
	if err := db.DisableKey(ctx, "k-1", t0); err != nil {
		t.Errorf("after migrating, DisableKey(k-1) = %v, want nil", err)
	}
	evs, err := db.RevocationsAfter(ctx, "acme", 0, 10)
	if err != nil || len(evs) != 1 || evs[0].Seq != 1 || evs[0].Subject != "k-1" {
		t.Errorf("after migrating, RevocationsAfter(acme, 0, 10) = %+v, %v; want the one event for k-1", evs, err)
	}
	// An instance from before 0007 reads as never attested.
	if in, err := db.GetInstance(ctx, "i-1"); err != nil || in.AKFingerprint != "" || in.AKTrust != "" || in.AttestedAt != nil || in.AttestationProfiles != nil {
		t.Errorf("after migrating, GetInstance(i-1) = %+v, %v; want it unattested", in, err)
	}
	// The rows from before 0003 read as no minimum, no period, no usage.
	k, err := db.GetKey(ctx, "k-1")
	if err != nil || k.MinDecryptionVersion != 0 || k.RotationPeriod != 0 {
		t.Errorf("after migrating, GetKey(k-1) = %+v, %v; want no lifecycle settings", k, err)
	}
	v, err := db.GetKeyVersion(ctx, "k-1", 1)
	if err != nil || v.Encryptions != 0 || v.Bytes != 0 || v.KCV != "" {
		t.Errorf("after migrating, GetKeyVersion(k-1, 1) = %+v, %v; want zero usage and no KCV", v, err)
	}
	// The versions from before 0007 take a KCV once.
	if err := db.SetKeyVersionKCV(ctx, "k-1", 1, "ABCDEF"); err != nil {
		t.Errorf("after migrating, SetKeyVersionKCV(k-1, 1) = %v, want nil", err)
	}
	if n, err := db.AddKeyUsage(ctx, "acme", []store.KeyUsage{{KeyID: "k-1", Version: 1, Encryptions: 2, Bytes: 4}}); err != nil || n != 1 {
		t.Errorf("after migrating, AddKeyUsage(k-1) = %d, %v; want 1, nil", n, err)
	}
	// The audit record from before 0005 reads back without a signature.
	recs, err := db.AuditAfter(ctx, 0, 10)
	if err != nil || len(recs) != 1 || recs[0].Action != "legacy" || recs[0].Sig != nil {
		t.Errorf("after migrating, AuditAfter(0, 10) = %+v, %v; want the legacy record, unsigned", recs, err)
	}
	if _, err := db.LatestAuditCheckpoint(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after migrating, LatestAuditCheckpoint() = %v, want ErrNotFound", err)
	}
}
