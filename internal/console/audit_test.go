package console

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/audit/audittest"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestAuditFollower: the audit page verifies each record once, as it is
// read: a record changed in the database after it was verified goes
// unnoticed until the hourly pass over the whole log, which names it; the
// page holds only the newest records.
func TestAuditFollower(t *testing.T) {
	env := kmstest.Start(t, nil)
	f := &auditFollower{kms: env.Admin.SDK, keep: 5}
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	follow := func(at time.Time) verification {
		t.Helper()
		v, err := f.follow(t.Context(), at)
		if err != nil {
			t.Fatalf("follow: %v", err)
		}
		return v
	}
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
