package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

func newApproval(id string) store.Approval {
	return store.Approval{
		ID: id, Tenant: "acme", Action: "datakey.disable", KeyID: "key_1",
		Params: []byte(`{"x":1}`), ParamsHash: []byte("0123456789abcdef0123456789abcdef"),
		Requester: "CN=alice,O=dcaas", CreatedAt: at(0), ExpiresAt: at(time.Hour),
	}
}

var approvalsTests = []test{
	{"Policy/Versions", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		_, err := s.GetApprovalPolicy(ctx, "acme")
		wantErr(t, "GetApprovalPolicy(none)", err, store.ErrNotFound)
		p := store.ApprovalPolicy{Tenant: "acme", Quorum: 2, Approvers: []string{"CN=a,O=dcaas", "CN=b,O=dcaas"}, Version: 2, UpdatedAt: at(0)}
		wantErr(t, "PutApprovalPolicy(version 2 first)", s.PutApprovalPolicy(ctx, p), store.ErrConflict)
		p.Version = 1
		check(t, "PutApprovalPolicy(v1)", s.PutApprovalPolicy(ctx, p))
		wantErr(t, "PutApprovalPolicy(v1 again)", s.PutApprovalPolicy(ctx, p), store.ErrConflict)
		got, err := s.GetApprovalPolicy(ctx, "acme")
		check(t, "GetApprovalPolicy", err)
		if got.Quorum != 2 || got.Version != 1 || !slices.Equal(got.Approvers, p.Approvers) || !got.UpdatedAt.Equal(p.UpdatedAt) {
			t.Fatalf("GetApprovalPolicy = %+v, want %+v", got, p)
		}
		p2 := store.ApprovalPolicy{Tenant: "acme", Quorum: 0, Version: 2, UpdatedAt: at(time.Minute)}
		check(t, "PutApprovalPolicy(v2)", s.PutApprovalPolicy(ctx, p2))
		check(t, "PutApprovalPolicy(other tenant)", s.PutApprovalPolicy(ctx, store.ApprovalPolicy{Tenant: "beta", Quorum: 1, Approvers: []string{"CN=a,O=dcaas"}, Version: 1, UpdatedAt: at(0)}))
		all, err := s.ListApprovalPolicies(ctx)
		check(t, "ListApprovalPolicies", err)
		if len(all) != 2 || all[0].Tenant != "acme" || all[0].Quorum != 0 || all[0].Version != 2 || len(all[0].Approvers) != 0 || all[1].Tenant != "beta" {
			t.Fatalf("ListApprovalPolicies = %+v", all)
		}
	}},
	{"Policy/ConcurrentChanges", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "PutApprovalPolicy(v1)", s.PutApprovalPolicy(ctx, store.ApprovalPolicy{Tenant: "acme", Quorum: 1, Approvers: []string{"CN=a,O=dcaas"}, Version: 1, UpdatedAt: at(0)}))
		errs := together(8, func(i int) error {
			return s.InTx(ctx, func(tx store.Tx) error {
				return tx.PutApprovalPolicy(ctx, store.ApprovalPolicy{Tenant: "acme", Quorum: i, Version: 2, UpdatedAt: at(time.Minute)})
			})
		})
		if ok := succeeded(t, "racing PutApprovalPolicy", errs, store.ErrConflict); ok != 1 {
			t.Fatalf("%d of 8 racing changes from version 1 were stored, want 1", ok)
		}
	}},
	{"Approval/RoundTrip", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		a := newApproval("apr_1")
		check(t, "CreateApproval", s.CreateApproval(ctx, a))
		wantErr(t, "CreateApproval(again)", s.CreateApproval(ctx, a), store.ErrExists)
		_, err := s.GetApproval(ctx, "apr_x")
		wantErr(t, "GetApproval(unknown)", err, store.ErrNotFound)
		got, err := s.GetApproval(ctx, "apr_1")
		check(t, "GetApproval", err)
		if got.State != store.ApprovalPending || got.Action != a.Action || got.KeyID != a.KeyID || !bytes.Equal(got.Params, a.Params) ||
			!bytes.Equal(got.ParamsHash, a.ParamsHash) || got.Requester != a.Requester || !got.CreatedAt.Equal(a.CreatedAt) ||
			!got.ExpiresAt.Equal(a.ExpiresAt) || got.ClosedAt != nil || len(got.Votes) != 0 {
			t.Fatalf("GetApproval = %+v, want %+v pending", got, a)
		}
		b := newApproval("apr_2")
		b.Tenant, b.CreatedAt = "beta", at(time.Second)
		check(t, "CreateApproval(beta)", s.CreateApproval(ctx, b))
		list, err := s.ListApprovals(ctx, "acme", "", 10)
		check(t, "ListApprovals(acme)", err)
		if len(list) != 1 || list[0].ID != "apr_1" {
			t.Fatalf("ListApprovals(acme) = %+v", list)
		}
		list, err = s.ListApprovals(ctx, "*", "", 10)
		check(t, "ListApprovals(*)", err)
		if len(list) != 2 || list[0].ID != "apr_2" || list[1].ID != "apr_1" {
			t.Fatalf("ListApprovals(*) = %+v, want newest first", list)
		}
		// The requester filter applies before the limit: another
		// requester's newer requests do not crowd out one's own.
		for i := range 3 {
			o := newApproval(fmt.Sprintf("apr_o%d", i))
			o.Requester, o.CreatedAt = "CN=other,O=dcaas", at(time.Duration(10+i)*time.Second)
			check(t, "CreateApproval(other)", s.CreateApproval(ctx, o))
		}
		list, err = s.ListApprovals(ctx, "*", a.Requester, 2)
		check(t, "ListApprovals(*, requester, 2)", err)
		if len(list) != 2 || list[0].ID != "apr_2" || list[1].ID != "apr_1" {
			t.Fatalf("ListApprovals(*, %s, 2) = %+v, want its two", a.Requester, list)
		}
		list, err = s.ListApprovals(ctx, "beta", a.Requester, 10)
		check(t, "ListApprovals(beta, requester)", err)
		if len(list) != 1 || list[0].ID != "apr_2" {
			t.Fatalf("ListApprovals(beta, requester) = %+v", list)
		}
	}},
	{"Approval/Votes", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateApproval", s.CreateApproval(ctx, newApproval("apr_1")))
		check(t, "AddApprovalVote(b)", s.AddApprovalVote(ctx, "apr_1", "CN=b,O=dcaas", at(time.Minute)))
		wantErr(t, "AddApprovalVote(b again)", s.AddApprovalVote(ctx, "apr_1", "CN=b,O=dcaas", at(2*time.Minute)), store.ErrExists)
		wantErr(t, "AddApprovalVote(unknown)", s.AddApprovalVote(ctx, "apr_x", "CN=b,O=dcaas", at(time.Minute)), store.ErrNotFound)
		wantErr(t, "AddApprovalVote(expired)", s.AddApprovalVote(ctx, "apr_1", "CN=c,O=dcaas", at(time.Hour)), store.ErrExpired)
		check(t, "AddApprovalVote(c)", s.AddApprovalVote(ctx, "apr_1", "CN=c,O=dcaas", at(3*time.Minute)))
		got, err := s.GetApproval(ctx, "apr_1")
		check(t, "GetApproval", err)
		if len(got.Votes) != 2 || got.Votes[0].Approver != "CN=b,O=dcaas" || !got.Votes[0].At.Equal(at(time.Minute)) || got.Votes[1].Approver != "CN=c,O=dcaas" {
			t.Fatalf("votes = %+v", got.Votes)
		}
		check(t, "CloseApproval(denied)", s.CloseApproval(ctx, "apr_1", store.ApprovalDenied, "CN=c,O=dcaas", at(4*time.Minute)))
		wantErr(t, "AddApprovalVote(closed)", s.AddApprovalVote(ctx, "apr_1", "CN=d,O=dcaas", at(5*time.Minute)), store.ErrUsed)
	}},
	{"Approval/ConcurrentVotes", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateApproval", s.CreateApproval(ctx, newApproval("apr_1")))
		errs := together(8, func(i int) error {
			return s.InTx(ctx, func(tx store.Tx) error {
				return tx.AddApprovalVote(ctx, "apr_1", fmt.Sprintf("CN=a%d,O=dcaas", i%4), at(time.Minute))
			})
		})
		ok := succeeded(t, "racing AddApprovalVote", errs, store.ErrExists)
		got, err := s.GetApproval(ctx, "apr_1")
		check(t, "GetApproval", err)
		if ok != 4 || len(got.Votes) != 4 {
			t.Fatalf("4 approvers voting twice each at once: %d accepted, %d stored; want 4 and 4", ok, len(got.Votes))
		}
	}},
	{"Approval/CloseOnce", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateApproval", s.CreateApproval(ctx, newApproval("apr_1")))
		wantErr(t, "CloseApproval(expired)", s.CloseApproval(ctx, "apr_1", store.ApprovalExecuted, "CN=alice,O=dcaas", at(time.Hour)), store.ErrExpired)
		wantErr(t, "CloseApproval(unknown)", s.CloseApproval(ctx, "apr_x", store.ApprovalExecuted, "x", at(time.Minute)), store.ErrNotFound)
		if err := s.CloseApproval(ctx, "apr_1", "approved", "x", at(time.Minute)); err == nil {
			t.Fatal("CloseApproval(state approved) = nil, want an error")
		}
		errs := together(8, func(i int) error {
			return s.InTx(ctx, func(tx store.Tx) error {
				return tx.CloseApproval(ctx, "apr_1", store.ApprovalExecuted, fmt.Sprintf("CN=r%d", i), at(time.Minute))
			})
		})
		if ok := succeeded(t, "racing CloseApproval", errs, store.ErrUsed); ok != 1 {
			t.Fatalf("%d of 8 racing CloseApproval calls succeeded, want exactly 1", ok)
		}
		got, err := s.GetApproval(ctx, "apr_1")
		check(t, "GetApproval", err)
		if got.State != store.ApprovalExecuted || got.ClosedAt == nil || !got.ClosedAt.Equal(at(time.Minute)) || got.ClosedBy == "" {
			t.Fatalf("closed approval = %+v", got)
		}
	}},
	{"Approval/CloseRolledBack", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateApproval", s.CreateApproval(ctx, newApproval("apr_1")))
		boom := errors.New("boom")
		err := s.InTx(ctx, func(tx store.Tx) error {
			check(t, "CloseApproval in tx", tx.CloseApproval(ctx, "apr_1", store.ApprovalExecuted, "CN=alice,O=dcaas", at(time.Minute)))
			return boom
		})
		wantErr(t, "InTx", err, boom)
		got, err := s.GetApproval(ctx, "apr_1")
		check(t, "GetApproval", err)
		if got.State != store.ApprovalPending {
			t.Fatalf("state after a rolled-back close = %s, want pending", got.State)
		}
	}},
	{"Approval/DeleteExpiredBefore", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		old, recent := newApproval("apr_old"), newApproval("apr_new")
		recent.ExpiresAt = old.ExpiresAt.Add(48 * time.Hour)
		check(t, "CreateApproval(old)", s.CreateApproval(ctx, old))
		check(t, "CreateApproval(new)", s.CreateApproval(ctx, recent))
		check(t, "AddApprovalVote(old)", s.AddApprovalVote(ctx, "apr_old", "CN=b,O=dcaas", old.CreatedAt))
		n, err := s.DeleteApprovalsExpiredBefore(ctx, old.ExpiresAt.Add(time.Hour))
		check(t, "DeleteApprovalsExpiredBefore", err)
		if n != 1 {
			t.Fatalf("deleted %d approvals, want 1", n)
		}
		_, err = s.GetApproval(ctx, "apr_old")
		wantErr(t, "GetApproval(deleted)", err, store.ErrNotFound)
		if _, err := s.GetApproval(ctx, "apr_new"); err != nil {
			t.Fatalf("the unexpired approval was deleted: %v", err)
		}
		// Its votes went with it: the id can be used again without them.
		check(t, "CreateApproval(old again)", s.CreateApproval(ctx, old))
		got, err := s.GetApproval(ctx, "apr_old")
		check(t, "GetApproval(old again)", err)
		if len(got.Votes) != 0 {
			t.Fatalf("a deleted approval's votes remain: %+v", got.Votes)
		}
	}},
}
