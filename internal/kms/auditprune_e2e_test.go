package kms_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
)

// auditRecords reads the whole audit log through the API, as c.
func auditRecords(t *testing.T, c *kmstest.Client) []api.AuditRecord {
	t.Helper()
	var all []api.AuditRecord
	var after int64
	for {
		var page api.AuditPage
		c.MustDo(t, "GET", fmt.Sprintf("/v1/audit?after=%d", after), nil, &page)
		if len(page.Records) == 0 {
			return all
		}
		all = append(all, page.Records...)
		after = page.Next
		if len(page.Records) < 1000 {
			return all
		}
	}
}

// lastSigned returns the last signed record of recs at or below seq.
func lastSigned(t *testing.T, recs []api.AuditRecord, seq int64) api.AuditRecord {
	t.Helper()
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Seq <= seq && recs[i].Signature != nil {
			return recs[i]
		}
	}
	t.Fatalf("no signed record at or below %d", seq)
	return api.AuditRecord{}
}

// pruneEnv is a KMS that keeps audit records for an hour, on a clock the
// test moves, three hours behind (certificates issued on it are valid
// now, so that one test may move it two hours on).
func pruneEnv(t *testing.T) (*kmstest.Env, *kmstest.Clock) {
	t.Helper()
	clock := kmstest.NewClock()
	clock.Advance(-3 * time.Hour)
	env := kmstest.Start(t, func(o *kms.Options) {
		o.Now = clock.Now
		o.Config.AuditRetention = time.Hour
		o.Config.ApprovalTTL = 3 * time.Hour
	})
	return env, clock
}

// TestAuditPrune: an admin prunes the audit log through a signed record
// older than the retention, with the hash of that record; the log then
// starts after it (GET /v1/audit/start, GET /v1/audit), the records below
// are deleted in the background, and what stays verifies from the start,
// with the prune's own record, which names it. Every prune the KMS must
// not make is refused and changes nothing.
func TestAuditPrune(t *testing.T) {
	env, clock := pruneEnv(t)
	env.Tenant(t, "acme")
	cust, _ := env.App(t, "acme", "payments-api", api.RoleCustodian)
	for range 5 {
		cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	}
	recs := auditRecords(t, env.Admin)
	through := lastSigned(t, recs, int64(len(recs)-3))
	req := api.AuditPruneRequest{Through: through.Seq, Hash: through.Hash}
	srv := env.Server()
	key := srv.KMS.AuditKey()

	var start api.AuditStart
	env.Admin.MustDo(t, "GET", "/v1/audit/start", nil, &start)
	if start.Seq != 0 || start.Hash != nil || start.KeyID != key.ID() {
		t.Fatalf("GET /v1/audit/start before any prune = %+v", start)
	}

	// Too young: the KMS keeps an hour of records.
	kmstest.WantError(t, env.Admin.Do("POST", "/v1/audit/prune", req, nil), http.StatusBadRequest, api.CodeInvalidArgument)
	clock.Advance(2 * time.Hour)

	refused := []struct {
		name   string
		c      *kmstest.Client
		req    api.AuditPruneRequest
		status int
		code   api.Code
	}{
		{"a custodian", cust, req, http.StatusForbidden, api.CodeForbidden},
		{"another hash", env.Admin, api.AuditPruneRequest{Through: through.Seq, Hash: recs[0].Hash}, http.StatusConflict, api.CodeConflict},
		{"a short hash", env.Admin, api.AuditPruneRequest{Through: through.Seq, Hash: through.Hash[:31]}, http.StatusBadRequest, api.CodeInvalidArgument},
		{"record 0", env.Admin, api.AuditPruneRequest{Through: 0, Hash: through.Hash}, http.StatusBadRequest, api.CodeInvalidArgument},
		{"a record past the end", env.Admin, api.AuditPruneRequest{Through: 1 << 40, Hash: through.Hash}, http.StatusNotFound, api.CodeNotFound},
	}
	for _, r := range refused {
		kmstest.WantError(t, r.c.Do("POST", "/v1/audit/prune", r.req, nil), r.status, r.code)
	}
	if s, err := srv.KMS.AuditStart(t.Context()); err != nil || !s.IsZero() {
		t.Fatalf("the start after refused prunes = %+v, %v; want none", s, err)
	}

	env.Admin.MustDo(t, "POST", "/v1/audit/prune", req, &start)
	want := audit.Start{Seq: through.Seq, Hash: through.Hash, Sig: through.Signature}
	if start.Seq != want.Seq || !bytes.Equal(start.Hash, want.Hash) || !bytes.Equal(start.Signature, want.Sig) || want.Check(key) != nil {
		t.Fatalf("POST /v1/audit/prune = %+v, want record %d, signed", start, through.Seq)
	}
	var got api.AuditStart
	env.Admin.MustDo(t, "GET", "/v1/audit/start", nil, &got)
	if got.Seq != start.Seq || !bytes.Equal(got.Hash, start.Hash) {
		t.Fatalf("GET /v1/audit/start = %+v, want %+v", got, start)
	}
	kmstest.WantError(t, env.Admin.Do("POST", "/v1/audit/prune", req, nil), http.StatusConflict, api.CodeConflict)

	// Through the API the log starts after the start at once; in the
	// database once the janitor deleted the records below it.
	left := auditRecords(t, env.Admin)
	if left[0].Seq != through.Seq+1 {
		t.Fatalf("GET /v1/audit?after=0 starts at record %d, want %d", left[0].Seq, through.Seq+1)
	}
	eventually(t, "the pruned records deleted", func() bool {
		first, err := srv.Store.AuditAfter(t.Context(), 0, 1)
		return err == nil && len(first) == 1 && first[0].Seq == through.Seq+1
	})

	// What stays verifies from the start, with the record of the prune
	// (by the admin, naming the start) after it.
	var pruneRec *api.AuditRecord
	for i, r := range left {
		if r.Action == audit.ActionPruned && r.Outcome == "ok" {
			pruneRec = &left[i]
		}
	}
	if pruneRec == nil || pruneRec.KeyID != want.String() || pruneRec.Caller != "CN=admin,O=dcaas" {
		t.Fatalf("the prune's record = %+v, want one by the admin naming %s", pruneRec, want)
	}
	var cp api.AuditCheckpoint
	env.Admin.MustDo(t, "POST", "/v1/audit/checkpoints", nil, &cp)
	res, err := audit.VerifyAfter(t.Context(), srv.Store, key, want, store.AuditCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, Sig: cp.Signature})
	if err != nil || res.Start != through.Seq || res.Records < pruneRec.Seq || res.Checkpoints != 1 {
		t.Fatalf("VerifyAfter(the pruned log) = %+v, %v", res, err)
	}

	// A restart keeps the start, and the log goes on.
	env.Restart()
	srv = env.Server()
	if s, err := srv.KMS.AuditStart(t.Context()); err != nil || s.String() != want.String() {
		t.Fatalf("the start after a restart = %v, %v; want %s", s, err, want)
	}
	cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	if _, err := audit.VerifyAfter(t.Context(), srv.Store, key, want); err != nil {
		t.Fatalf("VerifyAfter after a restart = %v", err)
	}
}

