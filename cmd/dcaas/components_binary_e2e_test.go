package main_test

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestKeyComponentsBinary is the split-knowledge ceremony as operators run
// it: a KMS process, the dcaas binary for every step, two named admins
// each entering a component from a file (refused: a wrong KCV, the same
// admin twice), and the owner storing the key, whose KCV is the KCV of the
// XOR of the components.
func TestKeyComponentsBinary(t *testing.T) {
	t.Parallel()
	k := startBinaryKMS(t)
	admin := k.admin
	runCLI(t, true, with(admin, "tenant", "create", "acme")...)
	owner := k.register(t, "app", "payments-api", "--tenant", "acme")
	admins := map[string][]string{}
	for _, name := range []string{"alice", "bob"} {
		admins[name] = k.register(t, "admin", name)
	}

	comp := kmstest.NewKeyComponents(t, 2)
	var files []string
	for _, part := range comp.Parts {
		f := filepath.Join(t.TempDir(), "component.hex")
		if err := os.WriteFile(f, []byte(hex.EncodeToString(part)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}

	var cr api.ComponentCeremony
	out := runCLI(t, true, with(admin, "key", "components", "start", "--tenant", "acme", "--owner", "payments-api",
		"--type", "aes-256-gcm", "--components", "2", "--expected-kcv", comp.KCV, "--json")...)
	if err := json.Unmarshal([]byte(out), &cr); err != nil || cr.ID == "" {
		t.Fatalf("start printed %q: %v", out, err)
	}
	wrong := "ABCDEF"
	if comp.KCVs[0] == wrong {
		wrong = "ABCDEE"
	}
	if out := runCLI(t, false, with(admins["alice"], "key", "components", "add", cr.ID, "--component-file", files[0], "--kcv", wrong)...); !strings.Contains(out, string(api.CodeKCVMismatch)) {
		t.Fatalf("a wrong KCV printed %q, want kcv_mismatch", out)
	}
	runCLI(t, true, with(admins["alice"], "key", "components", "add", cr.ID, "--component-file", files[0], "--kcv", comp.KCVs[0])...)
	if out := runCLI(t, false, with(admins["alice"], "key", "components", "add", cr.ID, "--component-file", files[1], "--kcv", comp.KCVs[1])...); !strings.Contains(out, string(api.CodeDuplicateAdmin)) {
		t.Fatalf("alice twice printed %q, want duplicate_admin", out)
	}
	runCLI(t, true, with(admins["bob"], "key", "components", "add", cr.ID, "--component-file", files[1], "--kcv", comp.KCVs[1])...)

	store := t.TempDir()
	out = runCLI(t, true, with(owner, "key", "components", "status", cr.ID, "--store", store, "--json")...)
	if err := json.Unmarshal([]byte(out), &cr); err != nil {
		t.Fatalf("status printed %q: %v", out, err)
	}
	if cr.State != api.CeremonyComplete || cr.KCV != comp.KCV {
		t.Fatalf("status = %+v, want complete with KCV %s", cr, comp.KCV)
	}
	if _, err := os.Stat(filepath.Join(store, cr.KeyID+".v1.ekb")); err != nil {
		t.Fatalf("the owner's EKB was not stored: %v", err)
	}
}
