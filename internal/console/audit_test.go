package console

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/audit/audittest"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
)

// t0 is the time the follower tests start at.
var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// newFollower returns a follower of env's audit log as its admin, keeping
// 5 records, and its follow at a time, which fails t on a read error.
func newFollower(t *testing.T, env *kmstest.Env) (*auditFollower, func(at time.Time) verification) {
	f := &auditFollower{kms: env.Admin.SDK, keep: 5}
	return f, func(at time.Time) verification {
		t.Helper()
		v, err := f.follow(t.Context(), at)
		if err != nil {
			t.Fatalf("follow: %v", err)
		}
		return v
	}
}

// TestAuditFollower: the audit page verifies each record once, as it is
// read: a record changed in the database after it was verified goes
// unnoticed until the hourly pass over the whole log, which names it; the
// page holds only the newest records.
func TestAuditFollower(t *testing.T) {
	env := kmstest.Start(t, nil)
	f, follow := newFollower(t, env)
	first := follow(t0)
	if !first.OK || first.Records < 2 || !first.FullAt.Equal(t0) {
		t.Fatalf("first view = %+v, want the chain verified from record 1", first)
	}

	db, err := audittest.OpenSQLite(filepath.Join(env.DataDir, kms.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n, err := db.Exec(t.Context(), `UPDATE audit SET caller = 'CN=someone else' WHERE seq = 2`); err != nil || n != 1 {
		t.Fatalf("changing record 2: %d rows, %v", n, err)
	}
	for _, name := range []string{"acme", "globex", "initech"} {
		env.Tenant(t, name)
	}
	later := follow(t0.Add(time.Minute))
	if !later.OK || later.Records <= first.Records || !later.FullAt.Equal(t0) {
		t.Fatalf("a minute later = %+v, want the new records verified after the %d read before", later, first.Records)
	}
	if got, total := f.match(auditFilter{}, 200); len(got) != 5 || total != 5 || got[0].Seq != f.last {
		t.Errorf("match = %d records (total %d), the newest %d; want the newest 5, ending at %d", len(got), total, got[0].Seq, f.last)
	}

	full := follow(t0.Add(fullEvery))
	if full.OK || !strings.Contains(full.Problem, "record 2") || !full.FullAt.Equal(t0.Add(fullEvery)) {
		t.Fatalf("the hourly pass = %+v, want the changed record 2 named", full)
	}
}

// TestAuditFollowerPruned: a pruned log is verified from its start, with
// the record of the prune that set it; a start moved in the database
// (records deleted past it and a later signed record named) is caught at
// the next pass over the whole log.
func TestAuditFollowerPruned(t *testing.T) {
	clock := kmstest.NewClock()
	clock.Advance(-3 * time.Hour) // certificates issued on it stay valid when it moves on
	env := kmstest.Start(t, func(o *kms.Options) {
		o.Now = clock.Now
		o.Config.AuditRetention = time.Hour
	})
	for _, name := range []string{"acme", "globex", "initech"} {
		env.Tenant(t, name)
	}
	_, follow := newFollower(t, env)
	if v := follow(t0); !v.OK || v.Start != 0 {
		t.Fatalf("first view = %+v", v)
	}
	recs, err := env.Server().Store.AuditAfter(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	signed := func(below int64) store.AuditRecord {
		for i := len(recs) - 1; i >= 0; i-- {
			if recs[i].Seq <= below && recs[i].Sig != nil {
				return recs[i]
			}
		}
		t.Fatalf("no signed record at or below %d", below)
		return store.AuditRecord{}
	}
	through := signed(int64(len(recs) / 2))
	clock.Advance(2 * time.Hour)
	if _, err := env.Admin.SDK.PruneAudit(t.Context(), api.AuditPruneRequest{Through: through.Seq, Hash: through.Hash}); err != nil {
		t.Fatal(err)
	}
	if v := follow(t0.Add(time.Minute)); !v.OK || v.Start != 0 {
		t.Fatalf("after the prune = %+v, want the chain still verified from record 1 (read before)", v)
	}
	full := follow(t0.Add(fullEvery))
	if !full.OK || full.Start != through.Seq || full.Records <= through.Seq {
		t.Fatalf("the hourly pass after the prune = %+v, want the chain verified from record %d", full, through.Seq)
	}

	// Someone who can write the database names a later signed record as
	// the start and deletes the records before it.
	later := signed(int64(len(recs)))
	if later.Seq <= through.Seq {
		t.Fatalf("no signed record after %d to move the start to", through.Seq)
	}
	db, err := audittest.OpenSQLite(filepath.Join(env.DataDir, kms.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n, err := db.Exec(t.Context(), `UPDATE settings SET value = ? WHERE name = 'audit-start'`, audit.StartOf(later).Marshal()); err != nil || n != 1 {
		t.Fatalf("moving the start: %d rows, %v", n, err)
	}
	if _, err := db.Exec(t.Context(), `DELETE FROM audit WHERE seq <= ?`, later.Seq); err != nil {
		t.Fatal(err)
	}
	moved := follow(t0.Add(2 * fullEvery))
	if moved.OK || !strings.Contains(moved.Problem, "no record of that prune") {
		t.Fatalf("the pass after the start moved = %+v, want it refused", moved)
	}
}
