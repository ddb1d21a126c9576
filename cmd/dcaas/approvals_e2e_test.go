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
// --approval-ttl 3s`; two named admins made with `dcaas admin create`;
// a quorum of 2 set with `dcaas approval policy set`; alice alone cannot
// rotate the master key; with bob's approval `dcaas approval run` rotates
// it once; a request left past the TTL is refused.
func TestApprovalsBinary(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "kms")
	p := startKMS(t, dataDir, "--approval-ttl", "3s")
	ca := filepath.Join(dataDir, "ca.pem")
	conn := func(cert, key string) []string {
		return []string{"--kms", p.URL(), "--ca", ca, "--cert", cert, "--key", key}
	}
	admin := conn(filepath.Join(dataDir, "admin", "cert.pem"), filepath.Join(dataDir, "admin", "key.pem"))
	run := func(want int, args ...string) string {
		t.Helper()
		out, errOut, code := runDcaas(t, args...)
		if (want == 0) != (code == 0) {
			t.Fatalf("dcaas %s exited %d (stderr %q), want %s", strings.Join(args, " "), code, errOut, map[bool]string{true: "0", false: "an error"}[want == 0])
		}
		return out + errOut
	}
	with := func(c []string, args ...string) []string { return append(args, c...) }

	run(0, with(admin, "tenant", "create", "acme")...)
	creds := map[string][]string{}
	for _, name := range []string{"alice", "bob"} {
		dir := t.TempDir()
		run(0, with(admin, "admin", "create", name, "--out-dir", dir)...)
		creds[name] = conn(filepath.Join(dir, name+"-cert.pem"), filepath.Join(dir, name+"-key.pem"))
	}
	alice, bob := creds["alice"], creds["bob"]
	run(0, with(admin, "approval", "policy", "set", "acme", "--quorum", "2", "--approver", "CN=alice,O=dcaas", "--approver", "CN=bob,O=dcaas")...)

	if out := run(1, with(alice, "tenant", "rotate", "acme")...); !strings.Contains(out, string(api.CodeApprovalRequired)) {
		t.Fatalf("rotate alone printed %q, want approval_required", out)
	}
	if out := run(1, with(admin, "admin", "create", "mallory")...); !strings.Contains(out, string(api.CodeApprovalRequired)) {
		t.Fatalf("admin create under a quorum printed %q, want approval_required", out)
	}
	var a api.Approval
	if err := json.Unmarshal([]byte(run(0, with(alice, "approval", "request", "tenant.rotate_master_key", "--tenant", "acme", "--json")...)), &a); err != nil {
		t.Fatal(err)
	}
	run(1, with(alice, "approval", "approve", a.ID)...)
	run(0, with(bob, "approval", "approve", a.ID)...)
	if out := run(0, with(alice, "approval", "run", a.ID)...); !strings.Contains(out, `"master_key_version":2`) {
		t.Fatalf("approval run printed %q", out)
	}
	if out := run(1, with(alice, "approval", "run", a.ID)...); !strings.Contains(out, string(api.CodeAlreadyUsed)) {
		t.Fatalf("second run printed %q, want already_used", out)
	}

	// Past --approval-ttl the request is refused.
	var late api.Approval
	if err := json.Unmarshal([]byte(run(0, with(alice, "approval", "request", "tenant.rotate_master_key", "--tenant", "acme", "--json")...)), &late); err != nil {
		t.Fatal(err)
	}
	if d := late.ExpiresAt.Sub(late.CreatedAt); d != 3*time.Second {
		t.Fatalf("request lives %v, want --approval-ttl 3s", d)
	}
	run(0, with(bob, "approval", "approve", late.ID)...)
	time.Sleep(time.Until(late.ExpiresAt) + 500*time.Millisecond)
	if out := run(1, with(alice, "approval", "run", late.ID)...); !strings.Contains(out, string(api.CodeExpired)) {
		t.Fatalf("run after expiry printed %q, want expired", out)
	}

	if _, errOut, code := runDcaas(t, "kms", "serve", "--data-dir", filepath.Join(t.TempDir(), "kms"), "--listen", "127.0.0.1:0", "--approval-ttl", "0s"); code == 0 || !strings.Contains(errOut, "--approval-ttl") {
		t.Fatalf("--approval-ttl 0s: exit %d, stderr %q; want a refusal naming the flag", code, errOut)
	}
}
