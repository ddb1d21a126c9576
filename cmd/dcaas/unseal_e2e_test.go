package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/seal/file"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store/pgtest"
)

// sealInit runs `dcaas seal init` into a new data dir and shares dir in
// t.TempDir() and returns them with the share files, in share order.
func sealInit(t *testing.T, n, k string) (dataDir, sharesDir string, shares []string) {
	t.Helper()
	base := t.TempDir()
	dataDir, sharesDir = filepath.Join(base, "kms"), filepath.Join(base, "shares")
	out, errOut, code := runDcaas(t, "seal", "init", "--data-dir", dataDir, "--shares", n, "--threshold", k,
		"--shares-dir", sharesDir, "--listen", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("seal init exited %d: %s", code, errOut)
	}
	if !strings.Contains(out, "share-set=") {
		t.Fatalf("seal init printed no share set: %s", out)
	}
	files, err := filepath.Glob(filepath.Join(sharesDir, "unseal-share-*"))
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(files, func(a, b string) int { return shareIndex(t, a) - shareIndex(t, b) })
	return dataDir, sharesDir, files
}

func shareIndex(t *testing.T, path string) int {
	t.Helper()
	sh, err := file.ParseShare(readFile(t, filepath.Dir(path), filepath.Base(path)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer sh.Value.Wipe()
	return sh.Index
}

// unsealCLI runs `dcaas kms unseal` with the data dir's admin identity.
func unsealCLI(t *testing.T, p *e2e.KMS, dataDir, shareFile string, extra ...string) (string, string, int) {
	t.Helper()
	args := append([]string{"kms", "unseal", "--kms", p.URL(), "--ca", filepath.Join(dataDir, "ca.pem"),
		"--cert", filepath.Join(dataDir, "admin/cert.pem"), "--key", filepath.Join(dataDir, "admin/key.pem"),
		"--share-file", shareFile}, extra...)
	return runDcaas(t, args...)
}

// unsealAll posts each share file with unsealCLI and fails the test,
// saying what it did, when one is refused.
func unsealAll(t *testing.T, p *e2e.KMS, dataDir, what string, shareFiles []string) {
	t.Helper()
	for _, s := range shareFiles {
		if _, errOut, code := unsealCLI(t, p, dataDir, s); code != 0 {
			t.Fatalf("%s: %s", what, errOut)
		}
	}
}

func sealStatus(t *testing.T, p *e2e.KMS, dataDir string) api.SealStatus {
	t.Helper()
	out, errOut, code := runDcaas(t, "kms", "seal-status", "--json", "--kms", p.URL(), "--ca", filepath.Join(dataDir, "ca.pem"))
	if code != 0 {
		t.Fatalf("kms seal-status exited %d: %s", code, errOut)
	}
	var st api.SealStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("kms seal-status --json: %v: %s", err, out)
	}
	return st
}

func wantAPIError(t *testing.T, what string, err error, status int, code api.Code) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) || e.Status != status || e.Code != code {
		t.Fatalf("%s: %v, want HTTP %d %s", what, err, status, code)
	}
}

