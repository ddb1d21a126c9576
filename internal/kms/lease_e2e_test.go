package kms_test

import (
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// TestLeaseFencesAPausedReplica: a KMS whose lease a seal migration
// deleted (it looked expired: the replica was paused or cut off) commits
// nothing more, answers writes 503, and tells its owner to stop it; a
// KMS does not open while the migration holds the store; a clean Close
// releases the lease.
func TestLeaseFencesAPausedReplica(t *testing.T) {
	env := kmstest.Start(t, func(o *kms.Options) {
		o.Lease = kms.LeaseConfig{Renew: 20 * time.Millisecond, TTL: time.Second}
	})
	env.Tenant(t, "acme")
	db, err := sqlstore.OpenSQLite(t.Context(), filepath.Join(env.DataDir, kms.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	leases, err := db.Leases(t.Context())
	if err != nil || len(leases) != 1 {
		t.Fatalf("Leases() with one KMS running = %+v, %v; want one", leases, err)
	}
	// A renewal moves the heartbeat.
	time.Sleep(100 * time.Millisecond)
	if again, err := db.Leases(t.Context()); err != nil || len(again) != 1 || !again[0].Heartbeat.After(leases[0].Heartbeat) {
		t.Fatalf("Leases() later = %+v, %v; want the heartbeat of %+v renewed", again, err, leases[0])
	}
	// The migration's clock says the lease expired: it begins and deletes it.
	m := store.SealMigration{Holder: "test", Host: "ops", PID: 1, From: "file", To: "pkcs11", Started: time.Now()}
	if _, err := db.BeginSealMigration(t.Context(), m, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("BeginSealMigration() = %v", err)
	}
	select {
	case <-env.Server().LeaseLost():
	case <-time.After(5 * time.Second):
		t.Fatal("the KMS did not notice within 5s that its lease is gone")
	}
	err = env.Admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "late"}, nil)
	if ae := (*api.Error)(nil); !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Errorf("POST /v1/tenants after the lease was deleted = %v, want 503", err)
	}
	if _, err := db.GetTenant(t.Context(), "late"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTenant(late) = %v, want ErrNotFound: the fenced KMS committed a tenant", err)
	}
	env.Stop()
	opts := env.Opts
	if srv, err := datadir.Open(t.Context(), opts); err == nil {
		srv.Close()
		t.Fatal("datadir.Open during a seal migration succeeded")
	} else if mig := (*store.MigratingError)(nil); !errors.As(err, &mig) {
		t.Fatalf("datadir.Open during a seal migration = %v, want a *store.MigratingError", err)
	}
	if err := db.EndSealMigration(t.Context(), "test"); err != nil {
		t.Fatal(err)
	}
	env.Restart()
	env.Stop()
	if left, err := db.Leases(t.Context()); err != nil || len(left) != 0 {
		t.Errorf("Leases() after a clean stop = %+v, %v; want none", left, err)
	}
}
