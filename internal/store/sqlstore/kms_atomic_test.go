package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
)

// errInjected is the failure the fault store injects: the database going
// away in the middle of a transaction.
var errInjected = fmt.Errorf("injected failure: %w", store.ErrUnavailable)

// faults decides which write of the transactions (InTx) fails: the n-th,
// counted from when it is armed, before or after it reaches the database,
// or the commit.
type faults struct {
	mu     sync.Mutex
	armed  bool
	n      int  // the write to fail, 1-based; 0: the commit of the first transaction
	after  bool // fail after the write was made (its savepoint kept)
	writes int  // writes seen since armed
	fired  bool
	which  string // the method that failed
}

func (f *faults) arm(n int, after bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed, f.n, f.after, f.writes, f.fired, f.which = true, n, after, 0, false, ""
}

func (f *faults) disarm() (fired bool, which string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = false
	return f.fired, f.which
}

// write counts one write and says whether it fails, and when.
func (f *faults) write(method string) (before, after bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.armed || f.fired {
		return false, false
	}
	f.writes++
	if f.n != f.writes {
		return false, false
	}
	f.fired, f.which = true, method
	return !f.after, f.after
}

// commit says whether the commit fails.
func (f *faults) commit() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.armed || f.fired || f.n != 0 {
		return false
	}
	f.fired, f.which = true, "commit"
	return true
}

// faultStore is a store whose transactions fail where faults says. Writes
// outside transactions are not touched (the KMS's request handlers make
// none: see kms.reader).
type faultStore struct {
	store.Store
	f *faults
}

func (s *faultStore) InTx(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.Store.InTx(ctx, func(tx store.Tx) error {
		if err := fn(&faultTx{Tx: tx, f: s.f}); err != nil {
			return err
		}
		if s.f.commit() {
			return errInjected // as a failed COMMIT: nothing of fn stays
		}
		return nil
	})
}

// faultTx fails the write faults picks; every write method of store.Tx is
// here.
type faultTx struct {
	store.Tx
	f *faults
}

// do runs one write between the fault checks.
func (t *faultTx) do(method string, write func() error) error {
	before, after := t.f.write(method)
	if before {
		return errInjected
	}
	if err := write(); err != nil {
		return err
	}
	if after {
		return errInjected
	}
	return nil
}

