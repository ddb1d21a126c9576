package adversarial_test

import (
	"crypto/rand"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// Grant replay, a grant for other keys, after expiry and presented by
// another sidecar are proved by sidecar TestGrantFlow (replayed_grant,
// grant_for_X_loading_Y, expired_grant, grant_for_A_presented_by_B); a
// grant for another custodian's instance by TestGrantFlow/instance_of_another_custodian
// and a seed outside the grant by TestSeedDerivation/seed_not_in_the_grant.
// The tests here cover what those leave out.

// TestGrantScope: a grant binds the kind of thing it names (EKBs, retained
// key ids, seeds), not just "some keys", and only a sidecar may present it.
func TestGrantScope(t *testing.T) {
	w := newWorld(t)
	a := w.sidecar(t, w.payCreds.DN, "", nil)
	dk := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	ret := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	seed := make([]byte, 32)
	rand.Read(seed)

	load := func(g string, ekbs [][]byte, ids []string) error {
		return a.do(t, "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: g, EKBs: ekbs, KeyIDs: ids}, nil)
	}
	derive := func(g string) error {
		return a.do(t, "POST", "/v1/keys/derive", api.SidecarDeriveRequest{Grant: g, Seeds: []api.Seed{{Seed: seed, Type: api.KeyAES256GCM}}}, nil)
	}
	t.Run("seed grant used to load an EKB", func(t *testing.T) {
		g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: a.id, Seeds: [][]byte{seed}})
		kmstest.WantError(t, load(g, [][]byte{dk.EKB}, nil), 403, api.CodeForbidden)
	})
	t.Run("EKB grant used to derive", func(t *testing.T) {
		g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{dk.EKB}})
		kmstest.WantError(t, derive(g), 403, api.CodeForbidden)
	})
	t.Run("key-id grant used to load that key's EKB", func(t *testing.T) {
		g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: a.id, KeyIDs: []string{ret.KeyID}})
		kmstest.WantError(t, load(g, [][]byte{ret.EKB}, nil), 403, api.CodeForbidden)
	})
	t.Run("EKB grant stretched to a retained key id", func(t *testing.T) {
		g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{dk.EKB}})
		kmstest.WantError(t, load(g, [][]byte{dk.EKB}, []string{ret.KeyID}), 403, api.CodeForbidden)
	})
	a.wantNoKeys(t)
	t.Run("presented by the custodian itself", func(t *testing.T) {
		g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{dk.EKB}})
		_, rcpt := kmstest.NewRecipient(t)
		err := w.pay.Do("POST", "/v1/keys/load", api.LoadRequest{Grant: g, EKBs: [][]byte{dk.EKB}, Recipient: rcpt}, nil)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
		// Refused before use: the grant still works for its sidecar.
		if err := load(g, [][]byte{dk.EKB}, nil); err != nil {
			t.Fatalf("the grant after the custodian's attempt: %v", err)
		}
	})
}

// TestSecretKindConfusion: enrollment tokens and grants are both bearer
// secrets kept as a hash in one table; neither works as the other, and a
// confused use does not burn the real one.
func TestSecretKindConfusion(t *testing.T) {
	w := newWorld(t)
	a := w.sidecar(t, w.payCreds.DN, "", nil)
	dk := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	tok := w.token(t, w.payCreds.DN)
	g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{dk.EKB}})

	err := a.do(t, "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: tok, EKBs: [][]byte{dk.EKB}}, nil)
	kmstest.WantError(t, err, 403, api.CodeInvalidToken)
	fake := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	err = w.env.Anonymous().Do("POST", "/v1/enrollment", fake.EnrollRequest(g), nil)
	kmstest.WantError(t, err, 403, api.CodeInvalidToken)

	// Both still do their own job.
	fake.Enroll(t, w.env.Anonymous(), tok)
	if err := a.do(t, "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: g, EKBs: [][]byte{dk.EKB}}, nil); err != nil {
		t.Fatalf("the grant after its use as a token: %v", err)
	}
}

// TestGrantRace: one grant presented 20 times at once by its own sidecar
// loads exactly once.
func TestGrantRace(t *testing.T) {
	const n = 20
	w := newWorld(t)
	a := w.sidecar(t, w.payCreds.DN, "", nil)
	dk := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{dk.EKB}})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = a.do(t, "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: g, EKBs: [][]byte{dk.EKB}}, nil)
		})
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
			continue
		}
		if api.CodeOf(err) != api.CodeAlreadyUsed {
			t.Errorf("concurrent load = %v, want success or 409 already_used", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent loads with one grant succeeded, want exactly 1", wins, n)
	}
}
