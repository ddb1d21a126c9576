package adversarial_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// relabel rewrites the tenant in an EKB's header (the rest unchanged), as a
// custodian of that tenant who got hold of another tenant's EKB would.
func relabel(t testing.TB, ekb []byte, tenant string) []byte {
	t.Helper()
	e, err := format.ParseEKB(ekb)
	if err != nil {
		t.Fatal(err)
	}
	e.Tenant = tenant
	return e.Marshal()
}

// TestCrossTenantEKB: a malicious custodian of tenant acme holds an EKB of
// tenant globex and tries every way to make the KMS release or use it.
// Plain cross-tenant rewrap and central use are in internal/kms
// TestRewrapRefusals/other_tenant's_EKB and sidecar TestCentralPath/another_tenant.
func TestCrossTenantEKB(t *testing.T) {
	w := newWorld(t)
	a := w.sidecar(t, w.payCreds.DN, "", nil)
	own := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	theirs := dataKey(t, w.gx, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	theirsRetained := dataKey(t, w.gx, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	ownRetained := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})

	t.Run("grant naming another tenant's EKB", func(t *testing.T) {
		_, err := grant(w.pay, api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{theirs.EKB}})
		kmstest.WantError(t, err, 403, api.CodeWrongTenant)
	})
	t.Run("another tenant's EKB under a grant for our own", func(t *testing.T) {
		g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{own.EKB}})
		err := a.do(t, "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: g, EKBs: [][]byte{theirs.EKB}}, nil)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
		a.wantNoKeys(t)
	})
	t.Run("EKB relabelled to our tenant", func(t *testing.T) {
		forged := relabel(t, theirs.EKB, "acme")
		_, err := rewrap(w.pay, a.cert, forged)
		kmstest.WantError(t, err, 400, api.CodeInvalidEKB)
		// The grant binds the forged bytes (they name our tenant), but the
		// KMS cannot open them under our master key.
		g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{forged}})
		err = a.do(t, "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: g, EKBs: [][]byte{forged}}, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidEKB)
		a.wantNoKeys(t)
		err = w.pay.Do("POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{EKB: forged}, Plaintext: []byte("x")}, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidEKB)
		// Relabelled the other way, our EKB does not open for them either.
		_, err = rewrap(w.gx, w.sidecar(t, w.gxCreds.DN, "", nil).cert, relabel(t, own.EKB, "globex"))
		kmstest.WantError(t, err, 400, api.CodeInvalidEKB)
	})
	t.Run("grant naming another tenant's retained key", func(t *testing.T) {
		_, err := grant(w.pay, api.GrantRequest{InstanceID: a.id, KeyIDs: []string{theirsRetained.KeyID}})
		kmstest.WantError(t, err, 404, api.CodeNotFound)
		// Nor can a grant for our own retained key be stretched to theirs.
		g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: a.id, KeyIDs: []string{ownRetained.KeyID}})
		err = a.do(t, "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: g, KeyIDs: []string{ownRetained.KeyID, theirsRetained.KeyID}}, nil)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
		a.wantNoKeys(t)
		// Central use by key id stays inside the tenant.
		err = w.pay.Do("POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: theirsRetained.KeyID}, Plaintext: []byte("x")}, nil)
		kmstest.WantError(t, err, 404, api.CodeNotFound)
	})
	t.Run("another tenant's sidecar presents our grant", func(t *testing.T) {
		g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{own.EKB}})
		gs := w.sidecar(t, w.gxCreds.DN, "", nil)
		err := gs.do(t, "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: g, EKBs: [][]byte{own.EKB}}, nil)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
		gs.wantNoKeys(t)
	})
}

