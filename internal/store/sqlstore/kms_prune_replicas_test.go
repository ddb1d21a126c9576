package sqlstore_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/pgtest"
)

// TestKMSAuditPruneReplicas: two replicas on one PostgreSQL database are
// asked at once to prune the audit log through two different records: one
// prune wins, the other is refused (the start is a compare-and-swap), and
// the log verifies from the start that won, on either replica, while both
// go on appending.
func TestKMSAuditPruneReplicas(t *testing.T) {
	clock := kmstest.NewClock()
	clock.Advance(-3 * time.Hour) // certificates issued on it stay valid when it moves on
	a, b := replicaPairWith(t, pgtest.DSN(t), func(_ int, o *kms.Options) {
		o.Now, o.Config.AuditRetention = clock.Now, time.Hour
	})
	stA := a.Opts.Store
	for _, name := range []string{"acme", "globex", "initech", "umbrella"} {
		a.Tenant(t, name)
	}
	recs, err := stA.AuditAfter(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var signed []api.AuditPruneRequest
	for _, r := range recs {
		if r.Sig != nil {
			signed = append(signed, api.AuditPruneRequest{Through: r.Seq, Hash: r.Hash})
		}
	}
	if len(signed) < 4 {
		t.Fatalf("only %d signed records", len(signed))
	}
	clock.Advance(2 * time.Hour)

	reqs := []api.AuditPruneRequest{signed[len(signed)/2], signed[len(signed)-2]}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, env := range []*kmstest.Env{a, b} {
		wg.Go(func() { errs[i] = env.Admin.Do("POST", "/v1/audit/prune", reqs[i], nil) })
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		if err == nil {
			won = i
			continue
		}
		if e := kmstest.APIError(err); e == nil || e.Code != api.CodeConflict {
			t.Fatalf("prune on replica %d = %v, want success or a conflict", i, err)
		}
	}
	// Both may succeed one after the other (the later one's start is past
	// the first's), never both from the same start.
	start, err := a.Server().KMS.AuditStart(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case errs[0] == nil && errs[1] == nil:
		if start.Seq != reqs[1].Through {
			t.Fatalf("both prunes succeeded; the start is %d, want the later one %d", start.Seq, reqs[1].Through)
		}
	case won < 0:
		t.Fatal("neither prune succeeded")
	case start.Seq != reqs[won].Through:
		t.Fatalf("the start is %d, want the winner's %d", start.Seq, reqs[won].Through)
	}
	a.Tenant(t, "stark")
	b.Tenant(t, "wayne")
	for _, env := range []*kmstest.Env{a, b} {
		res, err := audit.VerifyAfter(t.Context(), env.Server().Store, env.Server().KMS.AuditKey(), start)
		if err != nil || res.Start != start.Seq {
			t.Fatalf("VerifyAfter on %s = %+v, %v", env.URL, res, err)
		}
	}
	var page api.AuditPage
	b.Admin.MustDo(t, "GET", "/v1/audit", nil, &page)
	if page.Records[0].Seq != start.Seq+1 {
		t.Fatalf("GET /v1/audit on replica B starts at %d, want %d", page.Records[0].Seq, start.Seq+1)
	}
	// A prune at or below the start is refused.
	kmstest.WantError(t, b.Admin.Do("POST", "/v1/audit/prune", reqs[0], nil), http.StatusConflict, api.CodeConflict)
}

// TestKMSAuditKeyRotationReplicas: replica A rotates the audit key while B
// still signs with the old one; B signs with the new one once it has
// re-read it (its next certificate check); A retires the old key and the
// log, from both replicas, verifies with the first key alone.
func TestKMSAuditKeyRotationReplicas(t *testing.T) {
	clock := kmstest.NewClock()
	clock.Advance(-3 * time.Hour)
	ticksB := make(chan time.Time)
	a, b := replicaPairWith(t, pgtest.DSN(t), func(replica int, o *kms.Options) {
		o.Now = clock.Now
		if replica == 1 {
			o.Config.CertTicks = ticksB
		}
	})
	stA := a.Opts.Store
	checkB := func() { ticksB <- time.Now(); ticksB <- time.Now() } // the second send waits for the first check to end
	first := a.Server().KMS.AuditKey()

	a.Admin.MustDo(t, "POST", "/v1/audit/key/rotate", nil, nil)
	second := a.Server().KMS.AuditSigningKey()
	b.Tenant(t, "acme") // signed by B with the first key: still trusted
	if !b.Server().KMS.AuditSigningKey().Equal(first) {
		t.Fatal("B switched keys before it re-read them")
	}
	// B cannot rotate on top of a key it has not read.
	kmstest.WantError(t, b.Admin.Do("POST", "/v1/audit/key/rotate", nil, nil), http.StatusConflict, api.CodeConflict)
	checkB()
	if !b.Server().KMS.AuditSigningKey().Equal(second) {
		t.Fatalf("B signs with %s after re-reading the key, want %s", b.Server().KMS.AuditSigningKey().ID(), second.ID())
	}
	b.Tenant(t, "globex")
	clock.Advance(2 * time.Minute)
	a.Admin.MustDo(t, "POST", "/v1/audit/key/retire", nil, nil)
	checkB()
	b.Tenant(t, "initech")
	var cp api.AuditCheckpoint
	b.Admin.MustDo(t, "POST", "/v1/audit/checkpoints", nil, &cp)
	res, err := audit.Verify(t.Context(), stA, first, store.AuditCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, Sig: cp.Signature})
	if err != nil || len(res.KeyChanges) != 2 || res.Checkpoints != 1 {
		t.Fatalf("Verify(first key) = %+v, %v", res, err)
	}
}
