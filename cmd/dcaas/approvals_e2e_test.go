package main_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
)

// TestApprovalsBinary: the built binary end to end. `dcaas kms serve
// --approval-ttl 12s` (four CLI runs must fit in it: a race-built binary
// takes over a second to start on a loaded machine, and 3 s was missed); two named admins made with `dcaas admin create`;
// a quorum of 2 set with `dcaas approval policy set`; alice alone cannot
// rotate the master key; with bob's approval `dcaas approval run` rotates
// it once; a request left past the TTL is refused.
func TestApprovalsBinary(t *testing.T) {
	t.Parallel()
	const ttl = 12 * time.Second
	k := startBinaryKMS(t, "--approval-ttl", ttl.String())
	admin := k.admin
	runCLI(t, true, with(admin, "tenant", "create", "acme")...)
	alice, bob := k.register(t, "admin", "alice"), k.register(t, "admin", "bob")
	runCLI(t, true, with(admin, "approval", "policy", "set", "acme", "--quorum", "2", "--approver", "CN=alice,O=dcaas", "--approver", "CN=bob,O=dcaas")...)

	if out := runCLI(t, false, with(alice, "tenant", "rotate", "acme")...); !strings.Contains(out, string(api.CodeApprovalRequired)) {
		t.Fatalf("rotate alone printed %q, want approval_required", out)
	}
	if out := runCLI(t, false, with(admin, "admin", "create", "mallory")...); !strings.Contains(out, string(api.CodeApprovalRequired)) {
		t.Fatalf("admin create under a quorum printed %q, want approval_required", out)
	}
	var a api.Approval
	if err := json.Unmarshal([]byte(runCLI(t, true, with(alice, "approval", "request", "tenant.rotate_master_key", "--tenant", "acme", "--json")...)), &a); err != nil {
		t.Fatal(err)
	}
	runCLI(t, false, with(alice, "approval", "approve", a.ID)...)
	runCLI(t, true, with(bob, "approval", "approve", a.ID)...)
	if out := runCLI(t, true, with(alice, "approval", "run", a.ID)...); !strings.Contains(out, `"master_key_version":2`) {
		t.Fatalf("approval run printed %q", out)
	}
	if out := runCLI(t, false, with(alice, "approval", "run", a.ID)...); !strings.Contains(out, string(api.CodeAlreadyUsed)) {
		t.Fatalf("second run printed %q, want already_used", out)
	}

	// Past --approval-ttl the request is refused.
	var late api.Approval
	if err := json.Unmarshal([]byte(runCLI(t, true, with(alice, "approval", "request", "tenant.rotate_master_key", "--tenant", "acme", "--json")...)), &late); err != nil {
		t.Fatal(err)
	}
	if d := late.ExpiresAt.Sub(late.CreatedAt); d != ttl {
		t.Fatalf("request lives %v, want --approval-ttl %v", d, ttl)
	}
	runCLI(t, true, with(bob, "approval", "approve", late.ID)...)
	time.Sleep(time.Until(late.ExpiresAt) + 500*time.Millisecond)
	if out := runCLI(t, false, with(alice, "approval", "run", late.ID)...); !strings.Contains(out, string(api.CodeExpired)) {
		t.Fatalf("run after expiry printed %q, want expired", out)
	}

	if _, errOut, code := runDcaas(t, "kms", "serve", "--data-dir", filepath.Join(t.TempDir(), "kms"), "--listen", "127.0.0.1:0", "--approval-ttl", "0s"); code == 0 || !strings.Contains(errOut, "--approval-ttl") {
		t.Fatalf("--approval-ttl 0s: exit %d, stderr %q; want a refusal naming the flag", code, errOut)
	}
}
