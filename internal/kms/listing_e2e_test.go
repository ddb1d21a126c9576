package kms_test

import (
	"net/http"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestListing checks the admin listing routes against a real KMS: what
// they list, that only an admin may call them, and that an unknown tenant
// is 404.
func TestListing(t *testing.T) {
	env := kmstest.Start(t, nil)
	env.Tenant(t, "globex")
	env.Tenant(t, "acme")
	cust, creds := env.App(t, "acme", "payments-api", api.RoleCustodian)
	env.App(t, "acme", "deployer", api.RolePipeline)
	dk := cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Purpose: "card numbers",
		Policy: &api.Policy{Rules: []api.PolicyRule{{Principals: []string{creds.DN}, Actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}}}}})
	gone := cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyEd25519})
	cust.MustDo(t, "DELETE", "/v1/datakeys/"+gone.KeyID, nil, nil)

	var tenants api.Tenants
	env.Admin.MustDo(t, "GET", "/v1/tenants", nil, &tenants)
	if len(tenants.Tenants) != 2 || tenants.Tenants[0].Name != "acme" || tenants.Tenants[1].Name != "globex" ||
		tenants.Tenants[0].MasterKeyVersion != 1 || tenants.Tenants[0].CreatedAt.IsZero() {
		t.Errorf("GET /v1/tenants = %+v, want acme then globex at master key version 1", tenants)
	}
	env.Admin.MustDo(t, "POST", "/v1/tenants/acme/master-key/rotate", nil, nil)
	env.Admin.MustDo(t, "GET", "/v1/tenants", nil, &tenants)
	if tenants.Tenants[0].MasterKeyVersion != 2 {
		t.Errorf("after a rotation acme's master key version = %d, want 2", tenants.Tenants[0].MasterKeyVersion)
	}

	var apps api.Apps
	env.Admin.MustDo(t, "GET", "/v1/tenants/acme/apps", nil, &apps)
	if len(apps.Apps) != 2 || apps.Apps[0].Name != "deployer" || apps.Apps[0].Role != api.RolePipeline ||
		apps.Apps[1].Name != "payments-api" || apps.Apps[1].DN != creds.DN || apps.Apps[1].Role != api.RoleCustodian {
		t.Errorf("GET /v1/tenants/acme/apps = %+v, want deployer (pipeline) then payments-api (custodian, %s)", apps, creds.DN)
	}

	var keys api.DataKeys
	env.Admin.MustDo(t, "GET", "/v1/tenants/acme/datakeys", nil, &keys)
	byID := map[string]api.DataKeyInfo{}
	for _, k := range keys.Keys {
		byID[k.KeyID] = k
	}
	if len(keys.Keys) != 2 || byID[dk.KeyID].Disabled || !byID[gone.KeyID].Disabled || byID[dk.KeyID].EncryptionLimit == 0 ||
		len(byID[dk.KeyID].Versions) != 1 || keys.Keys[0].KeyID > keys.Keys[1].KeyID {
		t.Errorf("GET /v1/tenants/acme/datakeys = %+v, want %s live with its limit and %s disabled, by id", keys, dk.KeyID, gone.KeyID)
	}
	if md, ok := keys.Metadata[dk.KeyID]; !ok || md.KeyID != dk.KeyID || md.Version != 1 || md.Owner != creds.DN || md.Purpose != "card numbers" ||
		md.Policy == nil || len(md.Policy.Rules) != 1 || md.Policy.Rules[0].Principals[0] != creds.DN {
		t.Errorf("metadata of %s = %+v (present %v), want version 1 of the owner's key with its purpose and policy", dk.KeyID, md, ok)
	}
	env.Admin.MustDo(t, "GET", "/v1/tenants/globex/datakeys", nil, &keys)
	if len(keys.Keys) != 0 {
		t.Errorf("GET /v1/tenants/globex/datakeys = %+v, want none", keys)
	}

	// The fleet: an instance, a release to it, then its revocation.
	sc := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	var tok api.EnrollmentToken
	cust.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{}, &tok)
	sc.Enroll(t, env.Anonymous(), tok.Token)
	cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dk.EKB}, WrappingCertPEM: sc.Enrollment.WrappingCertPEM}, nil)
	var fleet api.Fleet
	env.Admin.MustDo(t, "GET", "/v1/tenants/acme/instances", nil, &fleet)
	if len(fleet.Instances) != 1 {
		t.Fatalf("GET /v1/tenants/acme/instances = %+v, want one instance", fleet)
	}
	in := fleet.Instances[0]
	if in.InstanceID != sc.Enrollment.InstanceID || in.Tenant != "acme" || in.CustodianDN != creds.DN || in.Enclave != api.EnclaveSoftware ||
		in.Revoked || in.RevokedAt != nil || in.CertNotAfter == nil || !in.CertNotAfter.After(in.EnrolledAt) || in.KeysReleased != 1 {
		t.Errorf("fleet instance = %+v, want %s live, software, a certificate expiry and 1 key released", in, sc.Enrollment.InstanceID)
	}
	// A poll says how many keys the sidecar holds; a bad count is refused.
	if in.LastPollAt != nil || in.KeysLoaded != nil {
		t.Errorf("before any poll, fleet instance = %+v, want no poll", in)
	}
	side := sc.Client(t, env)
	kmstest.WantError(t, side.Do("GET", "/v1/revocations?keys_loaded=-1", nil, nil), http.StatusBadRequest, api.CodeInvalidArgument)
	kmstest.WantError(t, side.Do("GET", "/v1/revocations?keys_loaded=many", nil, nil), http.StatusBadRequest, api.CodeInvalidArgument)
	side.MustDo(t, "GET", "/v1/revocations?keys_loaded=1", nil, nil)
	env.Admin.MustDo(t, "GET", "/v1/tenants/acme/instances", nil, &fleet)
	if got := fleet.Instances[0]; got.LastPollAt == nil || got.KeysLoaded == nil || *got.KeysLoaded != 1 {
		t.Errorf("after a poll holding 1 key, fleet instance = %+v", got)
	}
	side.MustDo(t, "GET", "/v1/revocations", nil, nil) // says nothing: the count stays
	env.Admin.MustDo(t, "GET", "/v1/tenants/acme/instances", nil, &fleet)
	if got := fleet.Instances[0]; got.KeysLoaded == nil || *got.KeysLoaded != 1 {
		t.Errorf("after a poll without a count, fleet instance = %+v, want the count kept", got)
	}
	env.Admin.MustDo(t, "DELETE", "/v1/instances/"+in.InstanceID, nil, nil)
	env.Admin.MustDo(t, "GET", "/v1/tenants/acme/instances", nil, &fleet)
	if !fleet.Instances[0].Revoked || fleet.Instances[0].RevokedAt == nil {
		t.Errorf("after revoking, fleet instance = %+v, want revoked with its time", fleet.Instances[0])
	}
	env.Admin.MustDo(t, "GET", "/v1/tenants/globex/instances", nil, &fleet)
	if len(fleet.Instances) != 0 {
		t.Errorf("GET /v1/tenants/globex/instances = %+v, want none", fleet)
	}

	for _, path := range []string{"/v1/tenants", "/v1/tenants/acme/apps", "/v1/tenants/acme/datakeys", "/v1/tenants/acme/instances"} {
		kmstest.WantError(t, cust.Do("GET", path, nil, nil), http.StatusForbidden, api.CodeForbidden)
		kmstest.WantError(t, env.Anonymous().Do("GET", path, nil, nil), http.StatusUnauthorized, api.CodeUnauthenticated)
	}
	for _, path := range []string{"/v1/tenants/nobody/apps", "/v1/tenants/nobody/datakeys", "/v1/tenants/nobody/instances"} {
		kmstest.WantError(t, env.Admin.Do("GET", path, nil, nil), http.StatusNotFound, api.CodeNotFound)
	}
}
