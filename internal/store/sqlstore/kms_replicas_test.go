package sqlstore_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/seal/file"
	"github.com/dcaas/dcaas/internal/store/pgtest"
)

// TestKMSReplicas runs two KMSs, each with its own data dir and TLS
// listener, on one PostgreSQL database, as two replicas behind a load
// balancer: they share the CA and every tenant, app and token, and a token
// minted on one is consumed exactly once when enrollments race on both.
//
// The replicas share the root key by copying root.key from the first data
// dir into the second before it opens: the file seal keeps the root key in
// the data dir. (An HSM seal shares it properly.)
func TestKMSReplicas(t *testing.T) {
	a, b := replicaPairWith(t, pgtest.DSN(t), nil, nil)

	if !bytes.Equal(a.CAPEM, b.CAPEM) {
		t.Fatalf("replica B has CA\n%s\nwant replica A's\n%s", b.CAPEM, a.CAPEM)
	}
	if !a.Server().Initialized || b.Server().Initialized {
		t.Errorf("Initialized = %t, %t; want only replica A to create the CA",
			a.Server().Initialized, b.Server().Initialized)
	}

	// A tenant made on A, its custodian on B, a pipeline on A.
	a.Tenant(t, "acme")
	_, cust := b.App(t, "acme", "payments", api.RoleCustodian)
	pipe, _ := a.App(t, "acme", "deployer", api.RolePipeline)
	var tok api.EnrollmentToken
	pipe.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: cust.DN}, &tok)

	// 50 sidecars race to enroll with that one token, half through each
	// replica.
	const n = 50
	envs := []*kmstest.Env{a, b}
	anon := []*kmstest.Client{a.Anonymous(), b.Anonymous()}
	sidecars := make([]*kmstest.FakeSidecar, n)
	for i := range sidecars {
		sidecars[i] = kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range sidecars {
		wg.Go(func() {
			<-start
			errs[i] = anon[i%2].Do("POST", "/v1/enrollment", s.EnrollRequest(tok.Token), &s.Enrollment)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		var ae *api.Error
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("enrollments #%d and #%d both succeeded with one token", winner, i)
			}
			winner = i
		case !errors.As(err, &ae) || ae.Code != api.CodeAlreadyUsed:
			t.Errorf("enrollment #%d (replica %c) = %v, want success or %s", i, 'A'+i%2, err, api.CodeAlreadyUsed)
		}
	}
	if winner < 0 {
		t.Fatalf("no enrollment of %d succeeded", n)
	}

	// Both replicas know the one instance, and it authenticates on the
	// replica it did not enroll through.
	for r, e := range envs {
		var list api.Instances
		e.Admin.MustDo(t, "GET", "/v1/instances", nil, &list)
		if len(list.Instances) != 1 || list.Instances[0].InstanceID != sidecars[winner].Enrollment.InstanceID {
			t.Errorf("replica %c lists instances %+v, want only %s", 'A'+r, list.Instances, sidecars[winner].Enrollment.InstanceID)
		}
	}
	other := envs[(winner+1)%2]
	if err := sidecars[winner].Client(t, other).Do("GET", "/v1/revocations", nil, nil); err != nil {
		t.Errorf("the enrolled sidecar on the other replica: GET /v1/revocations = %v, want nil", err)
	}

	// Both sign the one audit log with one audit key, made once.
	key := a.Server().KMS.AuditKey()
	if !b.Server().KMS.AuditKey().Equal(key) {
		t.Errorf("replica B signs with audit key %s, replica A with %s", b.Server().KMS.AuditKey().ID(), key.ID())
	}
	res, err := audit.Verify(t.Context(), a.Server().Store, key)
	if err != nil || res.Legacy != 0 || res.Records < n {
		t.Errorf("audit.Verify(shared log) = %+v, %v", res, err)
	}
	kmstest.WantAuditRecords(t, a.Server().Store, audit.ActionKeyCreated, 1)
}

// TestKMSReplicasStartTogether: two replicas opening one new PostgreSQL
// database at the same moment agree on one audit key, made once, with one
// creation record (the key and its record commit together).
func TestKMSReplicasStartTogether(t *testing.T) {
	dsn := pgtest.DSN(t)
	dirA := filepath.Join(t.TempDir(), "kms-a")
	fs, err := file.Open(dirA, nil) // makes root.key, to share
	if err != nil {
		t.Fatal(err)
	}
	fs.Close()
	dirB := replicaDir(t, dirA)
	var srvs [2]*kms.Server
	var errs [2]error
	var wg sync.WaitGroup
	for i, dir := range []string{dirA, dirB} {
		st := openPostgres(t, dsn)
		t.Cleanup(func() { st.Close() })
		wg.Go(func() {
			srvs[i], errs[i] = datadir.Open(t.Context(), kms.Options{DataDir: dir, Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		})
	}
	wg.Wait()
	for _, srv := range srvs { // the one that opened is closed even if the other failed
		if srv != nil {
			defer srv.Close()
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("datadir.Open(replica %c) = %v", 'A'+i, err)
		}
	}
	key := srvs[0].KMS.AuditKey()
	if !srvs[1].KMS.AuditKey().Equal(key) {
		t.Fatalf("the replicas made two audit keys: %s and %s", key.ID(), srvs[1].KMS.AuditKey().ID())
	}
	res, err := audit.Verify(t.Context(), srvs[0].Store, key)
	if err != nil {
		t.Fatalf("audit.Verify = %+v, %v", res, err)
	}
	recs, err := srvs[0].Store.AuditAfter(t.Context(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].Action != audit.ActionKeyCreated {
		t.Errorf("record 1 is %s, want %s", recs[0].Action, audit.ActionKeyCreated)
	}
	for _, r := range recs[1:] {
		if r.Action == audit.ActionKeyCreated {
			t.Errorf("a second %s record: %d", audit.ActionKeyCreated, r.Seq)
		}
	}
}
