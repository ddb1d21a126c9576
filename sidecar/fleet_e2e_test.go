package sidecar_test

import (
	"fmt"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// TestPollReportsKeysLoaded: at its revocation poll a sidecar tells the
// KMS how many keys it holds, and the fleet view (GET
// /v1/tenants/{t}/instances) shows it with the poll's time; an eviction
// shows at the next poll.
func TestPollReportsKeysLoaded(t *testing.T) {
	f := newFixture(t, nil)
	a := f.main(t)
	var cert api.WrappingCertificate
	f.do(t, "GET", "/v1/wrapping-certificate", nil, &cert)
	k1 := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	k2 := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyHMACSHA256})
	var w api.WrappedKeys
	f.cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{k1.EKB, k2.EKB}, WrappingCertPEM: cert.CertPEM}, &w)
	a.must(t, "POST", "/v1/keys/import", &w, nil)

	loaded := func(want int) func() error {
		return func() error {
			var fleet api.Fleet
			if err := f.env.Admin.Do("GET", "/v1/tenants/acme/instances", nil, &fleet); err != nil {
				return err
			}
			for _, in := range fleet.Instances {
				if in.InstanceID == f.sc.InstanceID() {
					if in.LastPollAt == nil || in.KeysLoaded == nil || *in.KeysLoaded != want {
						return fmt.Errorf("fleet instance = %+v, want a poll holding %d keys", in, want)
					}
					return nil
				}
			}
			return fmt.Errorf("instance %s not in the fleet", f.sc.InstanceID())
		}
	}
	eventually(t, "the fleet shows 2 keys loaded", loaded(2))
	a.must(t, "DELETE", "/v1/keys/"+k1.KeyID, nil, nil)
	eventually(t, "the fleet shows 1 key loaded", loaded(1))
}
