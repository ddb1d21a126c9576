package main

import (
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// TestCLIApprovals drives quorum approvals as operators would: a policy of
// 2 of {alice, bob}; alice alone cannot rotate the master key, nor approve
// her own request; with bob's approval she runs it once.
func TestCLIApprovals(t *testing.T) {
	k := startCLIKMS(t, nil)
	admin := k.admin
	cliMust(t, nil, nil, with(admin, "tenant", "create", "acme")...)
	alice, bob := k.newAdmin(t, "alice"), k.newAdmin(t, "bob")

	var p api.ApprovalPolicy
	cliMust(t, &p, nil, with(admin, "approval", "policy", "set", "acme", "--quorum", "2", "--approver", "CN=alice,O=dcaas", "--approver", "CN=bob,O=dcaas", "--json")...)
	if p.Quorum != 2 || len(p.Approvers) != 2 {
		t.Fatalf("policy set = %+v", p)
	}
	out := cliMust(t, nil, nil, with(bob, "approval", "policy", "show", "acme")...)
	if !strings.Contains(string(out), "2 of 2 approvers") {
		t.Fatalf("policy show printed %q", out)
	}

	wantErr := func(code api.Code, args ...string) {
		t.Helper()
		_, _, err := cliRun(t, nil, args...)
		if err == nil || !strings.Contains(err.Error(), string(code)) {
			t.Fatalf("dcaas %s = %v, want %s", strings.Join(args, " "), err, code)
		}
	}
	wantErr(api.CodeApprovalRequired, with(alice, "tenant", "rotate", "acme")...)
	wantErr(api.CodeApprovalRequired, with(alice, "approval", "policy", "set", "acme", "--quorum", "1", "--approver", "CN=alice,O=dcaas")...)

	var a api.Approval
	cliMust(t, &a, nil, with(alice, "approval", "request", "tenant.rotate_master_key", "--tenant", "acme", "--json")...)
	if a.State != api.ApprovalPending || len(a.Approvals) != 1 || a.Quorum != 2 {
		t.Fatalf("request = %+v", a)
	}
	wantErr(api.CodeForbidden, with(alice, "approval", "approve", a.ID)...)
	wantErr(api.CodeApprovalRequired, with(alice, "approval", "run", a.ID)...)
	cliMust(t, &a, nil, with(bob, "approval", "approve", a.ID, "--json")...)
	if a.State != api.ApprovalApproved {
		t.Fatalf("after bob's approval: %+v", a)
	}
	wantErr(api.CodeForbidden, with(bob, "approval", "run", a.ID)...)
	out = cliMust(t, nil, nil, with(alice, "approval", "run", a.ID)...)
	if !strings.Contains(string(out), `"master_key_version":2`) {
		t.Fatalf("approval run printed %q", out)
	}
	wantErr(api.CodeAlreadyUsed, with(alice, "approval", "run", a.ID)...)

	out = cliMust(t, nil, nil, with(bob, "approval", "show", a.ID)...)
	if !strings.Contains(string(out), "state:     executed") || !strings.Contains(string(out), "CN=bob,O=dcaas at ") {
		t.Fatalf("approval show printed %q", out)
	}
	var l api.ApprovalList
	cliMust(t, &l, nil, with(bob, "approval", "list", "--tenant", "acme", "--json")...)
	if len(l.Approvals) != 1 || l.Approvals[0].ID != a.ID {
		t.Fatalf("approval list = %+v", l)
	}

	// Lowering the quorum: requested with the exact body, approved, run.
	var low api.Approval
	cliMust(t, &low, nil, with(alice, "approval", "request", "tenant.set_approval_policy", "--tenant", "acme", "--body", `{"quorum":0,"approvers":[]}`, "--json")...)
	cliMust(t, nil, nil, with(bob, "approval", "approve", low.ID)...)
	cliMust(t, &p, nil, with(alice, "approval", "policy", "set", "acme", "--quorum", "0", "--approval", low.ID, "--json")...)
	if p.Quorum != 0 || p.Version != 2 {
		t.Fatalf("policy after the approved change = %+v", p)
	}
	cliMust(t, nil, nil, with(alice, "tenant", "rotate", "acme")...)
}