// TestRewrapToSomeoneElsesSidecar: a custodian asks the KMS to rewrap its
// key to the wrapping certificate of a sidecar bound to another custodian
// — even one the key's policy names, so only the binding check can refuse
// it. (Without such a policy: internal/kms TestRewrapRefusals.)
func TestRewrapToSomeoneElsesSidecar(t *testing.T) {
	w := newWorld(t)
	ledger := w.sidecar(t, w.ledCreds.DN, "", nil)
	pol := &api.Policy{Rules: []api.PolicyRule{
		{Principals: []string{w.payCreds.DN}, Actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}},
		{Principals: []string{w.ledCreds.DN}, Actions: []api.Action{api.ActionDecrypt}},
	}}
	dk := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Policy: pol})

	_, err := rewrap(w.pay, ledger.cert, dk.EKB)
	kmstest.WantError(t, err, 403, api.CodeForbidden)
	_, err = grant(w.pay, api.GrantRequest{InstanceID: ledger.id, EKBs: [][]byte{dk.EKB}})
	kmstest.WantError(t, err, 403, api.CodeForbidden)
	// Another tenant's custodian, with its own key.
	gk := dataKey(t, w.gx, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	_, err = rewrap(w.gx, ledger.cert, gk.EKB)
	kmstest.WantError(t, err, 403, api.CodeWrongTenant)
	ledger.wantNoKeys(t)

	// Control: ledger itself may pull the key it is named in.
	ledger.load(t, w.led, dk)
	if ids := ledger.keyIDs(t); len(ids) != 1 {
		t.Fatalf("ledger's sidecar holds %v, want the shared key", ids)
	}
}

