package kms_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestGrantRetry: a grant is used once, by one request; that very request
// (same instance, same recipient key) may be presented again until the
// grant expires and gets the same keys, so a sidecar retries a load cut
// by a dying replica on another one. Any other request is told the grant
// is used; a grant presented by another instance is refused without
// being used.
func TestGrantRetry(t *testing.T) {
	clock := kmstest.NewClock()
	env := kmstest.Start(t, func(o *kms.Options) { o.Now = clock.Now })
	env.Tenant(t, "acme")
	cust, custCreds := env.App(t, "acme", "payments-api", api.RoleCustodian)
	side, sc := env.EnrolledFake(t, cust, custCreds.DN)
	_, other := env.EnrolledFake(t, cust, custCreds.DN)
	var dk api.DataKey
	cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
	var g api.Grant
	cust.MustDo(t, "POST", "/v1/grants", api.GrantRequest{InstanceID: side.Enrollment.InstanceID, EKBs: [][]byte{dk.EKB}}, &g)

	rcpt := func() (api.PublicKey, func(*api.WrappedKeys) []byte) {
		priv, pub := kmstest.NewRecipient(t)
		return pub, func(w *api.WrappedKeys) []byte {
			keys := side.UnwrapWith(t, priv, w)
			defer keys[0].Wipe()
			return bytes.Clone(keys[0].Expose())
		}
	}
	req, open := rcpt()
	load := func(c *kmstest.Client, to api.PublicKey) (*api.WrappedKeys, error) {
		var w api.WrappedKeys
		err := c.Do("POST", "/v1/keys/load", api.LoadRequest{Grant: g.Grant, EKBs: [][]byte{dk.EKB}, Recipient: to}, &w)
		return &w, err
	}

	// Another instance of the same custodian: refused, and the grant is
	// not burnt by it.
	_, err := load(other, req)
	kmstest.WantError(t, err, 403, api.CodeForbidden)

	first, err := load(sc, req)
	if err != nil {
		t.Fatalf("first load: %v", err)
	}
	again, err := load(sc, req)
	if err != nil {
		t.Fatalf("the same request again: %v", err)
	}
	if !bytes.Equal(open(first), open(again)) {
		t.Error("the repeated request delivered another key")
	}
	// A new request (a new recipient key) with the used grant: used.
	fresh, _ := rcpt()
	_, err = load(sc, fresh)
	kmstest.WantError(t, err, 409, api.CodeAlreadyUsed)
	// The other instance, even with the request's recipient: refused.
	_, err = load(other, req)
	kmstest.WantError(t, err, 409, api.CodeAlreadyUsed)
	// After the grant's expiry the request is not answered again.
	clock.Advance(time.Hour + time.Minute)
	_, err = load(sc, req)
	kmstest.WantError(t, err, 409, api.CodeAlreadyUsed)
}