// TestSealInitUnsealEndToEnd: seal init 3-of-5, a sealed start that
// answers 503 "sealed" on data routes, unseal progress over the CLI, the
// refusals (non-admin, foreign certificate, duplicate share, another
// set's share, a damaged share file, a complete set that does not open the
// root key), the KMS up in-process after the third share, the unseal
// audited, and a restart that seals it again.
func TestSealInitUnsealEndToEnd(t *testing.T) {
	t.Parallel()
	e2e.Binary(t)
	dataDir, sharesDir, shares := sealInit(t, "5", "3")
	if len(shares) != 5 {
		t.Fatalf("seal init wrote %d share files, want 5", len(shares))
	}
	for _, s := range shares {
		fi, err := os.Stat(s)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("share file %s has mode %v, want 0600", s, fi.Mode().Perm())
		}
	}
	set, ok, err := file.SharesOf(dataDir)
	if err != nil || !ok || set.Threshold != 3 || set.Shares != 5 {
		t.Fatalf("root.key share set %+v, split %v, %v", set, ok, err)
	}

	// Written once: a second init into the same dirs changes nothing.
	before := readFile(t, dataDir, "root.key")
	if _, errOut, code := runDcaas(t, "seal", "init", "--data-dir", dataDir, "--shares", "5", "--threshold", "3", "--shares-dir", sharesDir); code == 0 || !strings.Contains(errOut, "root.key") {
		t.Fatalf("seal init over an initialized data dir: exit %d, %s", code, errOut)
	}
	if _, errOut, code := runDcaas(t, "seal", "init", "--data-dir", filepath.Join(t.TempDir(), "other"), "--shares", "5", "--threshold", "3", "--shares-dir", sharesDir); code == 0 || !strings.Contains(errOut, "already holds share files") {
		t.Fatalf("seal init into a shares dir with shares: exit %d, %s", code, errOut)
	}
	if _, errOut, code := runDcaas(t, "seal", "init", "--data-dir", filepath.Join(t.TempDir(), "one"), "--shares", "3", "--threshold", "1", "--shares-dir", t.TempDir()); code == 0 || !strings.Contains(errOut, "dual control") {
		t.Fatalf("seal init --threshold 1 without --allow-single-share: exit %d, %s", code, errOut)
	}
	if string(readFile(t, dataDir, "root.key")) != string(before) {
		t.Fatal("a refused seal init changed root.key")
	}

	p := e2e.StartKMS(t, e2e.KMSConfig{DataDir: dataDir, Sealed: true})
	admin := rawAdmin(t, p)
	anon := rawClient(t, p, nil, nil)

	// Sealed: data routes 503 sealed, health says so, status readable.
	wantAPIError(t, "GET /v1/instances while sealed", admin.Do("GET", "/v1/instances", nil, nil), http.StatusServiceUnavailable, api.CodeSealed)
	wantAPIError(t, "POST /v1/tenants while sealed", admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil), http.StatusServiceUnavailable, api.CodeSealed)
	var h api.Health
	anon.MustDo(t, "GET", "/healthz", nil, &h)
	if h.Status != "sealed" {
		t.Fatalf("/healthz while sealed: status %q", h.Status)
	}
	if err := anon.Do("GET", "/readyz", nil, nil); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("/readyz while sealed: %v, want 503", err)
	}
	if st := sealStatus(t, p, dataDir); !st.Sealed || st.Progress != 0 || st.Threshold != 3 || st.Shares != 5 || st.ShareSet != set.IDString() {
		t.Fatalf("seal-status at start: %+v", st)
	}

	// A foreign admin certificate (another ceremony's CA) is refused.
	otherDir, _, otherShares := sealInit(t, "3", "2")
	foreign := rawClient(t, p, readFile(t, otherDir, "admin/cert.pem"), readFile(t, otherDir, "admin/key.pem"))
	wantAPIError(t, "unseal with a foreign certificate", foreign.Do("POST", "/v1/sys/unseal", api.UnsealRequest{Share: string(readFile(t, sharesDir, filepath.Base(shares[0])))}, nil),
		http.StatusUnauthorized, api.CodeUnauthenticated)
	wantAPIError(t, "unseal without a certificate", anon.Do("POST", "/v1/sys/unseal", api.UnsealRequest{Share: "x"}, nil),
		http.StatusUnauthorized, api.CodeUnauthenticated)

	// Two shares: still sealed, progress 2/3.
	for i, s := range shares[:2] {
		out, errOut, code := unsealCLI(t, p, dataDir, s)
		if code != 0 || !strings.Contains(out, "sealed: "+string(rune('1'+i))+" of 3 shares") {
			t.Fatalf("unseal share %d: exit %d, %q %q", i+1, code, out, errOut)
		}
	}
	if _, errOut, code := unsealCLI(t, p, dataDir, shares[1]); code == 0 || !strings.Contains(errOut, "already posted") {
		t.Fatalf("a duplicate share: exit %d, %s", code, errOut)
	}
	if _, errOut, code := unsealCLI(t, p, dataDir, otherShares[0]); code == 0 || !strings.Contains(errOut, "belongs to share set") {
		t.Fatalf("a share of another set: exit %d, %s", code, errOut)
	}
	// One hex digit of share 3's record changed: a typo.
	lines := strings.Split(string(readFile(t, sharesDir, filepath.Base(shares[2]))), "\n")
	last := []byte(lines[2])
	if last[40] == '0' {
		last[40] = '1'
	} else {
		last[40] = '0'
	}
	lines[2] = string(last)
	damagedFile := filepath.Join(t.TempDir(), "damaged.txt")
	if err := os.WriteFile(damagedFile, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := unsealCLI(t, p, dataDir, damagedFile); code == 0 || !strings.Contains(errOut, "checksum") {
		t.Fatalf("a damaged share file: exit %d, %s", code, errOut)
	}
	if st := sealStatus(t, p, dataDir); !st.Sealed || st.Progress != 2 || !slices.Equal(st.Posted, []int{1, 2}) {
		t.Fatalf("seal-status after 2 shares and 3 refusals: %+v", st)
	}
	wantAPIError(t, "GET /v1/instances at 2 of 3", admin.Do("GET", "/v1/instances", nil, nil), http.StatusServiceUnavailable, api.CodeSealed)

	// The third share opens it in-process: no restart.
	out, errOut, code := unsealCLI(t, p, dataDir, shares[2])
	if code != 0 || !strings.Contains(out, "unsealed") {
		t.Fatalf("third share: exit %d, %q %q", code, out, errOut)
	}
	ep := p.Endpoint(t)
	tn := e2e.NewTenant(t, ep, "acme")
	if tn.Info.Name != "acme" {
		t.Fatalf("tenant after unseal: %+v", tn.Info)
	}
	anon.MustDo(t, "GET", "/healthz", nil, &h)
	if h.Status != api.HealthOK {
		t.Fatalf("/healthz after unseal: %q", h.Status)
	}
	if st := sealStatus(t, p, dataDir); st.Sealed || st.ShareSet != set.IDString() {
		t.Fatalf("seal-status after unseal: %+v", st)
	}
	var unseals []api.AuditRecord
	for _, r := range e2e.AuditLog(t, ep.Admin(t)) {
		if r.Action == "sys.unseal" {
			unseals = append(unseals, r)
		}
	}
	if len(unseals) != 1 || !strings.Contains(unseals[0].Caller, "CN=admin") || unseals[0].KeyID != set.IDString() || unseals[0].Time.IsZero() {
		t.Fatalf("audit records of the unseal: %+v", unseals)
	}

	// A restart seals it again; the custodian's certificate may not unseal.
	p.Stop(t)
	p.Restart(t)
	wantAPIError(t, "GET /v1/instances after restart", admin.Do("GET", "/v1/instances", nil, nil), http.StatusServiceUnavailable, api.CodeSealed)
	cust := rawClient(t, p, []byte(tn.CustodianCreds.CertPEM), []byte(tn.CustodianCreds.KeyPEM))
	wantAPIError(t, "unseal with a custodian certificate", cust.Do("POST", "/v1/sys/unseal", api.UnsealRequest{Share: string(readFile(t, sharesDir, filepath.Base(shares[3])))}, nil),
		http.StatusForbidden, api.CodeForbidden)

	// A complete set with one forged share (well-formed, right set, wrong
	// value) is refused as a whole and progress starts again.
	forged := file.EncodeShare(set, 5, secret.New(make([]byte, 32)))
	unsealAll(t, p, dataDir, "unseal after restart", shares[:2])
	err = admin.Do("POST", "/v1/sys/unseal", api.UnsealRequest{Share: string(forged)}, nil)
	wantAPIError(t, "a set with a forged share", err, http.StatusBadRequest, api.CodeInvalidArgument)
	if msg := err.Error(); !strings.Contains(msg, "do not open the root key") || strings.Contains(msg, "share 5") {
		t.Fatalf("the refusal must not say which share was wrong: %s", msg)
	}
	if st := sealStatus(t, p, dataDir); !st.Sealed || st.Progress != 0 {
		t.Fatalf("seal-status after a set that does not open: %+v", st)
	}
	unsealAll(t, p, dataDir, "unseal with shares 3-5", shares[2:])
	// The store is the one of before the restart: acme exists.
	wantAPIError(t, "POST /v1/tenants acme again", admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil), http.StatusConflict, api.CodeConflict)
	admin.MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "beta"}, nil)
}

