package sqlstore_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
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
	dsn := pgtest.DSN(t)
	stA, stB := openPostgres(t, dsn), openPostgres(t, dsn)
	t.Cleanup(func() { stA.Close(); stB.Close() }) // after both KMSs stop
	a := kmstest.Start(t, func(o *kms.Options) { o.Store = stA })

	dirB := filepath.Join(t.TempDir(), "kms-b")
	if err := os.MkdirAll(dirB, 0o700); err != nil {
		t.Fatal(err)
	}
	rootKey, err := os.ReadFile(filepath.Join(a.DataDir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "root.key"), rootKey, 0o600); err != nil {
		t.Fatal(err)
	}
	b := kmstest.Start(t, func(o *kms.Options) { o.DataDir, o.Store = dirB, stB })

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
}
