package kms_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestNamedAdmins: an admin registers more admins, each its own identity
// (CN=<name>,O=dcaas) with the admin's rights; names are unique, only an
// admin may register one, and no tenant app can take an admin's DN.
func TestNamedAdmins(t *testing.T) {
	env := kmstest.Start(t, nil)

	alice, creds := env.NewAdmin(t, "alice")
	if creds.DN != "CN=alice,O=dcaas" || creds.KeyPEM == "" {
		t.Fatalf("alice's credentials: DN %q, key given %v", creds.DN, creds.KeyPEM != "")
	}
	checkCreds(t, env, creds, "CN=alice,O=dcaas", true)
	// Alice acts as an admin, and the audit names her, not "admin".
	alice.MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
	var page api.AuditPage
	env.Admin.MustDo(t, "GET", "/v1/audit?after=0", nil, &page)
	var actors []string
	for _, r := range page.Records {
		if r.Action == "tenant.create" {
			actors = append(actors, r.Caller)
		}
	}
	if len(actors) != 1 || actors[0] != "CN=alice,O=dcaas" {
		t.Fatalf("callers of tenant.create in the audit: %q, want alice", actors)
	}

	// With a CSR, the private key stays with its owner.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var bob api.AppCredentials
	alice.MustDo(t, "POST", "/v1/admins", api.CreateAdminRequest{Name: "bob", CSRPEM: csrFor(t, key)}, &bob)
	if bob.KeyPEM != "" || bob.DN != "CN=bob,O=dcaas" {
		t.Fatalf("bob by CSR: key returned %v, DN %q", bob.KeyPEM != "", bob.DN)
	}
	checkCreds(t, env, bob, "CN=bob,O=dcaas", false)
	bobc := env.Client([]byte(bob.CertPEM), []byte(keyPEMOf(t, key)))
	bobc.MustDo(t, "POST", "/v1/tenants/acme/master-key/rotate", nil, nil)

	cust, _ := env.App(t, "acme", "payments-api", api.RoleCustodian)
	for _, tc := range []struct {
		name   string
		c      *kmstest.Client
		req    any
		status int
		code   api.Code
	}{
		{"a name taken", env.Admin, api.CreateAdminRequest{Name: "alice"}, http.StatusConflict, api.CodeConflict},
		{"the first admin's name", alice, api.CreateAdminRequest{Name: "admin"}, http.StatusConflict, api.CodeConflict},
		{"a bad name", env.Admin, api.CreateAdminRequest{Name: "Alice Smith"}, http.StatusBadRequest, api.CodeInvalidArgument},
		{"a custodian", cust, api.CreateAdminRequest{Name: "mallory"}, http.StatusForbidden, api.CodeForbidden},
		{"no certificate", env.Anonymous(), api.CreateAdminRequest{Name: "mallory"}, http.StatusUnauthorized, api.CodeUnauthenticated},
		{"a bad CSR", env.Admin, api.CreateAdminRequest{Name: "carol", CSRPEM: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}, http.StatusBadRequest, api.CodeInvalidCSR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kmstest.WantError(t, tc.c.Do("POST", "/v1/admins", tc.req, nil), tc.status, tc.code)
		})
	}

	// The tenant "dcaas" would give its apps admins' DNs: it is reserved.
	err = env.Admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "dcaas"}, nil)
	kmstest.WantError(t, err, http.StatusBadRequest, api.CodeInvalidArgument)
	if !strings.Contains(err.Error(), "reserved") {
		t.Errorf("refusal of tenant dcaas: %v", err)
	}
}
