package sidecar_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestSeedKDFPerCustodian is issue 16 item 6 over a real KMS and real
// sidecars: two custodians of one tenant derive from the same seed and
// get different keys (SeedKDF v2, the default), so neither opens the
// other's data; v1, asked for by name, still gives the tenant-wide key of
// data made before v2; the key type and the policy change the key.
func TestSeedKDFPerCustodian(t *testing.T) {
	f := newFixture(t, nil)
	a := f.main(t) // custodian payments-api
	ledger, ledgerCreds := f.env.App(t, "acme", "ledger", api.RoleCustodian)
	b := f.startSidecar(t, ledgerCreds.DN, nil)
	seed := randomBytes(t, 32)
	pt := []byte("one custodian's data")

	// deriveOn derives seeds on s with a fresh grant of custodian c.
	deriveOn := func(t *testing.T, c *kmstest.Client, s *side, seeds ...api.Seed) ([]string, error) {
		t.Helper()
		g := mustGrant(t, c, api.GrantRequest{InstanceID: s.id, Seeds: [][]byte{seed}})
		return s.derive(t, g, seeds...)
	}
	mustDerive := func(t *testing.T, c *kmstest.Client, s *side, sd api.Seed) string {
		t.Helper()
		ids, err := deriveOn(t, c, s, sd)
		if err != nil || len(ids) != 1 {
			t.Fatalf("derive(%s, %s) = %v, %v; want one key", sd.Type, sd.KDF, ids, err)
		}
		return ids[0]
	}
	aes := api.Seed{Seed: seed, Type: api.KeyAES256GCM}

	t.Run("v2 separates custodians", func(t *testing.T) {
		idA := mustDerive(t, f.cust, a, aes)
		idB := mustDerive(t, ledger, b, aes)
		if idA == idB {
			t.Fatalf("custodians payments-api and ledger derived the same key %s from one seed", idA)
		}
		ctA := mustEncrypt(t, a.call(t), api.KeyRef{KeyID: idA}, pt, nil)
		if got, err := decrypt(b.call(t), api.KeyRef{}, ctA.Ciphertext, nil); err == nil {
			t.Fatalf("ledger's sidecar decrypted payments-api's ciphertext: %q", got)
		}
		ctB := mustEncrypt(t, b.call(t), api.KeyRef{KeyID: idB}, pt, nil)
		if got, err := decrypt(a.call(t), api.KeyRef{}, ctB.Ciphertext, nil); err == nil {
			t.Fatalf("payments-api's sidecar decrypted ledger's ciphertext: %q", got)
		}
		mustDecrypt(t, a.call(t), api.KeyRef{}, ctA.Ciphertext, nil, pt)
		mustDecrypt(t, b.call(t), api.KeyRef{}, ctB.Ciphertext, nil, pt)

		// The same custodian gets the same key again, on another
		// sidecar too; "v2" named is the default.
		a2 := f.startSidecar(t, f.creds.DN, nil)
		v2 := aes
		v2.KDF = api.SeedKDFv2
		if id := mustDerive(t, f.cust, a2, v2); id != idA {
			t.Fatalf("payments-api's second sidecar derived %s, want %s", id, idA)
		}
		mustDecrypt(t, a2.call(t), api.KeyRef{}, ctA.Ciphertext, nil, pt)
		if l := labelOf(t, a, idA); l != "v2" {
			t.Errorf("key %s has label dcaas.seed_kdf %q, want v2", idA, l)
		}
	})

	t.Run("v1 is the tenant-wide key of old data", func(t *testing.T) {
		v1 := aes
		v1.KDF = api.SeedKDFv1
		idA := mustDerive(t, f.cust, a, v1)
		idB := mustDerive(t, ledger, b, v1)
		if idA != idB {
			t.Fatalf("v1 derived %s and %s; want the same tenant-wide key", idA, idB)
		}
		if idV2 := mustDerive(t, f.cust, a, aes); idV2 == idA {
			t.Fatalf("v1 and v2 derived the same key %s", idA)
		}
		ct := mustEncrypt(t, a.call(t), api.KeyRef{KeyID: idA}, pt, nil)
		mustDecrypt(t, b.call(t), api.KeyRef{}, ct.Ciphertext, nil, pt)
		if l := labelOf(t, b, idB); l != "v1" {
			t.Errorf("key %s has label dcaas.seed_kdf %q, want v1", idB, l)
		}
	})

	t.Run("type and policy change the key", func(t *testing.T) {
		base := mustDerive(t, f.cust, a, aes)
		hmacID := mustDerive(t, f.cust, a, api.Seed{Seed: seed, Type: api.KeyHMACSHA256})
		decryptOnly := &api.Policy{Rules: []api.PolicyRule{{Principals: []string{f.creds.DN}, Actions: []api.Action{api.ActionDecrypt}}}}
		withPolicy := aes
		withPolicy.Policy = decryptOnly
		polID := mustDerive(t, f.cust, a, withPolicy)
		both := aes
		both.Policy = &api.Policy{Rules: []api.PolicyRule{{Principals: []string{f.creds.DN}, Actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}}}}
		bothID := mustDerive(t, f.cust, a, both)
		ids := map[string]string{base: "no policy"}
		for id, what := range map[string]string{hmacID: "hmac-sha256", polID: "decrypt-only policy", bothID: "encrypt+decrypt policy"} {
			if prev, ok := ids[id]; ok {
				t.Errorf("%s derived %s, the same key as %s", what, id, prev)
			}
			ids[id] = what
		}
		if again := mustDerive(t, f.cust, a, withPolicy); again != polID {
			t.Errorf("the same policy derived %s, then %s", polID, again)
		}
		// The policy travels with the key: decrypt-only refuses encrypt.
		_, err := encrypt(a.call(t), api.KeyRef{KeyID: polID}, pt, nil)
		kmstest.WantError(t, err, http.StatusForbidden, api.CodePolicyDenied)
		mustEncrypt(t, a.call(t), api.KeyRef{KeyID: bothID}, pt, nil)
	})

	t.Run("refusals", func(t *testing.T) {
		other := &api.Policy{Rules: []api.PolicyRule{{Principals: []string{ledgerCreds.DN}, Actions: []api.Action{api.ActionDecrypt}}}}
		for _, tt := range []struct {
			name   string
			seed   api.Seed
			status int
			code   api.Code
		}{
			{"unknown kdf", api.Seed{Seed: seed, Type: api.KeyAES256GCM, KDF: "v3"}, http.StatusBadRequest, api.CodeInvalidArgument},
			{"v1 with a policy", api.Seed{Seed: seed, Type: api.KeyAES256GCM, KDF: api.SeedKDFv1, Policy: other}, http.StatusBadRequest, api.CodeInvalidArgument},
			{"invalid policy", api.Seed{Seed: seed, Type: api.KeyAES256GCM, Policy: &api.Policy{}}, http.StatusBadRequest, api.CodeInvalidArgument},
			{"policy without the custodian", api.Seed{Seed: seed, Type: api.KeyAES256GCM, Policy: other}, http.StatusForbidden, api.CodePolicyDenied},
			{"underivable type", api.Seed{Seed: seed, Type: api.KeyECDSAP256}, http.StatusBadRequest, api.CodeInvalidArgument},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := deriveOn(t, f.cust, a, tt.seed)
				kmstest.WantError(t, err, tt.status, tt.code)
			})
		}
	})
}

