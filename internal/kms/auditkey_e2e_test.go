package kms_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/audit/audittest"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

func rawDB(t *testing.T, env *kmstest.Env) *audittest.DB {
	t.Helper()
	db, err := audittest.OpenSQLite(filepath.Join(env.DataDir, kms.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestAuditKeyServed: the public key and checkpoints are served, the key
// matches DIR/audit-key.pem, and every record is signed by it.
func TestAuditKeyServed(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	var ak api.AuditKey
	w.env.Anonymous().MustDo(t, "GET", "/v1/audit/key", nil, &ak)
	key, err := kcrypto.ParseLogVerifyKeyPEM([]byte(ak.PublicKeyPEM))
	if err != nil || key.ID() != ak.KeyID || !key.Equal(w.env.Server().KMS.AuditKey()) {
		t.Fatalf("GET /v1/audit/key = %+v, %v; want the KMS's audit key", ak, err)
	}
	pemFile, err := os.ReadFile(filepath.Join(w.env.DataDir, kms.AuditKeyFile))
	if err != nil || !bytes.Equal(pemFile, []byte(ak.PublicKeyPEM)) {
		t.Errorf("DIR/%s = %q, %v; want the served key", kms.AuditKeyFile, pemFile, err)
	}

	var made, latest api.AuditCheckpoint
	w.env.Admin.MustDo(t, "POST", "/v1/audit/checkpoints", nil, &made)
	w.env.Admin.MustDo(t, "GET", "/v1/audit/checkpoint", nil, &latest)
	if made.Seq < 5 || latest.Seq != made.Seq || !bytes.Equal(latest.Signature, made.Signature) || made.KeyID != ak.KeyID {
		t.Errorf("POST then GET checkpoint = %+v, %+v; want the same, by key %s", made, latest, ak.KeyID)
	}
	kmstest.WantError(t, w.cust.Do("POST", "/v1/audit/checkpoints", nil, nil), 403, api.CodeForbidden)
	kmstest.WantError(t, w.cust.Do("GET", "/v1/audit/checkpoint", nil, nil), 403, api.CodeForbidden)

	var page api.AuditPage
	w.env.Admin.MustDo(t, "GET", "/v1/audit", nil, &page)
	if len(page.Records) < 5 || page.Records[0].Action != audit.ActionKeyCreated || page.Records[0].KeyID != ak.KeyID {
		t.Fatalf("the audit log starts with %+v, want the audit key's creation", page.Records[0])
	}
	for _, r := range page.Records {
		if len(r.Signature) != 64 {
			t.Errorf("record %d (%s) has a %d-byte signature", r.Seq, r.Action, len(r.Signature))
		}
	}
	cp := store.AuditCheckpoint{Seq: made.Seq, Hash: made.Hash, Time: made.Time, Sig: made.Signature}
	if res, err := audit.Verify(t.Context(), w.env.Server().Store, key, cp); err != nil || res.Legacy != 0 {
		t.Errorf("audit.Verify = %+v, %v", res, err)
	}
}

// TestAuditKeyRestart: the key is stored in the database, so a
// restart (or another replica) signs with the same key and appends no
// second creation record.
func TestAuditKeyRestart(t *testing.T) {
	env := kmstest.Start(t, nil)
	before := env.Server().KMS.AuditKey()
	env.Restart()
	if after := env.Server().KMS.AuditKey(); !after.Equal(before) {
		t.Fatalf("the audit key changed across a restart: %s, then %s", before.ID(), after.ID())
	}
	kmstest.WantAuditRecords(t, env.Server().Store, audit.ActionKeyCreated, 1)
}

// TestAuditKeyAddedToOldDataDir: a data dir from before the keyed audit
// log (unsigned records, no audit key) gets a key when it opens; the old
// records verify as an unkeyed prefix, anchored by the key's creation
// record, and a change to them after that is caught.
func TestAuditKeyAddedToOldDataDir(t *testing.T) {
	env := kmstest.Start(t, nil)
	env.Tenant(t, "acme")
	env.App(t, "acme", "payments", api.RoleCustodian)
	env.Stop()

	// Make it look as an older dcaas left it.
	db := rawDB(t, env)
	recs, err := db.Records(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var old []audittest.Record
	for _, r := range recs {
		if r.Action != audit.ActionKeyCreated {
			r.Sig = nil
			old = append(old, r)
		}
	}
	old = audittest.Rechain(audittest.Renumber(old), 0)
	if err := db.Replace(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DELETE FROM settings WHERE name = 'audit-key'`, `DELETE FROM audit_checkpoints`} {
		if _, err := db.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(env.DataDir, kms.AuditCheckpointFile)); err != nil {
		t.Fatal(err)
	}

	env.Restart()
	key := env.Server().KMS.AuditKey()
	res, err := audit.Verify(t.Context(), env.Server().Store, key)
	if err != nil || res.Legacy != int64(len(old)) || res.Records <= res.Legacy {
		t.Fatalf("audit.Verify(upgraded log) = %+v, %v; want %d legacy records and signed ones after", res, err, len(old))
	}
	first, err := env.Server().Store.AuditAfter(t.Context(), res.Legacy, 1)
	if err != nil || len(first) != 1 || first[0].Action != audit.ActionKeyCreated || first[0].KeyID != key.ID() {
		t.Fatalf("record %d = %+v, %v; want the audit key's creation", res.Legacy+1, first, err)
	}
	env.Stop()

	// A legacy record rewritten now, every later hash recomputed, breaks
	// the first signed record.
	recs, err = db.Records(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	recs[1].Outcome = "denied"
	if err := db.Replace(t.Context(), audittest.Rechain(recs, 1)); err != nil {
		t.Fatal(err)
	}
	st, err := sqlstore.OpenSQLiteReadOnly(t.Context(), filepath.Join(env.DataDir, kms.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var broken *audit.BrokenError
	if _, err := audit.Verify(t.Context(), st, key); !errors.As(err, &broken) || broken.Seq != res.Legacy+1 {
		t.Errorf("audit.Verify(legacy record rewritten) = %v, want a *BrokenError at record %d", err, res.Legacy+1)
	}
}

// TestAuditTruncatedUnderRunningKMS: records removed from the database
// under a running KMS are noticed at its next append: it refuses to
// answer (fail closed) and to sign a checkpoint of the shorter log.
func TestAuditTruncatedUnderRunningKMS(t *testing.T) {
	env := kmstest.Start(t, func(o *kms.Options) { o.Config.AuditCheckpointTicks = make(chan time.Time) })
	env.Tenant(t, "acme")
	env.Tenant(t, "globex")
	db := rawDB(t, env)
	if _, err := db.Exec(t.Context(), `DELETE FROM audit WHERE seq > (SELECT MAX(seq) - 2 FROM audit)`); err != nil {
		t.Fatal(err)
	}
	kmstest.WantError(t, env.Admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "initech"}, nil), 503, api.CodeUnavailable)
	if _, err := env.Server().KMS.Checkpoint(t.Context()); !errors.Is(err, audit.ErrRegressed) {
		t.Errorf("Checkpoint() of a truncated log = %v, want ErrRegressed", err)
	}
	if _, err := env.Server().Store.GetTenant(t.Context(), "initech"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the tenant refused for want of an audit record exists: %v", err)
	}
}

// resealed runs kms.Reseal over the stopped env's data dir with a resealer
// that keeps every blob as it is, and returns the items of that kind it
// was handed, in order.
func resealed(t *testing.T, env *kmstest.Env, kind string) []kms.SealedItem {
	t.Helper()
	st, err := sqlstore.OpenSQLite(t.Context(), filepath.Join(env.DataDir, kms.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	var items []kms.SealedItem
	err = kms.Reseal(t.Context(), st, func(it kms.SealedItem) ([]byte, error) {
		if it.Kind == kind {
			items = append(items, it)
		}
		return it.Sealed, nil
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// TestResealCoversAuditKey: moving the data dir to another seal reseals
// the audit key too, under its own associated data.
func TestResealCoversAuditKey(t *testing.T) {
	env := kmstest.Start(t, nil)
	env.Stop()
	items := resealed(t, env, kms.SealedAuditKey)
	if len(items) != 1 || string(items[0].AAD) != "dcaas/v1 audit-key" || items[0].String() != "audit key" {
		t.Fatalf("resealed audit keys %v, want one under its AAD", items)
	}
}
