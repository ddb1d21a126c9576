package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestCLIKeyComponents: an admin starts a ceremony with `dcaas key
// components start`, two named admins enter the components (one from a
// file, one on standard input), a wrong KCV and the same admin twice are
// refused, and the owner's `status` stores the EKB of a key whose KCV
// OpenSSL computes from the XOR of the components.
func TestCLIKeyComponents(t *testing.T) {
	k := startCLIKMS(t, nil)
	admin := k.admin
	cliMust(t, nil, nil, with(admin, "tenant", "create", "acme")...)
	var owner appOutput
	cliMust(t, &owner, nil, with(admin, "app", "create", "payments-api", "--tenant", "acme", "--out-dir", t.TempDir(), "--json")...)
	admins := map[string][]string{}
	for _, name := range []string{"alice", "bob"} {
		admins[name] = k.newAdmin(t, name)
	}

	comp := kmstest.NewKeyComponents(t, 2)

	var cr api.ComponentCeremony
	cliMust(t, &cr, nil, with(admin, "key", "components", "start", "--tenant", "acme", "--owner", "payments-api",
		"--type", "aes-256-gcm", "--components", "2", "--rotation-period", "2h", "--json")...)
	if cr.ID == "" || cr.Components != 2 || cr.Owner != owner.DN {
		t.Fatalf("start = %+v", cr)
	}

	// Alice: from a file, spaces and a line break allowed; a wrong KCV
	// first.
	file := filepath.Join(t.TempDir(), "component.hex")
	h := hex.EncodeToString(comp.Parts[0])
	if err := os.WriteFile(file, []byte(h[:32]+" "+h[32:]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := "ABCDEF"
	if comp.KCVs[0] == wrong {
		wrong = "ABCDEE"
	}
	_, _, err := cliRun(t, nil, with(admins["alice"], "key", "components", "add", cr.ID, "--component-file", file, "--kcv", wrong)...)
	if !errors.Is(err, client.ErrKCVMismatch) {
		t.Fatalf("a wrong KCV: %v, want kcv_mismatch", err)
	}
	cliMust(t, &cr, nil, with(admins["alice"], "key", "components", "add", cr.ID, "--component-file", file, "--kcv", comp.KCVs[0], "--json")...)
	if len(cr.Entered) != 1 || cr.State != api.CeremonyCollecting {
		t.Fatalf("after alice: %+v", cr)
	}
	_, _, err = cliRun(t, []byte(hex.EncodeToString(comp.Parts[1])+"\n"), with(admins["alice"], "key", "components", "add", cr.ID, "--kcv", comp.KCVs[1])...)
	if !errors.Is(err, client.ErrDuplicateAdmin) {
		t.Fatalf("alice twice: %v, want duplicate_admin", err)
	}
	// Bob: on standard input (not a terminal here).
	out := cliMust(t, nil, []byte(hex.EncodeToString(comp.Parts[1])+"\n"), with(admins["bob"], "key", "components", "add", cr.ID, "--kcv", comp.KCVs[1])...)
	if !strings.Contains(string(out), "key key_") {
		t.Fatalf("bob's add printed %q", out)
	}

	// The owner stores the key's EKB; its KCV is OpenSSL's of the XOR.
	cust := k.conn(owner.CAFile, owner.CertFile, owner.KeyFile)
	store := t.TempDir()
	cliMust(t, &cr, nil, with(cust, "key", "components", "status", cr.ID, "--store", store, "--json")...)
	if cr.State != api.CeremonyComplete || cr.DataKey == nil || cr.DataKey.Metadata.RotationPeriodSeconds != 7200 {
		t.Fatalf("status = %+v (want the key of --rotation-period 2h)", cr)
	}
	if _, err := os.Stat(filepath.Join(store, cr.KeyID+".v1.ekb")); err != nil {
		t.Fatalf("the EKB was not stored: %v", err)
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	cmd := exec.Command("openssl", "mac", "-cipher", "AES-256-CBC", "-macopt", "hexkey:"+hex.EncodeToString(comp.Key.Expose()), "CMAC")
	cmd.Stdin = bytes.NewReader(make([]byte, 16))
	mac, err := cmd.Output()
	if err != nil {
		t.Skipf("openssl: %v", err)
	}
	if want := strings.ToUpper(string(mac[:6])); cr.KCV != want {
		t.Errorf("the key's KCV is %s, OpenSSL's of the XOR of the components %s", cr.KCV, want)
	}
}
