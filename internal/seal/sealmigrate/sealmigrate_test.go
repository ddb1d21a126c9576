package sealmigrate_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/seal/file"
	"github.com/dcaas/dcaas/internal/seal/pkcs11"
	"github.com/dcaas/dcaas/internal/seal/pkcs11/pkcs11test"
	"github.com/dcaas/dcaas/internal/seal/sealmigrate"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pkcs11test.Cleanup()
	os.Exit(code)
}

// world is a file-sealed KMS with two tenants, a rotated master key, data
// keys under both master key versions, and an enrolled sidecar.
type world struct {
	env   *kmstest.Env
	cust  *kmstest.Client
	side  *kmstest.FakeSidecar
	ekbs  [][]byte
	seed  []byte
	caPEM []byte
}

func newWorld(t *testing.T) *world {
	t.Helper()
	env := kmstest.Start(t, nil)
	env.Tenant(t, "acme")
	env.Tenant(t, "globex")
	cust, creds := env.App(t, "acme", "payments", api.RoleCustodian)
	pipe, _ := env.App(t, "acme", "deployer", api.RolePipeline)
	side, _ := env.EnrolledFake(t, pipe, creds.DN)
	w := &world{env: env, cust: cust, side: side, seed: bytes.Repeat([]byte("seed"), 8), caPEM: env.CAPEM}
	w.newKeys(t, api.KeyAES256GCM, api.KeyEd25519)
	env.Admin.MustDo(t, "POST", "/v1/tenants/acme/master-key/rotate", nil, nil)
	w.newKeys(t, api.KeyAES256GCM, api.KeyHMACSHA256)
	return w
}

// newKeys creates data keys and keeps their EKBs.
func (w *world) newKeys(t *testing.T, types ...api.KeyType) {
	t.Helper()
	for _, typ := range types {
		var dk api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: typ}, &dk)
		w.ekbs = append(w.ekbs, dk.EKB)
	}
}

// release rewraps every EKB to the sidecar and returns the keys (which
// the test's cleanup wipes); the tenant master keys must open for it.
func (w *world) release(t *testing.T) []*secret.Bytes {
	t.Helper()
	return w.side.Release(t, w.cust, w.ekbs)
}

// seedKeyID grants and derives the world's seed key and returns its id, a
// MAC under the tenant HMAC key: the same id means the same HMAC key.
func (w *world) seedKeyID(t *testing.T) string {
	t.Helper()
	var g api.Grant
	w.cust.MustDo(t, "POST", "/v1/grants", api.GrantRequest{InstanceID: w.side.Enrollment.InstanceID, Seeds: [][]byte{w.seed}}, &g)
	eph, err := kcrypto.GenerateKEMKey(kcrypto.DefaultKEM())
	if err != nil {
		t.Fatal(err)
	}
	var out api.WrappedKeys
	w.side.Client(t, w.env).MustDo(t, "POST", "/v1/keys/derive", api.DeriveRequest{
		Grant: g.Grant,
		Seeds: []api.Seed{
			{Seed: w.seed, Type: api.KeyAES256GCM, KDF: api.SeedKDFv1}, // under the tenant HMAC key
			{Seed: w.seed, Type: api.KeyAES256GCM, KDF: api.SeedKDFv2}, // under the custodian seed key
		},
		Recipient: api.PublicKey{KEM: kcrypto.DefaultKEM(), PublicKey: eph.PublicKey().Bytes()},
	}, &out)
	return out.Keys[0].Metadata.KeyID + " (v1), " + out.Keys[1].Metadata.KeyID + " (v2)"
}

// importParameters asks for tenant acme's import parameters (which opens
// its sealed import keys, making them first).
func (w *world) importParameters(t *testing.T) api.ImportParameters {
	t.Helper()
	var p api.ImportParameters
	w.cust.MustDo(t, "GET", "/v1/tenants/acme/import-parameters", nil, &p)
	return p
}

func (w *world) health(t *testing.T) api.Health {
	t.Helper()
	var h api.Health
	w.env.Anonymous().MustDo(t, "GET", "/healthz", nil, &h)
	return h
}

