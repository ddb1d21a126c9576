package main

// End-to-end tests of the custodian tools: the cobra root runs in-process
// against a real KMS (kmstest) and a real sidecar served on a Unix socket,
// as an operator would drive them.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// cliRun runs `dcaas args…` in-process with stdin and returns what it
// printed.
func cliRun(t *testing.T, stdin []byte, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetIn(bytes.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errb)
	err = root.ExecuteContext(t.Context())
	return out.Bytes(), errb.Bytes(), err
}

// cliMust is cliRun that fails the test on error and, with --json among
// args, decodes stdout into v.
func cliMust(t *testing.T, v any, stdin []byte, args ...string) []byte {
	t.Helper()
	out, errb, err := cliRun(t, stdin, args...)
	if err != nil {
		t.Fatalf("dcaas %s: %v\nstderr: %s", strings.Join(args, " "), err, errb)
	}
	if len(errb) != 0 {
		t.Fatalf("dcaas %s wrote to stderr (not a terminal): %q", strings.Join(args, " "), errb)
	}
	if v != nil {
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("dcaas %s --json printed %q: %v", strings.Join(args, " "), out, err)
		}
	}
	return out
}

func cliDeadURL(t *testing.T) string {
	t.Helper()
	return "https://127.0.0.1:" + strconv.Itoa(e2e.FreePort(t))
}

// cliKMS is a KMS (kmstest) for the in-process CLI tests, with the
// connection flags of its admin.
type cliKMS struct {
	env   *kmstest.Env
	ca    string   // the data dir's CA file
	admin []string // --kms, --ca, --cert and --key of the data dir's admin
}

// startCLIKMS clears the environment the connection flags default to and
// starts a KMS, its options changed by mutate (nil: none).
func startCLIKMS(t *testing.T, mutate func(*kms.Options)) *cliKMS {
	t.Helper()
	clearCLIEnv(t)
	env := kmstest.Start(t, mutate)
	k := &cliKMS{env: env, ca: filepath.Join(env.DataDir, kms.CAFile)}
	k.admin = k.conn(k.ca, filepath.Join(env.DataDir, kms.AdminCert), filepath.Join(env.DataDir, kms.AdminKey))
	return k
}

// clearCLIEnv unsets, for the test, the environment the connection flags
// default to.
func clearCLIEnv(t *testing.T) {
	for _, v := range []string{"DCAAS_KMS", "DCAAS_CA", "DCAAS_CERT", "DCAAS_KEY", "DCAAS_SOCKET", "DCAAS_EKB_STORE"} {
		t.Setenv(v, "")
	}
}

// conn returns the connection flags to the KMS with the CA file ca and the
// identity of cert and key.
func (k *cliKMS) conn(ca, cert, key string) []string {
	return []string{"--kms", k.env.URL, "--ca", ca, "--cert", cert, "--key", key}
}

// newAdmin registers another admin with `dcaas admin create` and returns
// its connection flags.
func (k *cliKMS) newAdmin(t *testing.T, name string) []string {
	t.Helper()
	var out appOutput
	cliMust(t, &out, nil, with(k.admin, "admin", "create", name, "--out-dir", t.TempDir(), "--json")...)
	return k.conn(k.ca, out.CertFile, out.KeyFile)
}

// with returns the arguments args followed by the connection flags base.
func with(base []string, args ...string) []string { return append(slices.Clone(args), base...) }

