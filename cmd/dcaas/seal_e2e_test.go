package main_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/seal/pkcs11/pkcs11test"
	"github.com/dcaas/dcaas/internal/secret"
)

// releaseKeys rewraps ekbs to side and returns the keys, wiped when the
// test ends.
func releaseKeys(t *testing.T, cust *kmstest.Client, side *kmstest.FakeSidecar, ekbs [][]byte) []*secret.Bytes {
	t.Helper()
	var out api.WrappedKeys
	cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: side.Enrollment.WrappingCertPEM}, &out)
	keys := side.Unwrap(t, &out)
	t.Cleanup(func() {
		for _, k := range keys {
			k.Wipe()
		}
	})
	return keys
}

func sameSecrets(t *testing.T, what string, got, want []*secret.Bytes) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d keys, want %d", what, len(got), len(want))
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Fatalf("%s: key %d changed", what, i)
		}
	}
}

// TestSealMigrateToSoftHSM moves a file-sealed data dir to a SoftHSM2
// token with `dcaas seal migrate` and serves it with `--seal pkcs11`; the
// failed attempts before change nothing.
func TestSealMigrateToSoftHSM(t *testing.T) {
	e2e.Binary(t)
	tk := pkcs11test.Fresh(t)
	t.Setenv("SOFTHSM2_CONF", tk.Conf)
	t.Setenv("DCAAS_PKCS11_PIN", "")
	dataDir := filepath.Join(t.TempDir(), "kms")

	p := startKMS(t, dataDir)
	w := newTenantWorld(t, p, "acme")
	side := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	side.Enroll(t, rawClient(t, p, nil, nil), w.token(t).Token)
	var ekbs [][]byte
	for _, typ := range []api.KeyType{api.KeyAES256GCM, api.KeyEd25519} {
		var dk api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: typ}, &dk)
		ekbs = append(ekbs, dk.EKB)
		w.admin.MustDo(t, "POST", "/v1/tenants/acme/master-key/rotate", nil, nil)
	}
	before := releaseKeys(t, w.cust, side, ekbs)
	caPEM := readFile(t, dataDir, "ca.pem")
	p.Stop(t)

	hsm := []string{"--pkcs11-module", tk.Module, "--pkcs11-token", tk.Label}
	migrate := append([]string{"seal", "migrate", "--data-dir", dataDir, "--to", "pkcs11"}, hsm...)
	serveHSM := append([]string{"--seal", "pkcs11", "--pkcs11-pin-file", tk.PINFile}, hsm...)

	// Failed attempts: each says why and that nothing changed.
	fails := []struct {
		name, pin string
		args      []string
		want      string
	}{
		{"no PIN", "", []string{"--pkcs11-create-key"}, "DCAAS_PKCS11_PIN"},
		{"wrong PIN", "not-the-pin", []string{"--pkcs11-create-key"}, "PIN refused"},
		{"no key in the HSM", "", []string{"--pkcs11-pin-file", tk.PINFile}, "--pkcs11-create-key"},
		{"unknown token", "", []string{"--pkcs11-pin-file", tk.PINFile, "--pkcs11-token", "other"}, "token not found"},
	}
	for _, f := range fails {
		t.Setenv("DCAAS_PKCS11_PIN", f.pin)
		_, stderr, code := runDcaas(t, append(migrate, f.args...)...)
		if code == 0 || !strings.Contains(stderr, f.want) || !strings.Contains(stderr, "nothing was changed") {
			t.Errorf("%s: seal migrate exit %d, stderr %q; want a failure naming %q", f.name, code, stderr, f.want)
		}
	}
	t.Setenv("DCAAS_PKCS11_PIN", "")
	if _, err := launch(t, dataDir, serveHSM...); err == nil || !strings.Contains(err.Error(), "root key not found") {
		t.Errorf("kms serve --seal pkcs11 without an HSM key = %v, want root key not found", err)
	}
	p = startKMS(t, dataDir)
	w = w.reconnect(t, p)
	sameSecrets(t, "after the failed migrations", releaseKeys(t, w.cust, side, ekbs), before)
	p.Stop(t)

	stdout, stderr, code := runDcaas(t, append(migrate, "--pkcs11-pin-file", tk.PINFile, "--pkcs11-create-key")...)
	if code != 0 || !strings.Contains(stdout, "re-sealed 3 master key versions, 1 HMAC keys, 1 CA keys, 1 audit key and 0 import keys") {
		t.Fatalf("seal migrate: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if _, stderr, code := runDcaas(t, append(migrate, "--pkcs11-pin-file", tk.PINFile)...); code == 0 || !strings.Contains(stderr, "already sealed") {
		t.Errorf("second seal migrate: exit %d, stderr %q; want already sealed", code, stderr)
	}
	if _, err := launch(t, dataDir); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Errorf("kms serve with the file seal after the migration = %v, want the CA key not opening", err)
	}

	p = startKMS(t, dataDir, serveHSM...)
	if p.Field("seal") != "pkcs11" {
		t.Errorf("ready line %q: want seal=pkcs11", p.ReadyLine())
	}
	var h api.Health
	rawClient(t, p, nil, nil).MustDo(t, "GET", "/healthz", nil, &h)
	if h.Seal != "pkcs11" {
		t.Errorf("/healthz seal = %q, want pkcs11", h.Seal)
	}
	w = w.reconnect(t, p)
	sameSecrets(t, "after the migration", releaseKeys(t, w.cust, side, ekbs), before)
	if !bytes.Equal(readFile(t, dataDir, "ca.pem"), caPEM) {
		t.Error("ca.pem changed in the migration")
	}
	p.Stop(t)
}

func TestKMSServeSealFlags(t *testing.T) {
	t.Parallel()
	e2e.Binary(t)
	dataDir := filepath.Join(t.TempDir(), "kms")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--seal", "tpm"}, `--seal "tpm"`},
		{[]string{"--seal", "pkcs11"}, "--pkcs11-module and --pkcs11-token"},
		{[]string{"--pkcs11-token", "t"}, "need --seal pkcs11"},
		{[]string{"--seal", "pkcs11", "--pkcs11-pin", "1234"}, "unknown flag: --pkcs11-pin"},
	} {
		_, stderr, code := runDcaas(t, append([]string{"kms", "serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0"}, tt.args...)...)
		if code == 0 || !strings.Contains(startupErrors(stderr), tt.want) {
			t.Errorf("kms serve %v: exit %d, stderr %q; want an error naming %q", tt.args, code, stderr, tt.want)
		}
	}
}
