package e2e_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/e2e"
)

// TestSeedKDFv2Processes is issue 16 item 6 over real processes (`dcaas
// kms serve`, two `dcaas sidecar serve`): two custodians of one tenant
// derive from one seed and get different keys, neither sidecar opens the
// other's ciphertext; v1, asked for by name, is still the tenant-wide key;
// a custodian's keys survive a KMS restart (its seed key is stored); a
// policy with v1 is refused.
func TestSeedKDFv2Processes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	k := e2e.StartKMS(t, e2e.KMSConfig{})
	tn := e2e.NewTenant(t, k.Endpoint(t), "acme")
	ledgerCreds, ledger := tn.App(t, "ledger", api.RoleCustodian)
	tok, err := tn.Pipeline.CreateEnrollmentToken(ctx, api.CreateTokenRequest{CustodianDN: ledgerCreds.DN})
	if err != nil {
		t.Fatal(err)
	}
	a := tn.StartSidecar(t, e2e.SidecarConfig{Name: "sidecar-payments"}).Client(t)
	b := tn.StartSidecar(t, e2e.SidecarConfig{Name: "sidecar-ledger", Token: tok.Token}).Client(t)
	seed := bytes.Repeat([]byte{0x5e}, 32)
	pt := []byte("PAN 4111 1111 1111 1111")

	derive := func(kms *client.KMS, sc *client.Sidecar, s api.Seed) string {
		t.Helper()
		ids, err := client.LoadBySeeds(ctx, kms, sc, []api.Seed{s})
		if err != nil || len(ids) != 1 {
			t.Fatalf("LoadBySeeds(kdf %q) = %v, %v; want one key", s.KDF, ids, err)
		}
		return ids[0]
	}
	v2 := api.Seed{Seed: seed, Type: api.KeyAES256GCM}
	idA, idB := derive(tn.Custodian, a, v2), derive(ledger, b, v2)
	if idA == idB {
		t.Fatalf("custodians payments-api and ledger derived the same key %s from one seed", idA)
	}
	ct, err := a.Encrypt(ctx, api.KeyRef{KeyID: idA}, pt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Decrypt(ctx, api.KeyRef{}, ct.Ciphertext, nil); err == nil {
		t.Fatalf("ledger's sidecar decrypted payments-api's ciphertext: %q", got)
	}

	v1 := v2
	v1.KDF = api.SeedKDFv1
	oldA, oldB := derive(tn.Custodian, a, v1), derive(ledger, b, v1)
	if oldA != oldB || oldA == idA {
		t.Fatalf("v1 derived %s and %s (v2: %s); want one tenant-wide key, not v2's", oldA, oldB, idA)
	}
	old, err := a.Encrypt(ctx, api.KeyRef{KeyID: oldA}, pt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Decrypt(ctx, api.KeyRef{}, old.Ciphertext, nil); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("v1 data across custodians = %q, %v; want the plaintext (the tenant-wide key of old data)", got, err)
	}

	k.Stop(t)
	k.Restart(t)
	if again := derive(tn.Custodian, a, v2); again != idA {
		t.Fatalf("after a KMS restart payments-api derived %s, want %s", again, idA)
	}
	if got, err := a.Decrypt(ctx, api.KeyRef{}, ct.Ciphertext, nil); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Decrypt after re-deriving = %q, %v", got, err)
	}

	withPolicy := v1
	withPolicy.Policy = &api.Policy{Rules: []api.PolicyRule{{Principals: []string{tn.CustodianCreds.DN}, Actions: []api.Action{api.ActionDecrypt}}}}
	_, err = client.LoadBySeeds(ctx, tn.Custodian, a, []api.Seed{withPolicy})
	if e := (*client.Error)(nil); !errors.As(err, &e) || e.Code != api.CodeInvalidArgument || e.Status != 400 {
		t.Fatalf("v1 with a policy = %v, want invalid_argument (400)", err)
	}
}
