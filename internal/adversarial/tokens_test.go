package adversarial_test

import (
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// Token replay, expiry, forgery and a 30-way race are in internal/kms
// TestEnrollmentTokens; replay through a real sidecar in sidecar
// TestSidecarEnrollmentRefusals.

// TestEnrollmentTokenRace: one enrollment token in 100 concurrent
// enrollments (a leaked secret zero raced by many would-be sidecars)
// registers exactly one instance; the 99 others get 409 already_used and
// register nothing.
func TestEnrollmentTokenRace(t *testing.T) {
	const n = 100
	w := newWorld(t)
	instances := func() int {
		var out api.Instances
		w.env.Admin.MustDo(t, "GET", "/v1/instances", nil, &out)
		return len(out.Instances)
	}
	before := instances()
	tok := w.token(t, w.payCreds.DN)
	// Build every request first, so the enrollments start together.
	reqs := make([]api.EnrollRequest, n)
	for i := range reqs {
		reqs[i] = kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM()).EnrollRequest(tok)
	}
	anon := w.env.Anonymous()
	errs := make([]error, n)
	outs := make([]api.Enrollment, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = anon.Do("POST", "/v1/enrollment", reqs[i], &outs[i])
		})
	}
	close(start)
	wg.Wait()
	wins, used := 0, 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
			if outs[i].CustodianDN != w.payCreds.DN {
				t.Errorf("the winner is bound to %q, want %q", outs[i].CustodianDN, w.payCreds.DN)
			}
		case api.CodeOf(err) == api.CodeAlreadyUsed:
			used++
		default:
			t.Errorf("enrollment %d = %v, want success or 409 already_used", i, err)
		}
	}
	if wins != 1 || used != n-1 {
		t.Fatalf("wins = %d, already_used = %d; want 1 and %d", wins, used, n-1)
	}
	if got := instances(); got != before+1 {
		t.Fatalf("%d instances registered by one token, want 1", got-before)
	}
	if _, err := audit.Verify(t.Context(), w.env.Server().Store, w.env.Server().KMS.AuditKey()); err != nil {
		t.Fatalf("audit chain after the race: %v", err)
	}
}
