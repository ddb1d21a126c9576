package sqlstore_test

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// postApproved POSTs in as c with the approval header set to id.
func postApproved(c *kmstest.Client, id, path string, in any) error {
	with := *c
	with.Approval = id
	return with.Do("POST", path, in, nil)
}

// TestApprovalReplicasRace: two KMS replicas on one PostgreSQL database.
// Approvals given on both at once all count, and an approved export
// presented at once through both replicas runs exactly once: one answer,
// one audit record of success, every other call 409 already_used.
func TestApprovalReplicasRace(t *testing.T) {
	a, b := replicaPair(t, 0)

	a.Tenant(t, "acme")
	alice, _ := a.NewAdmin(t, "alice")
	_, bobCreds := a.NewAdmin(t, "bob")
	bob := b.Client([]byte(bobCreds.CertPEM), []byte(bobCreds.KeyPEM))
	alice.MustDo(t, "PUT", "/v1/tenants/acme/approval-policy", api.ApprovalPolicy{Quorum: 2, Approvers: []string{"CN=alice,O=dcaas", "CN=bob,O=dcaas"}}, nil)
	custA, creds := a.App(t, "acme", "payments", api.RoleCustodian)
	custB := b.Client([]byte(creds.CertPEM), []byte(creds.KeyPEM))
	dk := custB.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Exportable: true})

	hk, _ := kcrypto.GenerateKEMKey(kcrypto.DefaultKEM())
	pub, _ := kcrypto.MarshalKEMPublicKey(hk.PublicKey())
	exp := api.ExportRequest{EKB: dk.EKB, Wrapping: api.WrappingHPKE, PublicKey: &pub}
	body, _ := json.Marshal(exp)
	var ap api.Approval
	custA.MustDo(t, "POST", "/v1/approvals", api.ApprovalRequest{Action: api.ApprovalExport, Request: body}, &ap)

	var wg sync.WaitGroup
	for _, c := range []*kmstest.Client{alice, bob} {
		wg.Go(func() {
			if err := c.Do("POST", "/v1/approvals/"+ap.ID+"/approve", nil, nil); err != nil {
				t.Errorf("approve: %v", err)
			}
		})
	}
	wg.Wait()
	custB.MustDo(t, "GET", "/v1/approvals/"+ap.ID, nil, &ap)
	if ap.State != api.ApprovalApproved || len(ap.Approvals) != 2 {
		t.Fatalf("after approvals on both replicas: %+v", ap)
	}

	const n = 16
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		c := custA
		if i%2 == 1 {
			c = custB
		}
		wg.Go(func() {
			<-start
			errs[i] = postApproved(c, ap.ID, "/v1/datakeys/export", exp)
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case api.CodeOf(err) != api.CodeAlreadyUsed:
			t.Errorf("export %d = %v, want success or 409 already_used", i, err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d exports through two replicas ran, want exactly 1", ok, n)
	}
	var page api.AuditPage
	a.Admin.MustDo(t, "GET", "/v1/audit?after=0&limit=1000", nil, &page)
	exports := 0
	for _, r := range page.Records {
		if r.Action == "datakey.export" && r.Outcome == "ok" {
			exports++
		}
	}
	if exports != 1 {
		t.Fatalf("%d successful export records in the audit log, want 1", exports)
	}
}
