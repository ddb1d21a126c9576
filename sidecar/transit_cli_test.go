package sidecar_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// TestTransitWithBaoCLI runs the real OpenBao CLI against a sidecar over
// its Unix socket, when DCAAS_BAO_CLI names a bao binary. The CLI cannot
// be built from the Go module proxy this project uses (docs/transit.md,
// "The bao CLI in this repository's tests"), so the test is skipped
// without one.
func TestTransitWithBaoCLI(t *testing.T) {
	bao := os.Getenv("DCAAS_BAO_CLI")
	if bao == "" {
		t.Skip("DCAAS_BAO_CLI is not set (path to a bao binary)")
	}
	f := newFixture(t, nil)
	dks := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	f.do(t, "PUT", "/v1/keys/"+dks[0].KeyID+"/name", api.SetKeyNameRequest{Name: "payments"}, nil)
	home := t.TempDir()
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), bao, args...)
		cmd.Env = []string{"BAO_ADDR=unix://" + f.socket, "BAO_TOKEN=ignored", "HOME=" + home, "PATH=" + os.Getenv("PATH")}
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bao %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	ct := run("", "write", "-field=ciphertext", "transit/encrypt/payments", "plaintext="+b64("card 4111"))
	if !strings.HasPrefix(ct, "vault:v1:") {
		t.Fatalf("bao write transit/encrypt = %q", ct)
	}
	if pt := run("", "write", "-field=plaintext", "transit/decrypt/payments", "ciphertext="+ct); pt != b64("card 4111") {
		t.Fatalf("bao write transit/decrypt = %q", pt)
	}
	batch := filepath.Join(t.TempDir(), "batch.json")
	body := `{"batch_input":[{"plaintext":"` + b64("one") + `","reference":"a"},{"plaintext":"` + b64("two") + `"}]}`
	if err := os.WriteFile(batch, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Data struct {
			BatchResults []struct{ Ciphertext, Reference string } `json:"batch_results"`
		}
	}
	if err := json.Unmarshal([]byte(run("", "write", "-format=json", "transit/encrypt/payments", "@"+batch)), &out); err != nil {
		t.Fatal(err)
	}
	if r := out.Data.BatchResults; len(r) != 2 || r[0].Reference != "a" || !strings.HasPrefix(r[1].Ciphertext, "vault:v1:") {
		t.Fatalf("bao batch encrypt = %+v", r)
	}
	if typ := run("", "read", "-field=type", "transit/keys/payments"); typ != "aes256-gcm96" {
		t.Fatalf("bao read transit/keys = %q", typ)
	}
	// A refusal reaches the CLI as transit's error.
	cmd := exec.CommandContext(t.Context(), bao, "write", "transit/encrypt/nope", "plaintext="+b64("x"))
	cmd.Env = []string{"BAO_ADDR=unix://" + f.socket, "HOME=" + home}
	if msg, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(msg), "encryption key not found") {
		t.Fatalf("bao write to an unknown key = %v, %s", err, msg)
	}
}