// labelOf is the dcaas.seed_kdf label of key id as loaded in s.
func labelOf(t *testing.T, s *side, id string) string {
	t.Helper()
	for _, k := range s.keys(t) {
		if k.KeyID == id {
			return k.Labels["dcaas.seed_kdf"]
		}
	}
	t.Fatalf("key %s is not loaded", id)
	return ""
}

// TestSeedKDFv1TurnedOff: a KMS started with --seed-kdf-v1=false
// (kms.Config.RefuseSeedKDFv1) refuses a derivation that asks for v1,
// saying how to derive instead, and still derives v2.
func TestSeedKDFv1TurnedOff(t *testing.T) {
	f := newFixture(t, nil, func(o *kms.Options) { o.Config.RefuseSeedKDFv1 = true })
	a := f.main(t)
	seed := randomBytes(t, 32)
	g := mustGrant(t, f.cust, api.GrantRequest{InstanceID: a.id, Seeds: [][]byte{seed}})
	_, err := a.derive(t, g, api.Seed{Seed: seed, Type: api.KeyAES256GCM, KDF: api.SeedKDFv1})
	if api.CodeOf(err) != api.CodeForbidden || !strings.Contains(err.Error(), "seed-kdf-v1") {
		t.Fatalf("a v1 derivation on a KMS that turned v1 off: %v, want forbidden naming --seed-kdf-v1", err)
	}
	g = mustGrant(t, f.cust, api.GrantRequest{InstanceID: a.id, Seeds: [][]byte{seed}})
	if ids, err := a.derive(t, g, api.Seed{Seed: seed, Type: api.KeyAES256GCM}); err != nil || len(ids) != 1 {
		t.Fatalf("a v2 derivation: %v, %v", ids, err)
	}
}