// TestAuditPruneRefusesBrokenLog: the KMS verifies what it prunes; a
// record changed in the database before the prune's record is not pruned
// away, and nothing changes.
func TestAuditPruneRefusesBrokenLog(t *testing.T) {
	env, clock := pruneEnv(t)
	env.Tenant(t, "acme")
	cust, _ := env.App(t, "acme", "payments-api", api.RoleCustodian)
	cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	recs := auditRecords(t, env.Admin)
	through := lastSigned(t, recs, int64(len(recs)-1))
	clock.Advance(2 * time.Hour)

	db := rawDB(t, env)
	if _, err := db.Exec(t.Context(), `UPDATE audit SET caller = 'CN=someone-else' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	kmstest.WantError(t, env.Admin.Do("POST", "/v1/audit/prune", api.AuditPruneRequest{Through: through.Seq, Hash: through.Hash}, nil),
		http.StatusConflict, api.CodeConflict)
	if s, err := env.Server().KMS.AuditStart(t.Context()); err != nil || !s.IsZero() {
		t.Fatalf("the start after a refused prune = %+v, %v", s, err)
	}
	if first, err := env.Server().Store.AuditAfter(t.Context(), 0, 1); err != nil || first[0].Seq != 1 {
		t.Fatalf("the log after a refused prune starts at %v, %v", first, err)
	}
}

// TestAuditPruneApproval: while a tenant has a quorum, pruning the audit
// log (KMS-wide, like registering an admin) needs every quorum's approval
// of the exact prune.
func TestAuditPruneApproval(t *testing.T) {
	env, clock := pruneEnv(t)
	env.Tenant(t, "acme")
	alice, _ := env.NewAdmin(t, "alice")
	bob, _ := env.NewAdmin(t, "bob")
	env.Admin.MustDo(t, "PUT", "/v1/tenants/acme/approval-policy", api.ApprovalPolicy{
		Quorum: 2, Approvers: []string{"CN=alice,O=dcaas", "CN=bob,O=dcaas"}}, nil)
	recs := auditRecords(t, env.Admin)
	through := lastSigned(t, recs, int64(len(recs)-1))
	req := api.AuditPruneRequest{Through: through.Seq, Hash: through.Hash}
	clock.Advance(2 * time.Hour)

	kmstest.WantError(t, alice.Do("POST", "/v1/audit/prune", req, nil), http.StatusForbidden, api.CodeApprovalRequired)
	var a api.Approval
	alice.MustDo(t, "POST", "/v1/approvals", api.ApprovalRequest{Action: api.ApprovalPruneAudit, Request: raw(t, req)}, &a)
	kmstest.WantError(t, doApproved(alice, a.ID, "POST", "/v1/audit/prune", req, nil), http.StatusForbidden, api.CodeApprovalRequired)
	bob.MustDo(t, "POST", "/v1/approvals/"+a.ID+"/approve", nil, nil)
	// Only the approved prune: another record is refused.
	other := lastSigned(t, recs, through.Seq-1)
	kmstest.WantError(t, doApproved(alice, a.ID, "POST", "/v1/audit/prune", api.AuditPruneRequest{Through: other.Seq, Hash: other.Hash}, nil),
		http.StatusBadRequest, api.CodeInvalidArgument)
	var start api.AuditStart
	if err := doApproved(alice, a.ID, "POST", "/v1/audit/prune", req, &start); err != nil || start.Seq != through.Seq {
		t.Fatalf("the approved prune = %+v, %v", start, err)
	}
	// A custodian cannot even ask.
	cust, _ := env.App(t, "acme", "payments-api", api.RoleCustodian)
	kmstest.WantError(t, cust.Do("POST", "/v1/approvals", api.ApprovalRequest{Action: api.ApprovalPruneAudit, Request: raw(t, req)}, nil),
		http.StatusForbidden, api.CodeForbidden)
}