func TestCLIEndToEnd(t *testing.T) {
	k := startCLIKMS(t, nil)
	env, admin := k.env, k.admin

	// Admin: tenant and custodian.
	var ten api.Tenant
	cliMust(t, &ten, nil, with(admin, "tenant", "create", "acme", "--json")...)
	if ten.Name != "acme" || ten.MasterKeyVersion != 1 {
		t.Fatalf("tenant create = %+v", ten)
	}
	out := cliMust(t, nil, nil, with(admin, "tenant", "rotate", "acme")...)
	if !strings.Contains(string(out), "master key version 2") {
		t.Fatalf("tenant rotate printed %q", out)
	}
	creds := t.TempDir()
	var app appOutput
	cliMust(t, &app, nil, with(admin, "app", "create", "payments-api", "--tenant", "acme", "--out-dir", creds, "--json")...)
	if !strings.Contains(app.DN, "payments-api") || app.KeyFile == "" {
		t.Fatalf("app create = %+v", app)
	}
	if fi, err := os.Stat(app.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if _, _, err := cliRun(t, nil, with(admin, "app", "create", "payments-api", "--tenant", "acme", "--out-dir", creds)...); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("app create over existing files = %v, want a refusal", err)
	}
	// The text output names the key file with the mode read back from it.
	textCreds := t.TempDir()
	out = cliMust(t, nil, nil, with(admin, "app", "create", "payments-batch", "--tenant", "acme", "--out-dir", textCreds)...)
	if want := "private key: " + filepath.Join(textCreds, "payments-batch-key.pem") + " (mode 0600)\n"; !strings.Contains(string(out), want) {
		t.Fatalf("app create printed %q, want a line %q", out, want)
	}

	// The custodian, with a dead replica listed first.
	socket := filepath.Join(t.TempDir(), "sidecar.sock")
	cust := []string{"--kms", cliDeadURL(t), "--kms", env.URL, "--ca", app.CAFile, "--cert", app.CertFile, "--key", app.KeyFile, "--socket", socket}
	store := t.TempDir()

	var key keyOutput
	cliMust(t, &key, nil, with(cust, "key", "create", "--type", "aes-256-gcm", "--store", store, "--label", "team=payments", "--json")...)
	if key.Version != 1 || key.Type != api.KeyAES256GCM {
		t.Fatalf("key create = %+v", key)
	}
	if _, err := os.Stat(filepath.Join(store, key.KeyID+".v1.ekb")); err != nil {
		t.Fatalf("the EKB was not stored: %v", err)
	}
	var tok tokenOutput
	cliMust(t, &tok, nil, with(cust, "token", "create", "--json")...)
	if tok.Token == "" || tok.CustodianDN != app.DN {
		t.Fatalf("token create = %+v", tok)
	}

	// The sidecar, in-process, enrolled with that token.
	sc, _ := e2e.ServeSidecar(t, sidecar.Config{
		KMSURL: env.URL, CAPEM: env.CAPEM, DataDir: t.TempDir(), EnrollToken: sidecar.Secret([]byte(tok.Token)),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, socket)

	// Rewrap from the store; stdin → encrypt → decrypt gives the same bytes.
	var loaded loadOutput
	cliMust(t, &loaded, nil, with(cust, "load", "rewrap", "--all", "--store", store, "--json")...)
	if !slices.Equal(loaded.Loaded, []string{key.KeyID}) {
		t.Fatalf("load rewrap = %v, want [%s]", loaded.Loaded, key.KeyID)
	}
	plaintext := bytes.Repeat([]byte("card 4111 1111 1111 1111\n"), 100)
	ct := cliMust(t, nil, plaintext, with(cust, "encrypt", "--key-id", key.KeyID, "--aad", "order-1")...)
	if bytes.Contains(ct, []byte("4111")) {
		t.Fatal("the ciphertext holds the plaintext")
	}
	pt := cliMust(t, nil, ct, with(cust, "decrypt", "--aad", "order-1")...)
	if !bytes.Equal(pt, plaintext) {
		t.Fatalf("decrypt = %q, want the plaintext back", pt)
	}
	_, _, err := cliRun(t, ct, with(cust, "decrypt", "--aad", "order-2")...)
	if !errors.Is(err, client.ErrDecryptFailed) {
		t.Fatalf("decrypt with another AAD = %v, want ErrDecryptFailed", err)
	}
	var enc api.EncryptResponse
	cliMust(t, &enc, []byte("json"), with(cust, "encrypt", "--key-id", key.KeyID, "--json")...)
	var dec api.DecryptResponse
	cliMust(t, &dec, enc.Ciphertext, with(cust, "decrypt", "--json")...)
	if enc.KeyID != key.KeyID || string(dec.Plaintext) != "json" {
		t.Fatalf("--json encrypt/decrypt = %+v / %q", enc, dec.Plaintext)
	}

	// The central path with the EKB file opens what the sidecar made.
	ekbFile := filepath.Join(store, key.KeyID+".v1.ekb")
	pt = cliMust(t, nil, ct, with(cust, "decrypt", "--aad", "order-1", "--ekb", ekbFile)...)
	if !bytes.Equal(pt, plaintext) {
		t.Fatal("central decrypt does not give the plaintext back")
	}

	// A new version: stored, loaded with the old one, used for encryption.
	var v2 keyOutput
	cliMust(t, &v2, nil, with(cust, "key", "version", key.KeyID, "--store", store, "--json")...)
	if v2.Version != 2 {
		t.Fatalf("key version = %+v", v2)
	}
	cliMust(t, &loaded, nil, with(cust, "load", "rewrap", "--key-id", key.KeyID, "--store", store, "--json")...)
	cliMust(t, &enc, []byte("v2"), with(cust, "encrypt", "--key-id", key.KeyID, "--json")...)
	if enc.KeyVersion != 2 {
		t.Fatalf("encrypt after key version used version %d", enc.KeyVersion)
	}
	var list struct {
		EKBs []struct {
			KeyID   string `json:"key_id"`
			Version int    `json:"version"`
		} `json:"ekbs"`
	}
	cliMust(t, &list, nil, with(cust, "key", "list", "--store", store, "--json")...)
	if len(list.EKBs) != 2 {
		t.Fatalf("key list = %+v", list)
	}

	// The grant flow: an EKB file and a retained key.
	g1Store := t.TempDir()
	var g1, ret keyOutput
	cliMust(t, &g1, nil, with(cust, "key", "create", "--type", "hmac-sha256", "--store", g1Store, "--json")...)
	cliMust(t, &ret, nil, with(cust, "key", "create", "--type", "ed25519", "--retain", "--store", g1Store, "--json")...)
	if ret.PublicKeyPEM == "" {
		t.Fatal("an ed25519 key came without its public key")
	}
	cliMust(t, &loaded, nil, with(cust, "load", "grant", "--ekb", g1.EKBFile, "--retained", ret.KeyID, "--json")...)
	if !slices.Equal(loaded.Loaded, []string{g1.KeyID, ret.KeyID}) {
		t.Fatalf("load grant = %v", loaded.Loaded)
	}

	// Seeds from stdin.
	seeds, _ := json.Marshal([]api.Seed{{Seed: bytes.Repeat([]byte{7}, 32), Type: api.KeyAES256GCM}})
	cliMust(t, &loaded, seeds, with(cust, "load", "seeds", "--seeds", "-", "--json")...)
	if len(loaded.Loaded) != 1 || !strings.HasPrefix(loaded.Loaded[0], "drv_") {
		t.Fatalf("load seeds = %v", loaded.Loaded)
	}
	seeded := loaded.Loaded[0]

	// Stateless: seal, then use the sealed key file.
	sealedDir := t.TempDir()
	out = cliMust(t, nil, nil, with(cust, "load", "seal", "--key-id", seeded, "--out", sealedDir)...)
	sealedFile := filepath.Join(sealedDir, seeded+".sealed")
	if !strings.Contains(string(out), sealedFile) {
		t.Fatalf("load seal printed %q", out)
	}
	if fi, err := os.Stat(sealedFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("sealed key file: %v, %v", fi, err)
	}
	ct = cliMust(t, nil, []byte("stateless"), with(cust, "encrypt", "--sealed-key", sealedFile)...)
	if pt := cliMust(t, nil, ct, with(cust, "decrypt", "--sealed-key", sealedFile)...); string(pt) != "stateless" {
		t.Fatalf("decrypt with the sealed key = %q", pt)
	}
	if _, _, err := cliRun(t, nil, with(cust, "load", "seal", "--key-id", key.KeyID)...); err == nil {
		t.Fatal("load seal without --out or --json was accepted (the sealed keys would be lost)")
	}

	// Grants minted by hand, instances, revocation, audit.
	var insts api.Instances
	cliMust(t, &insts, nil, with(cust, "instances", "list", "--json")...)
	if len(insts.Instances) != 1 || insts.Instances[0].InstanceID != sc.InstanceID() {
		t.Fatalf("instances list = %+v", insts)
	}
	var g api.Grant
	cliMust(t, &g, nil, with(cust, "grant", "create", "--instance", sc.InstanceID(), "--retained", ret.KeyID, "--json")...)
	if !strings.HasPrefix(g.Grant, "dcgr_") {
		t.Fatalf("grant create = %+v", g)
	}
	out = cliMust(t, nil, nil, with(cust, "instances", "list")...)
	if !strings.Contains(string(out), sc.InstanceID()) || !strings.HasPrefix(string(out), "INSTANCE") {
		t.Fatalf("instances list printed %q", out)
	}
	cliMust(t, nil, nil, with(cust, "key", "disable", g1.KeyID)...)
	var audit api.AuditPage
	cliMust(t, &audit, nil, with(admin, "audit", "list", "--json")...)
	actions := map[string]bool{}
	for _, r := range audit.Records {
		actions[r.Action] = true
	}
	for _, a := range []string{"tenant.create", "app.create", "datakey.create", "keys.rewrap", "grant.create", "datakey.disable"} {
		if !actions[a] {
			t.Errorf("audit list has no %s record", a)
		}
	}
	cliMust(t, &audit, nil, with(admin, "audit", "list", "--limit", "3", "--json")...)
	if len(audit.Records) != 3 || audit.Next != audit.Records[2].Seq {
		t.Fatalf("audit list --limit 3 = %d records, next %d", len(audit.Records), audit.Next)
	}
	var none api.RevokedInstances
	cliMust(t, &none, nil, with(admin, "instances", "revoke", "--manufacturer", "no-such-mfr", "--json")...)
	if none.Revoked == nil || len(none.Revoked) != 0 {
		t.Fatalf("instances revoke --manufacturer of no instance = %+v, want an empty list", none)
	}
	cliMust(t, nil, nil, with(cust, "instances", "revoke", sc.InstanceID())...)
	_, _, err = cliRun(t, nil, with(cust, "grant", "create", "--instance", sc.InstanceID(), "--retained", ret.KeyID)...)
	if !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("grant for a revoked instance = %v, want ErrRevoked", err)
	}
}

