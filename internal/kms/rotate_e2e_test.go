package kms_test

import (
	"net/http"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestRotateRetainedKey: the owner or an admin makes a new version of a
// key the KMS retains on demand (POST /v1/datakeys/{key_id}/rotate); new
// central-path ciphertexts use it, old ones still decrypt; keys the KMS
// does not hold, other custodians' and disabled keys are refused.
func TestRotateRetainedKey(t *testing.T) {
	env := kmstest.Start(t, nil)
	env.Tenant(t, "acme")
	cust, _ := env.App(t, "acme", "payments-api", api.RoleCustodian)
	other, _ := env.App(t, "acme", "ledger", api.RoleCustodian)
	dk := cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	ref := api.KeyRef{KeyID: dk.KeyID}
	var ct1 api.EncryptResponse
	cust.MustDo(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: ref, Plaintext: []byte("v1")}, &ct1)

	var v2, v3 api.DataKey
	env.Admin.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/rotate", nil, &v2)
	cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/rotate", nil, &v3)
	if v2.Version != 2 || v3.Version != 3 || v3.KCV == "" || v3.KCV == dk.KCV {
		t.Fatalf("rotations made versions %d and %d (kcv %q, first %q), want 2 and 3 with a new KCV", v2.Version, v3.Version, v3.KCV, dk.KCV)
	}
	var info api.DataKeyInfo
	cust.MustDo(t, "GET", "/v1/datakeys/"+dk.KeyID, nil, &info)
	if info.CurrentVersion != 3 || len(info.Versions) != 3 {
		t.Fatalf("after two rotations: current %d, %d versions", info.CurrentVersion, len(info.Versions))
	}
	var ct3 api.EncryptResponse
	cust.MustDo(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: ref, Plaintext: []byte("v3")}, &ct3)
	if ct3.KeyVersion != 3 {
		t.Fatalf("new ciphertexts use version %d, want 3", ct3.KeyVersion)
	}
	var pt api.DecryptResponse
	cust.MustDo(t, "POST", "/v1/crypto/decrypt", api.DecryptRequest{KeyRef: ref, Ciphertext: ct1.Ciphertext}, &pt)
	if string(pt.Plaintext) != "v1" {
		t.Fatalf("version 1's ciphertext decrypts to %q", pt.Plaintext)
	}

	notRetained := cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	disabled := cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	cust.MustDo(t, "DELETE", "/v1/datakeys/"+disabled.KeyID, nil, nil)
	for _, tc := range []struct {
		name   string
		c      *kmstest.Client
		key    string
		status int
		code   api.Code
	}{
		{"not retained", env.Admin, notRetained.KeyID, http.StatusBadRequest, api.CodeInvalidArgument},
		{"another custodian's key", other, dk.KeyID, http.StatusNotFound, api.CodeNotFound},
		{"unknown key", env.Admin, "key_nope", http.StatusNotFound, api.CodeNotFound},
		{"disabled", env.Admin, disabled.KeyID, http.StatusForbidden, api.CodeRevoked},
		{"no certificate", env.Anonymous(), dk.KeyID, http.StatusUnauthorized, api.CodeUnauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kmstest.WantError(t, tc.c.Do("POST", "/v1/datakeys/"+tc.key+"/rotate", nil, nil), tc.status, tc.code)
		})
	}
}
