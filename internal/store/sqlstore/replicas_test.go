package sqlstore_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/pgtest"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// Two *DB on one database stand for two KMS replicas: separate pools,
// nothing shared but the server. The tests race them against each other.

// replicas opens n handles on one new database.
func replicas(t *testing.T, n int) []*sqlstore.DB {
	t.Helper()
	dsn := pgtest.DSN(t)
	dbs := make([]*sqlstore.DB, n)
	for i := range dbs {
		dbs[i] = openPostgres(t, dsn)
		t.Cleanup(func() { dbs[i].Close() })
	}
	return dbs
}

// race runs fn(i, db) for i in [0, n) at once, alternating between dbs, and
// returns the errors by i.
func race(dbs []*sqlstore.DB, n int, fn func(i int, db *sqlstore.DB) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i, dbs[i%len(dbs)])
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func TestReplicasConsumeOnce(t *testing.T) {
	dbs := replicas(t, 2)
	ctx := t.Context()
	for round := range 5 {
		h := sha256.Sum256(fmt.Appendf(nil, "grant %d", round))
		secret := store.OneTimeSecret{Hash: h[:], Kind: store.OneTimeGrant, Tenant: "acme", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		if err := dbs[round%2].PutOneTime(ctx, secret); err != nil {
			t.Fatalf("PutOneTime() = %v", err)
		}
		const n = 100
		errs := race(dbs, n, func(i int, db *sqlstore.DB) error {
			got, err := db.ConsumeOneTime(ctx, secret.Kind, secret.Hash, t0.Add(time.Minute))
			if err == nil && (got.Tenant != "acme" || got.UsedAt == nil) {
				return fmt.Errorf("ConsumeOneTime() = %+v, want the secret marked used", got)
			}
			return err
		})
		won := map[int]int{} // replica → wins
		for i, err := range errs {
			switch {
			case err == nil:
				won[i%2]++
			case !errors.Is(err, store.ErrUsed):
				t.Errorf("round %d: ConsumeOneTime #%d = %v, want nil or %v", round, i, err, store.ErrUsed)
			}
		}
		if won[0]+won[1] != 1 {
			t.Errorf("round %d: %d of %d ConsumeOneTime calls on two replicas succeeded (%v), want exactly 1", round, won[0]+won[1], n, won)
		}
	}
}

func TestReplicasAudit(t *testing.T) {
	dbs := replicas(t, 2)
	ctx := t.Context()
	const n = 100
	errs := race(dbs, n, func(i int, db *sqlstore.DB) error {
		_, err := appendAudit(ctx, db, fmt.Sprintf("replica %d, #%d", i%2, i))
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("AppendAudit(#%d) = %v", i, err)
		}
	}
	// Both replicas read the same log.
	for r, db := range dbs {
		recs, err := db.AuditAfter(ctx, 0, 2*n)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != n {
			t.Fatalf("replica %d: AuditAfter(0, %d) = %d records, want %d", r, 2*n, len(recs), n)
		}
		var prev []byte
		seen := map[string]bool{}
		for i, rec := range recs {
			if rec.Seq != int64(i+1) {
				t.Fatalf("replica %d: record %d has Seq %d, want %d", r, i, rec.Seq, i+1)
			}
			if !bytes.Equal(rec.PrevHash, prev) {
				t.Errorf("replica %d: record %d: PrevHash %x, want the previous Hash %x", r, rec.Seq, rec.PrevHash, prev)
			}
			if want := sha256.Sum256(fmt.Appendf(prev, "%d", rec.Seq)); !bytes.Equal(rec.Hash, want[:]) {
				t.Errorf("replica %d: record %d: Hash %x, want %x", r, rec.Seq, rec.Hash, want)
			}
			if seen[rec.Action] {
				t.Errorf("replica %d: record %d repeats %q", r, rec.Seq, rec.Action)
			}
			seen[rec.Action] = true
			prev = rec.Hash
		}
	}
}

func TestReplicasRevocations(t *testing.T) {
	dbs := replicas(t, 2)
	ctx := t.Context()
	const n = 40
	for i := range n {
		k := store.Key{KeyID: fmt.Sprintf("k%02d", i), Tenant: "acme", CurrentVersion: 1, CreatedAt: t0}
		if err := dbs[0].CreateKey(ctx, k, store.KeyVersion{KeyID: k.KeyID, Version: 1, CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	// Every key is disabled twice, once through each replica: one event
	// per key.
	errs := race(dbs, 2*n, func(i int, db *sqlstore.DB) error {
		return db.DisableKey(ctx, fmt.Sprintf("k%02d", i/2), t0.Add(time.Duration(i)*time.Second))
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("DisableKey(#%d) = %v", i, err)
		}
	}
	evs, err := dbs[1].RevocationsAfter(ctx, "acme", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n {
		t.Fatalf("RevocationsAfter(acme) = %d events, want %d", len(evs), n)
	}
	seen := map[string]bool{}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) || seen[ev.Subject] {
			t.Errorf("event %d = seq %d for %s, want seq %d and one event per key", i, ev.Seq, ev.Subject, i+1)
		}
		seen[ev.Subject] = true
	}
	if last, err := dbs[0].LastRevocation(ctx); err != nil || last != n {
		t.Errorf("LastRevocation() = %d, %v; want %d", last, err, n)
	}
}

// TestReplicasInitialize has both replicas store the CA at once, as two
// KMSs starting on an empty database do: they agree on one value.
func TestReplicasInitialize(t *testing.T) {
	dbs := replicas(t, 2)
	ctx := t.Context()
	const n = 20
	got := make([][]byte, n)
	errs := race(dbs, n, func(i int, db *sqlstore.DB) error {
		var err error
		got[i], err = db.PutSettingIfAbsent(ctx, "ca", fmt.Appendf(nil, "CA of replica %d, #%d", i%2, i))
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("PutSettingIfAbsent(#%d) = %v", i, err)
		}
		if !bytes.Equal(got[i], got[0]) {
			t.Errorf("PutSettingIfAbsent(#%d) = %q, but #0 got %q", i, got[i], got[0])
		}
	}
}

// TestReplicasRotate adds the same next key version through both replicas
// at once: one wins, the others get store.ErrConflict.
func TestReplicasRotate(t *testing.T) {
	dbs := replicas(t, 2)
	ctx := t.Context()
	k := store.Key{KeyID: "k1", Tenant: "acme", CurrentVersion: 1, Retained: true, CreatedAt: t0}
	if err := dbs[0].CreateKey(ctx, k, store.KeyVersion{KeyID: "k1", Version: 1, EKB: []byte("v1"), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := race(dbs, n, func(i int, db *sqlstore.DB) error {
		return db.AddKeyVersion(ctx, store.KeyVersion{KeyID: "k1", Version: 2, EKB: fmt.Appendf(nil, "v2 #%d", i), CreatedAt: t0})
	})
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("AddKeyVersion(#%d) = %v, want nil or %v", i, err, store.ErrConflict)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d AddKeyVersion(k1, 2) calls succeeded, want 1", won, n)
	}
	if got, err := dbs[1].GetKey(ctx, "k1"); err != nil || got.CurrentVersion != 2 {
		t.Errorf("GetKey(k1) = %+v, %v; want CurrentVersion 2", got, err)
	}
}