func TestCLIFlagErrors(t *testing.T) {
	clearCLIEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tenant", "create", "acme"}, "--kms"},
		{[]string{"tenant", "create", "acme", "--kms", "https://kms"}, "--cert"},
		{[]string{"app", "create", "../evil", "--tenant", "acme"}, "app name"},
		{[]string{"key", "create", "--label", "novalue"}, "KEY=VALUE"},
		{[]string{"key", "create", "--expires", "soon"}, "--expires"},
		{[]string{"key", "create", "--rotation-period", "1500ms"}, "--rotation-period"},
		{[]string{"load", "rewrap"}, "name EKBs"},
		{[]string{"encrypt"}, "--key-id"},
		{[]string{"encrypt", "--key-id", "k", "--central", "--sealed-key", "f"}, "--sealed-key"},
		{[]string{"grant", "create"}, "--instance"},
		{[]string{"instances", "revoke"}, "exactly one of INSTANCE_ID, --ak and --manufacturer"},
		{[]string{"instances", "revoke", "--ak", "ab", "--manufacturer", "m"}, "exactly one of"},
	} {
		_, _, err := cliRun(t, nil, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dcaas %s = %v, want an error about %s", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	// DCAAS_KMS and friends are the defaults.
	t.Setenv("DCAAS_KMS", "https://a:1,https://b:2")
	t.Setenv("DCAAS_SOCKET", "/run/x.sock")
	c := connFlags(&cobra.Command{})
	if !slices.Equal(c.kms, []string{"https://a:1", "https://b:2"}) || c.socket != "/run/x.sock" {
		t.Fatalf("env defaults = %v %q", c.kms, c.socket)
	}
}

func TestIsTerminal(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for name, out := range map[string]io.Writer{"/dev/null": null, "pipe": w, "buffer": &bytes.Buffer{}} {
		if isTerminal(out) {
			t.Errorf("isTerminal(%s) = true", name)
		}
	}
}

func TestParseSeedsJSON(t *testing.T) {
	// Seeds are base64 in JSON, as the API writes byte strings.
	raw := `[{"seed":"` + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16)) + `","type":"hmac-sha256"}]`
	root := newRoot()
	root.SetIn(strings.NewReader(raw))
	seeds, err := readSeeds(root, "-")
	if err != nil || len(seeds) != 1 || seeds[0].Type != api.KeyHMACSHA256 || len(seeds[0].Seed) != 16 {
		t.Fatalf("readSeeds = %+v, %v", seeds, err)
	}
	root.SetIn(strings.NewReader(`[{"seed":"AA==","kind":"x"}]`))
	if _, err := readSeeds(root, "-"); err == nil {
		t.Fatal("readSeeds accepted an unknown field")
	}
}