func (t *faultTx) PutSettingIfAbsent(ctx context.Context, name string, value []byte) (v []byte, err error) {
	err = t.do("PutSettingIfAbsent", func() error { v, err = t.Tx.PutSettingIfAbsent(ctx, name, value); return err })
	return v, err
}
func (t *faultTx) CreateTenant(ctx context.Context, tn store.Tenant, mk store.MasterKey) error {
	return t.do("CreateTenant", func() error { return t.Tx.CreateTenant(ctx, tn, mk) })
}
func (t *faultTx) AddMasterKey(ctx context.Context, mk store.MasterKey) error {
	return t.do("AddMasterKey", func() error { return t.Tx.AddMasterKey(ctx, mk) })
}
func (t *faultTx) CreateApp(ctx context.Context, a store.App) error {
	return t.do("CreateApp", func() error { return t.Tx.CreateApp(ctx, a) })
}
func (t *faultTx) PutCert(ctx context.Context, c store.Cert) error {
	return t.do("PutCert", func() error { return t.Tx.PutCert(ctx, c) })
}
func (t *faultTx) RevokeCertsOf(ctx context.Context, kind, subject string, at time.Time) error {
	return t.do("RevokeCertsOf", func() error { return t.Tx.RevokeCertsOf(ctx, kind, subject, at) })
}
func (t *faultTx) RevokeCert(ctx context.Context, serial string, at time.Time) error {
	return t.do("RevokeCert", func() error { return t.Tx.RevokeCert(ctx, serial, at) })
}
func (t *faultTx) CreateKey(ctx context.Context, k store.Key, v store.KeyVersion) error {
	return t.do("CreateKey", func() error { return t.Tx.CreateKey(ctx, k, v) })
}
func (t *faultTx) AddKeyVersion(ctx context.Context, v store.KeyVersion) error {
	return t.do("AddKeyVersion", func() error { return t.Tx.AddKeyVersion(ctx, v) })
}
func (t *faultTx) DisableKey(ctx context.Context, id string, at time.Time) error {
	return t.do("DisableKey", func() error { return t.Tx.DisableKey(ctx, id, at) })
}
func (t *faultTx) SetMinDecryptionVersion(ctx context.Context, id string, v int, at time.Time) error {
	return t.do("SetMinDecryptionVersion", func() error { return t.Tx.SetMinDecryptionVersion(ctx, id, v, at) })
}
func (t *faultTx) AddKeyUsage(ctx context.Context, tenant string, counts []store.KeyUsage) (n int, err error) {
	err = t.do("AddKeyUsage", func() error { n, err = t.Tx.AddKeyUsage(ctx, tenant, counts); return err })
	return n, err
}
func (t *faultTx) AddReleasedUsage(ctx context.Context, tenant, instanceID, keyType string, counts []store.KeyUsage) (n int, err error) {
	err = t.do("AddReleasedUsage", func() error { n, err = t.Tx.AddReleasedUsage(ctx, tenant, instanceID, keyType, counts); return err })
	return n, err
}
func (t *faultTx) RecordReleases(ctx context.Context, id string, refs []store.KeyRef, at time.Time) error {
	return t.do("RecordReleases", func() error { return t.Tx.RecordReleases(ctx, id, refs, at) })
}
func (t *faultTx) PutOneTime(ctx context.Context, s store.OneTimeSecret) error {
	return t.do("PutOneTime", func() error { return t.Tx.PutOneTime(ctx, s) })
}
func (t *faultTx) ConsumeOneTime(ctx context.Context, kind string, hash []byte, now time.Time) (s store.OneTimeSecret, err error) {
	err = t.do("ConsumeOneTime", func() error { s, err = t.Tx.ConsumeOneTime(ctx, kind, hash, now); return err })
	return s, err
}
func (t *faultTx) DeleteExpiredOneTime(ctx context.Context, cutoff time.Time) (n int64, err error) {
	err = t.do("DeleteExpiredOneTime", func() error { n, err = t.Tx.DeleteExpiredOneTime(ctx, cutoff); return err })
	return n, err
}
func (t *faultTx) CreateInstance(ctx context.Context, in store.Instance) error {
	return t.do("CreateInstance", func() error { return t.Tx.CreateInstance(ctx, in) })
}
func (t *faultTx) EnrollInstance(ctx context.Context, kind string, hash []byte, in store.Instance, certs []store.Cert) error {
	return t.do("EnrollInstance", func() error { return t.Tx.EnrollInstance(ctx, kind, hash, in, certs) })
}
func (t *faultTx) RenewInstance(ctx context.Context, id, cert, wrapping string, certs []store.Cert) error {
	return t.do("RenewInstance", func() error { return t.Tx.RenewInstance(ctx, id, cert, wrapping, certs) })
}
func (t *faultTx) RevokeInstance(ctx context.Context, id string, at time.Time) error {
	return t.do("RevokeInstance", func() error { return t.Tx.RevokeInstance(ctx, id, at) })
}
func (t *faultTx) AppendAudit(ctx context.Context, build func(int64, []byte) (store.AuditRecord, error), sign store.AuditSigner) (r store.AuditRecord, err error) {
	err = t.do("AppendAudit", func() error { r, err = t.Tx.AppendAudit(ctx, build, sign); return err })
	return r, err
}
func (t *faultTx) PutAuditCheckpoint(ctx context.Context, cp store.AuditCheckpoint) (out store.AuditCheckpoint, err error) {
	err = t.do("PutAuditCheckpoint", func() error { out, err = t.Tx.PutAuditCheckpoint(ctx, cp); return err })
	return out, err
}
func (t *faultTx) Reseal(ctx context.Context, settings []string, fn func([]store.SealedValue) error) error {
	return t.do("Reseal", func() error { return t.Tx.Reseal(ctx, settings, fn) })
}