// hsm opens the test token's root key of t (created on first use).
func hsm(t *testing.T, create bool) *pkcs11.Sealer {
	t.Helper()
	tk := pkcs11test.Start(t)
	pin := tk.PIN()
	defer pin.Wipe()
	s, err := pkcs11.Open(pkcs11.Config{ModulePath: tk.Module, TokenLabel: tk.Label, PIN: pin, KeyLabel: pkcs11test.KeyLabel(t), Create: create})
	if err != nil {
		t.Fatalf("pkcs11.Open() = %v", err)
	}
	return s
}

// openStopped opens the stopped world's store and file seal.
func openStopped(t *testing.T, w *world) (*sqlstore.DB, *file.Sealer) {
	t.Helper()
	st, err := sqlstore.OpenSQLite(t.Context(), filepath.Join(w.env.DataDir, kms.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fs, err := file.Open(w.env.DataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return st, fs
}

// stopForMigration stops w's KMS and opens what a migration works on: its
// store, its file seal (from) and the test token's root key (to). At
// cleanup the KMS, which a test may have restarted on the token, stops
// before the token's seal closes.
func stopForMigration(t *testing.T, w *world) (*sqlstore.DB, *file.Sealer, *pkcs11.Sealer) {
	t.Helper()
	w.env.Stop()
	st, from := openStopped(t, w)
	to := hsm(t, true)
	t.Cleanup(func() {
		w.env.Stop()
		to.Close()
	})
	return st, from, to
}

// snapshot returns every sealed value of st, read through store.Sealed by
// a reseal that then refuses.
func snapshot(t *testing.T, st store.Store) []store.SealedValue {
	t.Helper()
	stop := errors.New("snapshot only")
	var out []store.SealedValue
	err := st.Reseal(t.Context(), []string{"ca"}, func(values []store.SealedValue) error {
		for _, v := range values {
			v.Value = bytes.Clone(v.Value)
			out = append(out, v)
		}
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Reseal(snapshot) = %v", err)
	}
	return out
}

func TestMigrateToHSM(t *testing.T) {
	w := newWorld(t)
	before := w.release(t)
	seedID := w.seedKeyID(t)
	// The tenant's BYOK import keys (made at the first ask) are sealed too.
	importBefore := w.importParameters(t)
	// A rotated audit key: the log's first key is kept, sealed, for
	// verifiers (DIR/audit-key.pem), and must move to the HSM too.
	w.env.Admin.MustDo(t, "POST", "/v1/audit/key/rotate", nil, nil)
	if h := w.health(t); h.Seal != "file" {
		t.Fatalf("/healthz seal = %q before the migration, want file", h.Seal)
	}
	st, from, to := stopForMigration(t, w)
	old := snapshot(t, st)
	report, err := sealmigrate.Migrate(t.Context(), st, from, to)
	if err != nil {
		t.Fatalf("Migrate() = %v", err)
	}
	want := sealmigrate.Report{From: "file", To: "pkcs11", MasterKeys: 3, HMACKeys: 2, CAKeys: 1, AuditKeys: 2, ImportKeys: 2, SeedKeys: 1}
	if report != want {
		t.Errorf("Migrate() report = %+v, want %+v", report, want)
	}
	migrated := snapshot(t, st)
	for i := range old {
		if bytes.Equal(old[i].Value, migrated[i].Value) {
			t.Errorf("%+v was not re-sealed", old[i])
		}
	}
	// A second run finds nothing under the file seal and changes nothing.
	again, err := sealmigrate.Migrate(t.Context(), st, from, to)
	if wantAgain := (sealmigrate.Report{From: "file", To: "pkcs11", Already: want.Items()}); err != nil || again != wantAgain {
		t.Errorf("second Migrate() = %+v, %v, want %+v", again, err, wantAgain)
	}
	for i, v := range snapshot(t, st) {
		if !bytes.Equal(v.Value, migrated[i].Value) {
			t.Errorf("the second Migrate() changed %+v", v)
		}
	}
	// The file seal no longer opens the data dir.
	fileOpts := kms.Options{DataDir: w.env.DataDir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if srv, err := datadir.Open(t.Context(), fileOpts); err == nil {
		srv.Close()
		t.Error("datadir.Open with the file seal succeeded after the migration")
	}
	st.Close()

	w.env.Opts.Sealer = to
	w.env.Restart()
	if h := w.health(t); h.Seal != "pkcs11" {
		t.Errorf("/healthz seal = %q after the migration, want pkcs11", h.Seal)
	}
	kmstest.SameKeys(t, "after the migration", w.release(t), before)
	if got := w.seedKeyID(t); got != seedID {
		t.Errorf("seed key ids = %s after the migration, want %s (the tenant HMAC key or the custodian seed key changed)", got, seedID)
	}
	// The import keys open under the new seal: the same public keys.
	if got := w.importParameters(t); got.RSAPublicKeyPEM != importBefore.RSAPublicKeyPEM || !bytes.Equal(got.HPKEPublicKey.PublicKey, importBefore.HPKEPublicKey.PublicKey) {
		t.Error("the tenant's import public keys changed in the migration")
	}
	caPEM, err := os.ReadFile(filepath.Join(w.env.DataDir, kms.CAFile))
	if err != nil || !bytes.Equal(caPEM, w.caPEM) {
		t.Errorf("ca.pem changed in the migration (%v)", err)
	}
	// New material is sealed by the HSM and survives a restart.
	w.newKeys(t, api.KeyAES256GCM)
	w.env.Admin.MustDo(t, "POST", "/v1/tenants/acme/master-key/rotate", nil, nil)
	w.newKeys(t, api.KeyEd25519)
	w.env.Tenant(t, "initech")
	all := w.release(t)
	w.env.Restart()
	kmstest.SameKeys(t, "after a restart on the HSM", w.release(t), all)
}

// faulty is a new seal that fails: its Seal after sealsLeft seals, or its
// Open gives back other bytes when garble is set.
type faulty struct {
	seal.Sealer
	sealsLeft int
	garble    bool
}

var errHSMDown = errors.New("HSM unreachable")

func (f *faulty) Seal(ctx context.Context, pt *secret.Bytes, aad []byte) ([]byte, error) {
	if f.sealsLeft == 0 {
		return nil, errHSMDown
	}
	f.sealsLeft--
	return f.Sealer.Seal(ctx, pt, aad)
}

func (f *faulty) Open(ctx context.Context, sealed, aad []byte) (*secret.Bytes, error) {
	pt, err := f.Sealer.Open(ctx, sealed, aad)
	if err == nil && f.garble {
		pt.Expose()[0] ^= 1
	}
	return pt, err
}

func TestFailedMigrationChangesNothing(t *testing.T) {
	w := newWorld(t)
	before := w.release(t)
	st, from, to := stopForMigration(t, w)
	want := snapshot(t, st)

	otherRoot, err := file.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer otherRoot.Close()
	tests := []struct {
		name     string
		from, to seal.Sealer
		want     error
		step     string
	}{
		{"HSM fails midway", from, &faulty{Sealer: to, sealsLeft: 4}, errHSMDown, "seal"},
		{"HSM fails at once", from, &faulty{Sealer: to}, errHSMDown, "seal"},
		{"new seal garbles", from, &faulty{Sealer: to, sealsLeft: -1, garble: true}, sealmigrate.ErrVerify, "verify"},
		{"wrong old seal", otherRoot, to, seal.ErrOpen, "open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			report, err := sealmigrate.Migrate(t.Context(), st, tt.from, tt.to)
			var ie *sealmigrate.ItemError
			if !errors.Is(err, tt.want) || !errors.As(err, &ie) || ie.Step != tt.step {
				t.Fatalf("Migrate() = %v, want %v at step %s", err, tt.want, tt.step)
			}
			if report != (sealmigrate.Report{}) {
				t.Errorf("Migrate() report = %+v on failure, want zero", report)
			}
			got := snapshot(t, st)
			if len(got) != len(want) {
				t.Fatalf("store holds %d sealed values, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i].Value, want[i].Value) {
					t.Fatalf("a failed migration changed %+v", want[i])
				}
			}
		})
	}
	if _, err := sealmigrate.Migrate(t.Context(), st, from, from); err == nil {
		t.Error("Migrate(from, from) succeeded")
	}
	// An HSM that refuses the PIN or lacks the key never gets to migrate.
	tk := pkcs11test.Start(t)
	for _, cfg := range []pkcs11.Config{
		{ModulePath: tk.Module, TokenLabel: tk.Label, PIN: secret.Copy([]byte("wrong pin")), KeyLabel: pkcs11test.KeyLabel(t)},
		{ModulePath: tk.Module, TokenLabel: tk.Label, PIN: tk.PIN(), KeyLabel: "no such key"},
	} {
		if s, err := pkcs11.Open(cfg); !errors.Is(err, pkcs11.ErrPIN) && !errors.Is(err, pkcs11.ErrNoKey) {
			if s != nil {
				s.Close()
			}
			t.Errorf("pkcs11.Open(%q) = %v, want ErrPIN or ErrNoKey", cfg.KeyLabel, err)
		}
	}
	st.Close()
	w.env.Restart() // still on the file seal
	if h := w.health(t); h.Seal != "file" {
		t.Errorf("/healthz seal = %q, want file", h.Seal)
	}
	kmstest.SameKeys(t, "after the failed migrations", w.release(t), before)
}

// TestMigrateFinishesAHalfMigratedStore: a store left partly under the old
// seal after a migration (as when a replica that was not stopped wrote a
// tenant under it) is reported as such, a run that fails part-way changes
// nothing and says so, and the next run re-seals exactly what is left:
// every tenant opens under the new seal afterwards.
func TestMigrateFinishesAHalfMigratedStore(t *testing.T) {
	w := newWorld(t)
	before := w.release(t)
	st, from, to := stopForMigration(t, w)
	old := snapshot(t, st)
	first, err := sealmigrate.Migrate(t.Context(), st, from, to)
	if err != nil {
		t.Fatalf("Migrate() = %v", err)
	}
	// globex's HMAC key and master key go back under the file seal.
	err = st.Reseal(t.Context(), []string{"ca"}, func(values []store.SealedValue) error {
		for i := range values {
			if values[i].Tenant == "globex" {
				values[i].Value = old[i].Value
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	total := first.Items()
	census := func(when string, wantOld int) {
		t.Helper()
		c, err := sealmigrate.TakeCensus(t.Context(), st, from, to)
		if err != nil || c.Old != wantOld || c.New != total-wantOld || len(c.Neither) != 0 || c.Total != total {
			t.Fatalf("%s: TakeCensus() = %+v, %v; want %d under the old seal, %d under the new", when, c, err, wantOld, total-wantOld)
		}
	}
	census("half migrated", 2)
	// A run whose HSM fails after one seal: nothing changes.
	if r, err := sealmigrate.Migrate(t.Context(), st, from, &faulty{Sealer: to, sealsLeft: 1}); !errors.Is(err, errHSMDown) || r != (sealmigrate.Report{}) {
		t.Fatalf("Migrate(failing HSM) = %+v, %v; want errHSMDown and a zero report", r, err)
	}
	census("after the failed run", 2)
	r, err := sealmigrate.Migrate(t.Context(), st, from, to)
	want := sealmigrate.Report{From: "file", To: "pkcs11", MasterKeys: 1, HMACKeys: 1, Already: total - 2}
	if err != nil || r != want {
		t.Fatalf("Migrate(half migrated) = %+v, %v; want %+v", r, err, want)
	}
	census("after the re-run", 0)
	st.Close()
	w.env.Opts.Sealer = to
	w.env.Restart()
	kmstest.SameKeys(t, "after the re-run", w.release(t), before)
	// globex's master key opens: a data key of the tenant is made under it.
	gcust, _ := w.env.App(t, "globex", "billing", api.RoleCustodian)
	var dk api.DataKey
	gcust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
}