// copyInto copies dataDir's files named into dst (created 0700), keeping
// their modes.
func copyInto(t *testing.T, src, dst string, names ...string) {
	t.Helper()
	for _, n := range names {
		data := readFile(t, src, n)
		fi, err := os.Stat(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, n)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, n), data, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSealedReplicasUnsealIndependently: two replicas on one PostgreSQL
// database, each with its own data dir (B gets A's root.key, ca.pem and
// sealed listener certificate), start sealed; unsealing A leaves B sealed,
// and B opens with its own shares and sees what A wrote.
func TestSealedReplicasUnsealIndependently(t *testing.T) {
	t.Parallel()
	e2e.Binary(t)
	dsn := pgtest.DSN(t)
	base := t.TempDir()
	dirA, dirB, sharesDir := filepath.Join(base, "a"), filepath.Join(base, "b"), filepath.Join(base, "shares")
	cmd := []string{"seal", "init", "--data-dir", dirA, "--shares", "3", "--threshold", "2", "--shares-dir", sharesDir,
		"--listen", "127.0.0.1:0", "--store", "postgres", "--postgres-dsn", dsn}
	if _, errOut, code := runDcaas(t, cmd...); code != 0 {
		t.Fatalf("seal init --store postgres: exit %d: %s", code, errOut)
	}
	shares, _ := filepath.Glob(filepath.Join(sharesDir, "unseal-share-*"))
	if len(shares) != 3 {
		t.Fatalf("%d share files", len(shares))
	}
	copyInto(t, dirA, dirB, "root.key", "ca.pem", "unseal/cert.pem", "unseal/key.pem")
	a := e2e.StartKMS(t, e2e.KMSConfig{Name: "kms A", DataDir: dirA, PostgresDSN: dsn, Sealed: true})
	b := e2e.StartKMS(t, e2e.KMSConfig{Name: "kms B", DataDir: dirB, PostgresDSN: dsn, Sealed: true})
	adminA := rawAdmin(t, a)
	adminB := rawClient(t, b, readFile(t, dirA, "admin/cert.pem"), readFile(t, dirA, "admin/key.pem"))
	unsealAll(t, a, dirA, "unseal A", shares[:2])
	adminA.MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
	wantAPIError(t, "B while A is unsealed", adminB.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "beta"}, nil), http.StatusServiceUnavailable, api.CodeSealed)
	var st api.SealStatus
	adminB.MustDo(t, "GET", "/v1/sys/seal-status", nil, &st)
	if !st.Sealed || st.Progress != 0 {
		t.Fatalf("B's seal status after A unsealed: %+v", st)
	}
	// B's own unseal, with another pair of shares and A's admin (the
	// admin certificate lives in the shared database).
	unsealAll(t, b, dirA, "unseal B", shares[1:])
	wantAPIError(t, "acme again through B", adminB.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil), http.StatusConflict, api.CodeConflict)
	adminB.MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "beta"}, nil)
}

