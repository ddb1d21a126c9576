package kms_test

import (
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestGrantUsedByAFailedLoad: a load that fails after its grant was
// checked (here: it asks for an EKB the grant does not cover) uses the
// grant up all the same, in the transaction that stores its audit record
// of failure; that very request presented again is let through the grant
// again (and fails the same way), any other is told the grant is used. A
// grant presented by another instance is refused, audited, and not used.
func TestGrantUsedByAFailedLoad(t *testing.T) {
	env := kmstest.Start(t, nil)
	env.Tenant(t, "acme")
	cust, custCreds := env.App(t, "acme", "payments-api", api.RoleCustodian)
	side, sc := env.EnrolledFake(t, cust, custCreds.DN)
	_, other := env.EnrolledFake(t, cust, custCreds.DN)
	granted := cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	notGranted := cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	g := cust.MustGrant(t, api.GrantRequest{InstanceID: side.Enrollment.InstanceID, EKBs: [][]byte{granted.EKB}})
	me := api.PublicKey{KEM: side.KEM, PublicKey: side.KEMKey.PublicKey().Bytes()}
	load := func(c *kmstest.Client, ekb []byte, to api.PublicKey) error {
		return c.Do("POST", "/v1/keys/load", api.LoadRequest{Grant: g, EKBs: [][]byte{ekb}, Recipient: to}, nil)
	}
	fresh := func() api.PublicKey {
		_, pub := kmstest.NewRecipient(t)
		return pub
	}

	kmstest.WantError(t, load(other, granted.EKB, me), 403, api.CodeForbidden)
	kmstest.WantError(t, load(sc, notGranted.EKB, me), 403, api.CodeForbidden)
	// Used: another request is told so, the same one fails as before.
	kmstest.WantError(t, load(sc, granted.EKB, fresh()), 409, api.CodeAlreadyUsed)
	kmstest.WantError(t, load(sc, notGranted.EKB, me), 403, api.CodeForbidden)
	// The instance's own request, to the same recipient key, gets what the
	// grant covers.
	if err := load(sc, granted.EKB, me); err != nil {
		t.Fatalf("the request that used the grant, for what it covers: %v", err)
	}

	// Each call has its record: the two refusals of 403, the 409.
	var page api.AuditPage
	env.Admin.MustDo(t, "GET", "/v1/audit?after=0", nil, &page)
	var got []string
	for _, r := range page.Records {
		if r.Action == "keys.load" {
			got = append(got, r.Outcome+" "+r.Code)
		}
	}
	want := []string{"denied forbidden", "denied forbidden", "error already_used", "denied forbidden", "ok "}
	if len(got) != len(want) {
		t.Fatalf("keys.load records = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("keys.load record %d = %q, want %q", i, got[i], want[i])
		}
	}
}