// snapshot is every row of every table but the audit log, as text.
func snapshot(t *testing.T, db *sql.DB, postgres bool) string {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`
	}
	tables := queryStrings(t, db, q)
	slices.Sort(tables)
	var b strings.Builder
	for _, table := range tables {
		// kms_leases: the KMS renews its liveness lease in the background,
		// whatever the calls under test do.
		if table == "audit" || table == "schema_migrations" || table == "kms_leases" || strings.HasPrefix(table, "sqlite_") {
			continue
		}
		rows, err := db.QueryContext(t.Context(), `SELECT * FROM `+table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%v", vals))
		}
		rows.Close()
		slices.Sort(lines)
		fmt.Fprintf(&b, "%s:\n%s\n", table, strings.Join(lines, "\n"))
	}
	return b.String()
}

func queryStrings(t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// okRecords counts the audit records of action with outcome ok.
func okRecords(t *testing.T, db *sql.DB, postgres bool, action string) int {
	t.Helper()
	q := `SELECT COUNT(*) FROM audit WHERE action = ? AND outcome = 'ok'`
	if postgres {
		q = strings.Replace(q, "?", "$1", 1)
	}
	var n int
	if err := db.QueryRowContext(t.Context(), q, action).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// atomicWorld is a KMS on a fault store, with a tenant, a custodian, a
// pipeline, an enrolled sidecar and a key.
type atomicWorld struct {
	env        *kmstest.Env
	cust, pipe *kmstest.Client
	custDN     string
	side       *kmstest.FakeSidecar
	sideClient *kmstest.Client
	key        api.DataKey
}

// TestKMSChangesCommitWithAudit: every change a KMS call makes is stored
// in one transaction with the call's audit record, on SQLite and
// PostgreSQL. For each call, a failure is injected at each write of its
// transaction in turn (before the write reaches the database, and after),
// and at the commit: each time the call fails and neither its change nor
// an "ok" audit record is stored, and once no failure hits it, the call
// succeeds and both are.
func TestKMSChangesCommitWithAudit(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		addr := b.fresh(t)
		st := b.mustOpen(t, addr)
		raw := b.raw(t, addr)
		postgres := b.name == "postgres"
		f := &faults{}
		never := make(chan time.Time)
		env := kmstest.Start(t, func(o *kms.Options) {
			o.Store = &faultStore{Store: st, f: f}
			o.Config.CertTicks, o.Config.AuditCheckpointTicks = never, never
		})
		w := &atomicWorld{env: env}
		env.Tenant(t, "acme")
		var creds api.AppCredentials
		w.cust, creds = env.App(t, "acme", "payments-api", api.RoleCustodian)
		w.custDN = creds.DN
		w.pipe, _ = env.App(t, "acme", "deployer", api.RolePipeline)
		w.side = kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
		var tok api.EnrollmentToken
		w.pipe.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: w.custDN}, &tok)
		w.side.Enroll(t, env.Anonymous(), tok.Token)
		w.sideClient = w.side.Client(t, env)
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true}, &w.key)

		for _, c := range atomicCalls {
			t.Run(c.action, func(t *testing.T) {
				call := c.setup(t, w)
				succeeded := false
				for n := 0; n < 20 && !succeeded; n++ {
					for _, after := range []bool{false, true} {
						if n == 0 && after {
							continue // the commit fails only one way
						}
						before, beforeOK := snapshot(t, raw, postgres), okRecords(t, raw, postgres, c.action)
						f.arm(n, after)
						err := call()
						fired, which := f.disarm()
						changed := snapshot(t, raw, postgres) != before
						recorded := okRecords(t, raw, postgres, c.action) - beforeOK
						switch {
						case fired && err == nil:
							t.Errorf("%s failed inside the transaction (write %d, after=%t), yet the call succeeded", which, n, after)
						case !fired && err != nil:
							t.Fatalf("the call failed with no injected failure: %v", err)
						case err != nil && (changed || recorded != 0):
							t.Errorf("failure at %s (write %d, after=%t): the call failed (%v) but its change stayed (%t) or an ok record was stored (%d)", which, n, after, err, changed, recorded)
						case err == nil && (!changed || recorded != 1):
							t.Errorf("the call succeeded but changed the database: %t, with %d ok records, want both", changed, recorded)
						}
						if err == nil {
							succeeded = true
							break
						}
						var ae *api.Error
						if !errors.As(err, &ae) || ae.Code != api.CodeUnavailable {
							t.Errorf("failure at %s: the call answered %v, want 503 unavailable", which, err)
						}
					}
				}
				if !succeeded {
					t.Fatal("the call never succeeded")
				}
			})
		}
	})
}

// atomicCalls are the calls TestKMSChangesCommitWithAudit breaks: setup
// prepares (with no failure injected) and returns the call, which must
// succeed once no failure hits it, and may be made again after a failure.
var atomicCalls = []struct {
	action string
	setup  func(t *testing.T, w *atomicWorld) func() error
}{
	{"tenant.create", func(t *testing.T, w *atomicWorld) func() error {
		return func() error {
			return w.env.Admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "initech"}, nil)
		}
	}},
	{"tenant.rotate_master_key", func(t *testing.T, w *atomicWorld) func() error {
		return func() error { return w.env.Admin.Do("POST", "/v1/tenants/acme/master-key/rotate", nil, nil) }
	}},
	{"app.create", func(t *testing.T, w *atomicWorld) func() error {
		return func() error {
			return w.env.Admin.Do("POST", "/v1/tenants/acme/apps", api.CreateAppRequest{Name: "ledger", Role: api.RoleCustodian}, nil)
		}
	}},
	{"app.renew_certificate", func(t *testing.T, w *atomicWorld) func() error {
		return func() error { return w.cust.Do("POST", "/v1/apps/self/certificate", nil, nil) }
	}},
	{"datakey.create", func(t *testing.T, w *atomicWorld) func() error {
		return func() error {
			return w.cust.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyEd25519}, nil)
		}
	}},
	{"datakey.new_version", func(t *testing.T, w *atomicWorld) func() error {
		var dk api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
		return func() error {
			return w.cust.Do("POST", "/v1/datakeys/"+dk.KeyID+"/versions", api.NewVersionRequest{EKB: dk.EKB}, nil)
		}
	}},
	{"datakey.min_decryption_version", func(t *testing.T, w *atomicWorld) func() error {
		var dk api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
		w.cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/versions", api.NewVersionRequest{EKB: dk.EKB}, nil)
		return func() error {
			return w.cust.Do("POST", "/v1/datakeys/"+dk.KeyID+"/min-decryption-version", api.MinDecryptionVersionRequest{Version: 2}, nil)
		}
	}},
	{"datakey.disable", func(t *testing.T, w *atomicWorld) func() error {
		var dk api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
		return func() error { return w.cust.Do("DELETE", "/v1/datakeys/"+dk.KeyID, nil, nil) }
	}},
	{"enrollment.token", func(t *testing.T, w *atomicWorld) func() error {
		return func() error {
			return w.pipe.Do("POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: w.custDN}, nil)
		}
	}},
	{"enrollment.challenge", func(t *testing.T, w *atomicWorld) func() error {
		return func() error { return w.env.Anonymous().Do("POST", "/v1/enrollment/challenge", nil, nil) }
	}},
	{"enrollment.enroll", func(t *testing.T, w *atomicWorld) func() error {
		var tok api.EnrollmentToken
		w.pipe.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: w.custDN}, &tok)
		s := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
		// The same token each time: a failed enrollment did not use it.
		return func() error { return w.env.Anonymous().Do("POST", "/v1/enrollment", s.EnrollRequest(tok.Token), nil) }
	}},
	{"instance.revoke", func(t *testing.T, w *atomicWorld) func() error {
		s, _ := w.env.EnrolledFake(t, w.pipe, w.custDN)
		return func() error { return w.env.Admin.Do("DELETE", "/v1/instances/"+s.Enrollment.InstanceID, nil, nil) }
	}},
	{"instance.retire", func(t *testing.T, w *atomicWorld) func() error {
		_, c := w.env.EnrolledFake(t, w.pipe, w.custDN)
		return func() error { return c.Do("DELETE", "/v1/instances/self", nil, nil) }
	}},
	{"grant.create", func(t *testing.T, w *atomicWorld) func() error {
		return func() error {
			return w.cust.Do("POST", "/v1/grants", api.GrantRequest{InstanceID: w.side.Enrollment.InstanceID, EKBs: [][]byte{w.key.EKB}}, nil)
		}
	}},
	{"keys.load", func(t *testing.T, w *atomicWorld) func() error {
		var dk api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
		var g api.Grant
		w.cust.MustDo(t, "POST", "/v1/grants", api.GrantRequest{InstanceID: w.side.Enrollment.InstanceID, EKBs: [][]byte{dk.EKB}}, &g)
		me := api.PublicKey{KEM: w.side.KEM, PublicKey: w.side.KEMKey.PublicKey().Bytes()}
		// The same grant each time: a failed load did not use it.
		return func() error {
			return w.sideClient.Do("POST", "/v1/keys/load", api.LoadRequest{Grant: g.Grant, EKBs: [][]byte{dk.EKB}, Recipient: me}, nil)
		}
	}},
	{"keys.rewrap", func(t *testing.T, w *atomicWorld) func() error {
		var dk api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
		return func() error {
			return w.cust.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dk.EKB}, WrappingCertPEM: w.side.Enrollment.WrappingCertPEM}, nil)
		}
	}},
	{"crypto.encrypt", func(t *testing.T, w *atomicWorld) func() error {
		return func() error {
			return w.cust.Do("POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{EKB: w.key.EKB}, Plaintext: []byte("x")}, nil)
		}
	}},
	{"usage.report", func(t *testing.T, w *atomicWorld) func() error {
		// Usage counts only for versions released to the reporter.
		w.cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{w.key.EKB}, WrappingCertPEM: w.side.Enrollment.WrappingCertPEM}, nil)
		return func() error {
			return w.sideClient.Do("POST", "/v1/usage", api.UsageReport{Counts: []api.UsageCount{{KeyID: w.key.KeyID, Version: 1, Encryptions: 3, Bytes: 30}}}, nil)
		}
	}},
	{"ca.prepare", func(t *testing.T, w *atomicWorld) func() error {
		return func() error { return w.env.Admin.Do("POST", "/v1/ca/prepare", nil, nil) }
	}},
	{"audit.checkpoint", func(t *testing.T, w *atomicWorld) func() error {
		return func() error { return w.env.Admin.Do("POST", "/v1/audit/checkpoints", nil, nil) }
	}},
}