// TestSealRekeyEndToEnd: a 3-of-5 data dir holding a tenant is split anew
// into 2 of 4 with `dcaas seal rekey` and three of the old shares; the
// refusals (too few shares, a forged one, a share given twice, a shares dir
// holding shares) change nothing; a KMS that was sealed before the rekey
// says to restart; after the restart the new shares open it (the tenant is
// still there: the root key did not change) and the old ones are refused.
func TestSealRekeyEndToEnd(t *testing.T) {
	t.Parallel()
	e2e.Binary(t)
	dataDir, _, old := sealInit(t, "5", "3")
	oldSet, _, err := file.SharesOf(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	p := e2e.StartKMS(t, e2e.KMSConfig{DataDir: dataDir, Sealed: true})
	unsealAll(t, p, dataDir, "first unseal", old[:3])
	tn := e2e.NewTenant(t, p.Endpoint(t), "acme")
	p.Stop(t)
	p.Restart(t) // sealed again, with the old share set

	before := readFile(t, dataDir, "root.key")
	newDir := filepath.Join(t.TempDir(), "new-shares")
	rekey := func(extra ...string) (string, string, int) {
		return runDcaas(t, append([]string{"seal", "rekey", "--data-dir", dataDir, "--shares-dir", newDir}, extra...)...)
	}
	forged := filepath.Join(t.TempDir(), "forged.txt")
	if err := os.WriteFile(forged, file.EncodeShare(oldSet, 4, secret.New(make([]byte, 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	busy := t.TempDir()
	copyInto(t, filepath.Dir(old[0]), busy, filepath.Base(old[0]))
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"two of three shares", []string{"--share-file", old[0], "--share-file", old[1]}, "needs 3"},
		{"a forged share", []string{"--share-file", old[0], "--share-file", old[1], "--share-file", forged}, "do not open root.key"},
		{"a share twice", []string{"--share-file", old[0], "--share-file", old[1], "--share-file", old[1]}, "given twice"},
		{"threshold 1", []string{"--share-file", old[0], "--share-file", old[1], "--share-file", old[2], "--threshold", "1"}, "dual control"},
		{"threshold above shares", []string{"--share-file", old[0], "--share-file", old[1], "--share-file", old[2], "--shares", "2"}, "--threshold 3"},
		{"a shares dir holding shares", []string{"--share-file", old[0], "--share-file", old[1], "--share-file", old[2], "--shares-dir", busy}, "already holds share files"},
	} {
		if _, errOut, code := rekey(c.args...); code == 0 || !strings.Contains(errOut, c.want) {
			t.Fatalf("seal rekey with %s: exit %d, %s; want it to say %q", c.name, code, errOut, c.want)
		}
		if !bytes.Equal(readFile(t, dataDir, "root.key"), before) {
			t.Fatalf("a refused seal rekey (%s) changed root.key", c.name)
		}
		if files, _ := filepath.Glob(filepath.Join(newDir, "unseal-share-*")); len(files) > 0 {
			t.Fatalf("a refused seal rekey (%s) left share files: %v", c.name, files)
		}
	}

	// Shares 5, 2 (from standard input) and 4 make a 2-of-4 split.
	cmd := exec.Command(e2e.Binary(t), "seal", "rekey", "--data-dir", dataDir, "--shares-dir", newDir,
		"--share-file", old[4], "--share-file", "-", "--share-file", old[3], "--shares", "4", "--threshold", "2")
	cmd.Stdin = bytes.NewReader(readFile(t, filepath.Dir(old[1]), filepath.Base(old[1])))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("seal rekey: %v: %s", err, out)
	}
	set, ok, err := file.SharesOf(dataDir)
	if err != nil || !ok || set.Threshold != 2 || set.Shares != 4 || set.ID == oldSet.ID {
		t.Fatalf("root.key after rekey: %+v, %v, %v (old set %s)", set, ok, err, oldSet.IDString())
	}
	if !strings.Contains(string(out), "share-set="+set.IDString()) || !strings.Contains(string(out), "was share set "+oldSet.IDString()) {
		t.Fatalf("seal rekey printed: %s", out)
	}
	fresh, err := filepath.Glob(filepath.Join(newDir, "unseal-share-*"))
	if err != nil || len(fresh) != 4 {
		t.Fatalf("new share files: %v, %v", fresh, err)
	}
	for _, f := range fresh {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("new share file %s: %v, %v", f, fi, err)
		}
		if !strings.Contains(string(out), f) {
			t.Fatalf("seal rekey did not print %s: %s", f, out)
		}
	}
	slices.SortFunc(fresh, func(a, b string) int { return shareIndex(t, a) - shareIndex(t, b) })

	// The KMS sealed since before the rekey: neither set can open it.
	for _, s := range []string{old[0], fresh[0]} {
		if _, errOut, code := unsealCLI(t, p, dataDir, s); code == 0 || !strings.Contains(errOut, "restart the KMS") {
			t.Fatalf("unseal of a KMS sealed before the rekey: exit %d, %s", code, errOut)
		}
	}
	p.Stop(t)
	p.Restart(t)
	if st := sealStatus(t, p, dataDir); !st.Sealed || st.ShareSet != set.IDString() || st.Threshold != 2 || st.Shares != 4 {
		t.Fatalf("seal-status after the restart: %+v", st)
	}
	if _, errOut, code := unsealCLI(t, p, dataDir, old[0]); code == 0 || !strings.Contains(errOut, "belongs to share set "+oldSet.IDString()) {
		t.Fatalf("an old share after the rekey: exit %d, %s", code, errOut)
	}
	unsealAll(t, p, dataDir, "unseal with new shares 4 and 1", []string{fresh[3], fresh[0]})
	// The same root key: acme's master key, sealed under it before the
	// rekey, opens to make a data key.
	cust := rawClient(t, p, []byte(tn.CustodianCreds.CertPEM), []byte(tn.CustodianCreds.KeyPEM))
	var dk api.DataKey
	cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
	if dk.KeyID == "" || len(dk.EKB) == 0 {
		t.Fatalf("data key after the rekey: %+v", dk)
	}
}

// TestSealPassphraseAndSplitEndToEnd: the root key's way from a
// passphrase to shares, as an operator runs it. A KMS started with a
// passphrase keeps serving while `dcaas seal passphrase` wraps root.key
// under a new one (the next start takes only the new one), and while
// `dcaas seal split` moves it to 2-of-3 shares; the next start is sealed,
// opens with two shares and holds the tenant of before. Refusals (a wrong
// current passphrase, no new one, the same one, a split of a split dir, a
// passphrase change of a split dir) change nothing.
func TestSealPassphraseAndSplitEndToEnd(t *testing.T) {
	t.Parallel()
	e2e.Binary(t)
	base := t.TempDir()
	dataDir := filepath.Join(base, "kms")
	pass := func(name, value string) string {
		p := filepath.Join(base, name)
		if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	first, second, wrong := pass("first", "first passphrase"), pass("second", "second passphrase"), pass("wrong", "not it")
	p := e2e.StartKMS(t, e2e.KMSConfig{DataDir: dataDir, Flags: []string{"--seal-passphrase-file", first}})
	tn := e2e.NewTenant(t, p.Endpoint(t), "acme")
	newKey := func(p *e2e.KMS, when string) {
		t.Helper()
		var dk api.DataKey
		if err := rawClient(t, p, []byte(tn.CustodianCreds.CertPEM), []byte(tn.CustodianCreds.KeyPEM)).Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk); err != nil || dk.KeyID == "" {
			t.Fatalf("a data key %s: %+v, %v", when, dk, err)
		}
	}
	unchanged := func(what string, before []byte) {
		t.Helper()
		if !bytes.Equal(readFile(t, dataDir, "root.key"), before) {
			t.Fatalf("%s changed root.key", what)
		}
	}

	before := readFile(t, dataDir, "root.key")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"a wrong current passphrase", []string{"--seal-passphrase-file", wrong, "--new-passphrase-file", second}, "passphrase"},
		{"no new passphrase", []string{"--seal-passphrase-file", first}, "no new passphrase"},
		{"the same passphrase", []string{"--seal-passphrase-file", first, "--new-passphrase-file", first}, "is the current one"},
	} {
		if _, errOut, code := runDcaas(t, append([]string{"seal", "passphrase", "--data-dir", dataDir}, c.args...)...); code == 0 || !strings.Contains(errOut, c.want) {
			t.Fatalf("seal passphrase with %s: exit %d, %s; want it to say %q", c.name, code, errOut, c.want)
		}
		unchanged("a refused seal passphrase ("+c.name+")", before)
	}
	out, errOut, code := runDcaas(t, "seal", "passphrase", "--data-dir", dataDir, "--seal-passphrase-file", first, "--new-passphrase-file", second)
	if code != 0 || !strings.Contains(out, "wrapped under the new passphrase") {
		t.Fatalf("seal passphrase: exit %d, %s %s", code, out, errOut)
	}
	newKey(p, "while root.key changes under the running KMS")
	if _, err := file.Open(dataDir, secret.New([]byte("first passphrase"))); !errors.Is(err, file.ErrPassphrase) {
		t.Fatalf("the old passphrase after seal passphrase: %v, want ErrPassphrase", err)
	}
	p.Stop(t)
	p = e2e.StartKMS(t, e2e.KMSConfig{DataDir: dataDir, Flags: []string{"--seal-passphrase-file", second}})
	newKey(p, "after a restart with the new passphrase")

	sharesDir := filepath.Join(base, "shares")
	before = readFile(t, dataDir, "root.key")
	if _, errOut, code := runDcaas(t, "seal", "split", "--data-dir", dataDir, "--shares-dir", sharesDir, "--shares", "3", "--threshold", "2",
		"--seal-passphrase-file", first, "--listen", "127.0.0.1:0"); code == 0 || !strings.Contains(errOut, "passphrase") {
		t.Fatalf("seal split with the old passphrase: exit %d, %s", code, errOut)
	}
	unchanged("a refused seal split", before)
	if files, _ := filepath.Glob(filepath.Join(sharesDir, "unseal-share-*")); len(files) > 0 {
		t.Fatalf("a refused seal split left share files: %v", files)
	}
	out, errOut, code = runDcaas(t, "seal", "split", "--data-dir", dataDir, "--shares-dir", sharesDir, "--shares", "3", "--threshold", "2",
		"--seal-passphrase-file", second, "--listen", "127.0.0.1:0")
	if code != 0 || !strings.Contains(out, "dcaas seal split:") {
		t.Fatalf("seal split: exit %d, %s %s", code, out, errOut)
	}
	set, ok, err := file.SharesOf(dataDir)
	if err != nil || !ok || set.Shares != 3 || set.Threshold != 2 || !strings.Contains(out, "share-set="+set.IDString()) {
		t.Fatalf("root.key after seal split: %+v, %v, %v; printed %s", set, ok, err, out)
	}
	newKey(p, "while the running KMS's root.key is split")
	if _, errOut, code := runDcaas(t, "seal", "split", "--data-dir", dataDir, "--shares-dir", t.TempDir(), "--listen", "127.0.0.1:0"); code == 0 || !strings.Contains(errOut, "seal rekey") {
		t.Fatalf("seal split of a split data dir: exit %d, %s", code, errOut)
	}
	if _, errOut, code := runDcaas(t, "seal", "passphrase", "--data-dir", dataDir, "--new-passphrase-file", first); code == 0 || !strings.Contains(errOut, "seal rekey") {
		t.Fatalf("seal passphrase of a split data dir: exit %d, %s", code, errOut)
	}
	shares, err := filepath.Glob(filepath.Join(sharesDir, "unseal-share-*"))
	if err != nil || len(shares) != 3 {
		t.Fatalf("share files: %v, %v", shares, err)
	}
	p.Stop(t)
	p = e2e.StartKMS(t, e2e.KMSConfig{DataDir: dataDir, Sealed: true})
	if st := sealStatus(t, p, dataDir); !st.Sealed || st.ShareSet != set.IDString() {
		t.Fatalf("seal-status after the split: %+v", st)
	}
	unsealAll(t, p, dataDir, "unseal after the split", shares[1:])
	newKey(p, "after unsealing the split root key")
}
