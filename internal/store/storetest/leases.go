package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// lease is a lease of replica live from t0 for ttl.
func lease(replica string, ttl time.Duration) store.Lease {
	return store.Lease{Replica: replica, Host: "host-" + replica, PID: 4242, Heartbeat: t0, Expires: at(ttl)}
}

func migration(holder string) store.SealMigration {
	return store.SealMigration{Holder: holder, Host: "ops", PID: 7, From: "file", To: "pkcs11", Started: t0}
}

var leasesTests = []test{
	{"Lease/AcquireRenewRelease", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "AcquireLease(a)", s.AcquireLease(ctx, lease("a", 15*time.Second)))
		wantErr(t, "AcquireLease(a) again", s.AcquireLease(ctx, lease("a", 15*time.Second)), store.ErrExists)
		check(t, "RenewLease(a)", s.RenewLease(ctx, "a", at(5*time.Second), at(20*time.Second)))
		got, err := s.Leases(ctx)
		check(t, "Leases()", err)
		if len(got) != 1 || got[0].Replica != "a" || got[0].Host != "host-a" || got[0].PID != 4242 ||
			!got[0].Heartbeat.Equal(at(5*time.Second)) || !got[0].Expires.Equal(at(20*time.Second)) {
			t.Errorf("Leases() = %+v, want a renewed to heartbeat %v, expires %v", got, at(5*time.Second), at(20*time.Second))
		}
		check(t, "ReleaseLease(a)", s.ReleaseLease(ctx, "a"))
		check(t, "ReleaseLease(a) again", s.ReleaseLease(ctx, "a"))
		wantErr(t, "RenewLease(a) after its release", s.RenewLease(ctx, "a", at(6*time.Second), at(21*time.Second)), store.ErrLeaseLost)
		if got, err := s.Leases(ctx); err != nil || len(got) != 0 {
			t.Errorf("Leases() after the release = %+v, %v, want none", got, err)
		}
		// The released lease no longer fences the handle.
		_, err = s.PutSettingIfAbsent(ctx, "after-release", []byte("v"))
		check(t, "PutSettingIfAbsent after the release", err)
	}},
	{"Migration/RefusedWhileReplicasLive", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "AcquireLease(a)", s.AcquireLease(ctx, lease("a", 15*time.Second)))
		check(t, "AcquireLease(stale)", s.AcquireLease(ctx, lease("stale", time.Second)))
		_, err := s.BeginSealMigration(ctx, migration("m1"), at(10*time.Second))
		var live *store.LiveReplicasError
		if !errors.As(err, &live) {
			t.Fatalf("BeginSealMigration with a live lease = %v, want a *LiveReplicasError", err)
		}
		if len(live.Leases) != 1 || live.Leases[0].Replica != "a" || live.Leases[0].Host != "host-a" || !live.Leases[0].Heartbeat.Equal(t0) {
			t.Errorf("LiveReplicasError.Leases = %+v, want only the live lease of a", live.Leases)
		}
		// Refused, it changed nothing: both leases are still there.
		if got, err := s.Leases(ctx); err != nil || len(got) != 2 {
			t.Errorf("Leases() after the refusal = %+v, %v, want both", got, err)
		}
		// Once a's lease expired too, the migration begins and deletes both.
		prev, err := s.BeginSealMigration(ctx, migration("m1"), at(16*time.Second))
		check(t, "BeginSealMigration after every lease expired", err)
		if prev != nil {
			t.Errorf("BeginSealMigration() = %+v, want no unfinished migration", prev)
		}
		if got, err := s.Leases(ctx); err != nil || len(got) != 0 {
			t.Errorf("Leases() after the migration began = %+v, %v, want none", got, err)
		}
		wantErr(t, "RenewLease(a) after the migration began", s.RenewLease(ctx, "a", at(17*time.Second), at(30*time.Second)), store.ErrLeaseLost)
	}},
	{"Migration/RefusesReplicaStart", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		_, err := s.BeginSealMigration(ctx, migration("m1"), t0)
		check(t, "BeginSealMigration(m1)", err)
		err = s.AcquireLease(ctx, lease("b", 15*time.Second))
		var mig *store.MigratingError
		if !errors.As(err, &mig) {
			t.Fatalf("AcquireLease during a migration = %v, want a *MigratingError", err)
		}
		if mig.Migration.Holder != "m1" || mig.Migration.From != "file" || mig.Migration.To != "pkcs11" || !mig.Migration.Started.Equal(t0) {
			t.Errorf("MigratingError.Migration = %+v, want m1's record", mig.Migration)
		}
		// A run that stopped without ending is reported to the next one.
		prev, err := s.BeginSealMigration(ctx, migration("m2"), at(time.Minute))
		check(t, "BeginSealMigration(m2)", err)
		if prev == nil || prev.Holder != "m1" {
			t.Errorf("BeginSealMigration(m2) = %+v, want m1's unfinished record", prev)
		}
		wantErr(t, "EndSealMigration(m1), replaced", s.EndSealMigration(ctx, "m1"), store.ErrNotFound)
		check(t, "EndSealMigration(m2)", s.EndSealMigration(ctx, "m2"))
		check(t, "AcquireLease(b) after the migration", s.AcquireLease(ctx, lease("b", 15*time.Second)))
	}},
	{"Lease/FencesWrites", func(t *testing.T, s store.Store) {
		// A replica paused past its lease: a migration deletes the lease,
		// and from then on nothing the replica writes commits.
		ctx := t.Context()
		check(t, "AcquireLease(a)", s.AcquireLease(ctx, lease("a", time.Second)))
		_, err := s.PutSettingIfAbsent(ctx, "before", []byte("v"))
		check(t, "PutSettingIfAbsent while the lease exists", err)
		_, err = s.BeginSealMigration(ctx, migration("m"), at(time.Minute))
		check(t, "BeginSealMigration after a's lease expired", err)
		_, err = s.PutSettingIfAbsent(ctx, "after", []byte("v"))
		wantErr(t, "PutSettingIfAbsent after the lease was deleted", err, store.ErrLeaseLost)
		wantErr(t, "PutSettingIfAbsent after the lease was deleted", err, store.ErrUnavailable)
		err = s.InTx(ctx, func(tx store.Tx) error {
			_, err := tx.PutSettingIfAbsent(ctx, "after-tx", []byte("v"))
			return err
		})
		wantErr(t, "InTx after the lease was deleted", err, store.ErrLeaseLost)
		err = s.CreateTenant(ctx, store.Tenant{Name: "late", MasterKeyVersion: 1, SealedHMACKey: []byte("h"), CreatedAt: t0},
			store.MasterKey{Tenant: "late", Version: 1, Sealed: []byte("k"), CreatedAt: t0})
		wantErr(t, "CreateTenant after the lease was deleted", err, store.ErrLeaseLost)
		if _, err := s.GetSetting(ctx, "after"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetSetting(after) = %v, want ErrNotFound: a fenced write committed", err)
		}
		if _, err := s.GetTenant(ctx, "late"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetTenant(late) = %v, want ErrNotFound: a fenced write committed", err)
		}
	}},
	{"Lease/RacesMigration", func(t *testing.T, s store.Store) {
		// A replica starting while a migration begins: exactly one wins.
		ctx := t.Context()
		for round := range 20 {
			replica, holder := fmt.Sprintf("r%d", round), fmt.Sprintf("m%d", round)
			errs := together(2, func(i int) error {
				if i == 0 {
					return s.AcquireLease(ctx, lease(replica, time.Hour))
				}
				_, err := s.BeginSealMigration(ctx, migration(holder), t0)
				return err
			})
			var mig *store.MigratingError
			var live *store.LiveReplicasError
			switch {
			case errs[0] == nil && errors.As(errs[1], &live):
				check(t, "ReleaseLease", s.ReleaseLease(ctx, replica))
			case errs[1] == nil && errors.As(errs[0], &mig):
				check(t, "EndSealMigration", s.EndSealMigration(ctx, holder))
			default:
				t.Fatalf("round %d: AcquireLease = %v, BeginSealMigration = %v; want exactly one to win", round, errs[0], errs[1])
			}
		}
	}},
}