// TestWrappedKeysStayBound: what a rewrap returns opens only in the
// sidecar it was made for, only with the metadata it was made with, and
// only as the item it was made as. A custodian (the bound one, or one
// holding another's output) edits what it relays to the sidecar.
func TestWrappedKeysStayBound(t *testing.T) {
	w := newWorld(t)
	pol := &api.Policy{Rules: []api.PolicyRule{
		{Principals: []string{w.payCreds.DN}, Actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}},
		{Principals: []string{w.ledCreds.DN}, Actions: []api.Action{api.ActionDecrypt}},
	}}
	k1 := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Policy: pol})
	k2 := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Policy: pol})
	a := w.sidecar(t, w.payCreds.DN, "", nil)
	b := w.sidecar(t, w.payCreds.DN, "", nil)
	led := w.sidecar(t, w.ledCreds.DN, "", nil)
	forA := mustRewrap(t, w.pay, a.cert, k1.EKB, k2.EKB)
	forLed := mustRewrap(t, w.led, led.cert, k1.EKB)

	importing := func(s *side, w *api.WrappedKeys) error {
		return s.do(t, "POST", "/v1/keys/import", w, nil)
	}
	// edit returns a copy of w whose batch went through change: what a
	// relay that can read and rewrite the answer could do.
	edit := func(w *api.WrappedKeys, change func(*format.WrappedBatch)) *api.WrappedKeys {
		b, err := format.ParseWrappedBatch(w.Batch)
		if err != nil {
			t.Fatal(err)
		}
		change(b)
		out := *w
		out.Batch = b.Marshal()
		return &out
	}
	// editMetadata rewrites key i's metadata in the batch.
	editMetadata := func(w *api.WrappedKeys, i int, change func(*api.KeyMetadata)) *api.WrappedKeys {
		return edit(w, func(b *format.WrappedBatch) {
			var md api.KeyMetadata
			if err := json.Unmarshal(b.Keys[i].Metadata, &md); err != nil {
				t.Fatal(err)
			}
			change(&md)
			raw, err := json.Marshal(md)
			if err != nil {
				t.Fatal(err)
			}
			b.Keys[i].Metadata = raw
		})
	}

	t.Run("made for another sidecar of the same custodian", func(t *testing.T) {
		kmstest.WantError(t, importing(b, forA), 400, api.CodeDecryptFailed)
		b.wantNoKeys(t)
	})
	t.Run("made for a sidecar of another custodian", func(t *testing.T) {
		kmstest.WantError(t, importing(a, forLed), 400, api.CodeDecryptFailed)
		a.wantNoKeys(t)
	})
	t.Run("policy widened in transit", func(t *testing.T) {
		keys := editMetadata(forLed, 0, func(md *api.KeyMetadata) {
			wide := *md.Policy
			wide.Rules = append(append([]api.PolicyRule(nil), wide.Rules...),
				api.PolicyRule{Principals: []string{w.ledCreds.DN}, Actions: []api.Action{api.ActionEncrypt}})
			md.Policy = &wide
		})
		kmstest.WantError(t, importing(led, keys), 400, api.CodeDecryptFailed)
		keys = editMetadata(forLed, 0, func(md *api.KeyMetadata) {
			md.Policy = nil // "no policy": the owner only, but owner is payments-api
			md.Owner = w.ledCreds.DN
		})
		kmstest.WantError(t, importing(led, keys), 400, api.CodeDecryptFailed)
		led.wantNoKeys(t)
	})
	t.Run("expiry dropped in transit", func(t *testing.T) {
		exp := w.clock.Now().AddDate(0, 0, 1)
		ek := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, ExpiresAt: &exp})
		keys := editMetadata(mustRewrap(t, w.pay, a.cert, ek.EKB), 0, func(md *api.KeyMetadata) { md.ExpiresAt = nil })
		kmstest.WantError(t, importing(a, keys), 400, api.CodeDecryptFailed)
		a.wantNoKeys(t)
	})
	t.Run("items of a batch swapped", func(t *testing.T) {
		keys := edit(forA, func(b *format.WrappedBatch) { b.Keys[0], b.Keys[1] = b.Keys[1], b.Keys[0] })
		kmstest.WantError(t, importing(a, keys), 400, api.CodeDecryptFailed)
		keys = edit(forA, func(b *format.WrappedBatch) { b.Keys[0].Sealed, b.Keys[1].Sealed = b.Keys[1].Sealed, b.Keys[0].Sealed })
		kmstest.WantError(t, importing(a, keys), 400, api.CodeDecryptFailed)
		a.wantNoKeys(t)
	})
	t.Run("an item dropped", func(t *testing.T) {
		keys := edit(forA, func(b *format.WrappedBatch) { b.Keys = b.Keys[:1] })
		kmstest.WantError(t, importing(a, keys), 400, api.CodeDecryptFailed)
		a.wantNoKeys(t)
	})
	t.Run("usage count reset in transit", func(t *testing.T) {
		keys := edit(forA, func(b *format.WrappedBatch) { b.Keys[0].Encryptions = 0; b.Keys[1].Encryptions = 1 })
		kmstest.WantError(t, importing(a, keys), 400, api.CodeDecryptFailed)
		a.wantNoKeys(t)
	})
	t.Run("validity extended in transit", func(t *testing.T) {
		keys := edit(forA, func(b *format.WrappedBatch) { b.NotAfter += int64(24 * time.Hour / time.Millisecond) })
		kmstest.WantError(t, importing(a, keys), 400, api.CodeDecryptFailed)
		a.wantNoKeys(t)
	})
	t.Run("legacy format-1 answer", func(t *testing.T) {
		legacy := &api.WrappedKeys{Keys: []api.WrappedKey{{KeyID: k1.KeyID, Version: 1, Wrapped: []byte("x"), Metadata: k1.Metadata}}}
		kmstest.WantError(t, importing(a, legacy), 400, api.CodeInvalidArgument)
		a.wantNoKeys(t)
	})
	// Control: untouched, it loads.
	if err := importing(a, forA); err != nil {
		t.Fatalf("import of the untouched rewrap: %v", err)
	}
	// Importing it again while its keys are loaded is a harmless repeat;
	// once a key of it left the sidecar, it is refused.
	if err := importing(a, forA); err != nil {
		t.Fatalf("repeated import: %v", err)
	}
	a.must(t, "DELETE", "/v1/keys/"+k2.KeyID, nil, nil)
	kmstest.WantError(t, importing(a, forA), 409, api.CodeAlreadyUsed)
}
