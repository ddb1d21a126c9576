package kms_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// world is a KMS with one tenant, a custodian, a pipeline and an enrolled
// sidecar bound to the custodian.
type world struct {
	env       *kmstest.Env
	clock     *kmstest.Clock
	cust      *kmstest.Client
	custCreds api.AppCredentials
	pipe      *kmstest.Client
	side      *kmstest.FakeSidecar
}

func newWorld(t *testing.T, kem api.KEM) *world {
	t.Helper()
	clock := kmstest.NewClock()
	env := kmstest.Start(t, func(o *kms.Options) { o.Now = clock.Now })
	env.Tenant(t, "acme")
	cust, creds := env.App(t, "acme", "payments-api", api.RoleCustodian)
	pipe, _ := env.App(t, "acme", "deployer", api.RolePipeline)
	w := &world{env: env, clock: clock, cust: cust, custCreds: creds, pipe: pipe}
	w.side = w.enroll(t, kem, creds.DN)
	return w
}

// enroll mints a pipeline token for dn and enrolls a fresh fake sidecar.
func (w *world) enroll(t *testing.T, kem api.KEM, dn string) *kmstest.FakeSidecar {
	t.Helper()
	var tok api.EnrollmentToken
	w.pipe.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: dn}, &tok)
	s := kmstest.NewFakeSidecar(t, kem)
	s.Enroll(t, w.env.Anonymous(), tok.Token)
	return s
}

func (w *world) dataKey(t *testing.T, c *kmstest.Client, req api.CreateDataKeyRequest) api.DataKey {
	t.Helper()
	var dk api.DataKey
	c.MustDo(t, "POST", "/v1/datakeys", req, &dk)
	return dk
}

func (w *world) rewrap(c *kmstest.Client, cert string, ekbs ...[]byte) (api.WrappedKeys, error) {
	var out api.WrappedKeys
	err := c.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: cert}, &out)
	return out, err
}

func TestEndToEndRewrapOpensToTheKey(t *testing.T) {
	kems := []api.KEM{api.KEMX25519, api.KEMP256, api.KEMMLKEM768X25519, api.KEMMLKEM768P256}
	for _, kem := range kems {
		t.Run(string(kem), func(t *testing.T) {
			if kcrypto.FIPS() && (kem == api.KEMX25519 || kem == api.KEMMLKEM768X25519) {
				t.Skip("X25519 is not FIPS-approved")
			}
			w := newWorld(t, kem)
			if w.side.Enrollment.CustodianDN != w.custCreds.DN {
				t.Fatalf("enrollment bound to %q, want %q", w.side.Enrollment.CustodianDN, w.custCreds.DN)
			}
			aes := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Purpose: "cards", Labels: map[string]string{"env": "test"}})
			ed := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyEd25519})
			ec := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyECDSAP256})
			hm := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyHMACSHA256})

			// EKBs are self-describing.
			e, err := format.ParseEKB(aes.EKB)
			if err != nil {
				t.Fatal(err)
			}
			if e.Tenant != "acme" || e.TMKVersion != 1 || e.KeyID != aes.KeyID || e.KeyVersion != 1 {
				t.Fatalf("EKB header = %+v", e)
			}

			got, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, aes.EKB, ed.EKB, ec.EKB, hm.EKB)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Keys) != 4 {
				t.Fatalf("rewrap returned %d keys, want 4", len(got.Keys))
			}
			deks := w.side.Unwrap(t, &got)
			defer func() {
				for _, d := range deks {
					d.Wipe()
				}
			}()
			// Signing keys: the unwrapped private key matches the public key
			// the KMS published at creation.
			kmstest.CheckPublicKey(t, api.KeyEd25519, deks[1].Expose(), ed.PublicKeyPEM)
			kmstest.CheckPublicKey(t, api.KeyECDSAP256, deks[2].Expose(), ec.PublicKeyPEM)
			// Symmetric keys: a second, separate rewrap yields the same key.
			again, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, aes.EKB)
			if err != nil {
				t.Fatal(err)
			}
			deks2 := w.side.Unwrap(t, &again)
			if !deks2[0].Equal(deks[0]) || deks[0].Len() != 32 || deks[0].Equal(deks[3]) {
				t.Fatal("the AES key does not round-trip through two rewraps, or equals the HMAC key")
			}
			deks2[0].Wipe()
			if got.Keys[0].Metadata.Purpose != "cards" || got.Keys[0].Metadata.Labels["env"] != "test" {
				t.Fatalf("metadata = %+v", got.Keys[0].Metadata)
			}
		})
	}
}

func TestMasterKeyRotationKeepsOldEKBsOpen(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	old := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	var rot api.RotateMasterKeyResponse
	w.env.Admin.MustDo(t, "POST", "/v1/tenants/acme/master-key/rotate", nil, &rot)
	if rot.MasterKeyVersion != 2 {
		t.Fatalf("rotated to %d, want 2", rot.MasterKeyVersion)
	}
	fresh := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	if e, _ := format.ParseEKB(fresh.EKB); e == nil || e.TMKVersion != 2 {
		t.Fatalf("new EKB uses master key %v, want 2", e)
	}
	if _, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, old.EKB, fresh.EKB); err != nil {
		t.Fatalf("rewrap after rotation: %v", err)
	}
	err := w.env.Admin.Do("POST", "/v1/tenants/nobody/master-key/rotate", nil, nil)
	kmstest.WantError(t, err, 404, api.CodeNotFound)
}

func TestKeyVersions(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	v1 := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyEd25519})
	var v2 api.DataKey
	w.cust.MustDo(t, "POST", "/v1/datakeys/"+v1.KeyID+"/versions", api.NewVersionRequest{EKB: v1.EKB}, &v2)
	if v2.KeyID != v1.KeyID || v2.Version != 2 || v2.PublicKeyPEM == v1.PublicKeyPEM {
		t.Fatalf("new version = %s v%d", v2.KeyID, v2.Version)
	}
	// Only the current version can be the base of a new one.
	err := w.cust.Do("POST", "/v1/datakeys/"+v1.KeyID+"/versions", api.NewVersionRequest{EKB: v1.EKB}, nil)
	kmstest.WantError(t, err, 409, api.CodeConflict)
	// Both versions still release.
	got, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, v1.EKB, v2.EKB)
	if err != nil || got.Keys[0].Version != 1 || got.Keys[1].Version != 2 {
		t.Fatalf("rewrap(v1, v2) = %+v, %v", got, err)
	}
	// Another custodian of the tenant is not the owner.
	other, _ := w.env.App(t, "acme", "reporting", api.RoleCustodian)
	err = other.Do("POST", "/v1/datakeys/"+v2.KeyID+"/versions", api.NewVersionRequest{EKB: v2.EKB}, nil)
	kmstest.WantError(t, err, 403, api.CodeForbidden)
}

func TestEnrollmentTokens(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	anon := w.env.Anonymous()
	mint := func(c *kmstest.Client, req api.CreateTokenRequest) api.EnrollmentToken {
		var tok api.EnrollmentToken
		c.MustDo(t, "POST", "/v1/enrollment/tokens", req, &tok)
		return tok
	}

	t.Run("replay", func(t *testing.T) {
		tok := mint(w.pipe, api.CreateTokenRequest{CustodianDN: w.custCreds.DN})
		kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM()).Enroll(t, anon, tok.Token)
		err := anon.Do("POST", "/v1/enrollment", kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM()).EnrollRequest(tok.Token), nil)
		kmstest.WantError(t, err, 409, api.CodeAlreadyUsed)
	})
	t.Run("expired", func(t *testing.T) {
		tok := mint(w.pipe, api.CreateTokenRequest{CustodianDN: w.custCreds.DN, TTLSeconds: 60})
		w.clock.Advance(61 * time.Second)
		err := anon.Do("POST", "/v1/enrollment", kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM()).EnrollRequest(tok.Token), nil)
		kmstest.WantError(t, err, 410, api.CodeExpired)
	})
	t.Run("forged", func(t *testing.T) {
		err := anon.Do("POST", "/v1/enrollment", kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM()).EnrollRequest("dcet_forged"), nil)
		kmstest.WantError(t, err, 403, api.CodeInvalidToken)
	})
	t.Run("bad CSR keeps the token", func(t *testing.T) {
		tok := mint(w.pipe, api.CreateTokenRequest{CustodianDN: w.custCreds.DN})
		req := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM()).EnrollRequest(tok.Token)
		req.CSRPEM = strings.Replace(req.CSRPEM, "M", "N", 3)
		err := anon.Do("POST", "/v1/enrollment", req, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidCSR)
		kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM()).Enroll(t, anon, tok.Token) // still usable
	})
	t.Run("custodian for itself only", func(t *testing.T) {
		tok := mint(w.cust, api.CreateTokenRequest{})
		if tok.CustodianDN != w.custCreds.DN {
			t.Fatalf("token for %q, want %q", tok.CustodianDN, w.custCreds.DN)
		}
		_, oc := w.env.App(t, "acme", "other", api.RoleCustodian)
		err := w.cust.Do("POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: oc.DN}, nil)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
	})
	t.Run("pipeline of another tenant", func(t *testing.T) {
		w.env.Tenant(t, "globex")
		gpipe, _ := w.env.App(t, "globex", "deployer", api.RolePipeline)
		err := gpipe.Do("POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: w.custCreds.DN}, nil)
		kmstest.WantError(t, err, 403, api.CodeWrongTenant)
	})
	t.Run("ttl bounds", func(t *testing.T) {
		err := w.pipe.Do("POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: w.custCreds.DN, TTLSeconds: 10 * 86400}, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
	})
	t.Run("race: exactly one wins", func(t *testing.T) {
		tok := mint(w.pipe, api.CreateTokenRequest{CustodianDN: w.custCreds.DN})
		var wins, used atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 30; i++ {
			req := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM()).EnrollRequest(tok.Token)
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := anon.Do("POST", "/v1/enrollment", req, nil)
				if err == nil {
					wins.Add(1)
				} else if api.CodeOf(err) == api.CodeAlreadyUsed {
					used.Add(1)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 || used.Load() != 29 {
			t.Fatalf("wins = %d, already_used = %d; want 1 and 29", wins.Load(), used.Load())
		}
	})
}

func TestRewrapRefusals(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	cert := w.side.Enrollment.WrappingCertPEM
	dk := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})

	t.Run("tampered EKB", func(t *testing.T) {
		e, _ := format.ParseEKB(dk.EKB)
		e.Metadata = bytes.Replace(e.Metadata, []byte(`"aes-256-gcm"`), []byte(`"hmac-sha256"`), 1)
		_, err := w.rewrap(w.cust, cert, e.Marshal())
		kmstest.WantError(t, err, 400, api.CodeInvalidEKB)
		flipped := bytes.Clone(dk.EKB)
		flipped[len(flipped)-1] ^= 1
		_, err = w.rewrap(w.cust, cert, flipped)
		kmstest.WantError(t, err, 400, api.CodeInvalidEKB)
		_, err = w.rewrap(w.cust, cert, []byte("not an ekb"))
		kmstest.WantError(t, err, 400, api.CodeInvalidEKB)
	})
	t.Run("other tenant's EKB", func(t *testing.T) {
		w.env.Tenant(t, "globex")
		g, _ := w.env.App(t, "globex", "app", api.RoleCustodian)
		gk := w.dataKey(t, g, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		_, err := w.rewrap(w.cust, cert, gk.EKB)
		kmstest.WantError(t, err, 403, api.CodeWrongTenant)
		// And the other tenant's custodian can't use our sidecar.
		_, err = w.rewrap(g, cert, gk.EKB)
		kmstest.WantError(t, err, 403, api.CodeWrongTenant)
	})
	t.Run("sidecar bound to another custodian", func(t *testing.T) {
		other, _ := w.env.App(t, "acme", "ledger", api.RoleCustodian)
		ok := w.dataKey(t, other, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		_, err := w.rewrap(other, cert, ok.EKB)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
	})
	t.Run("policy does not name the bound custodian", func(t *testing.T) {
		pol := &api.Policy{Rules: []api.PolicyRule{{Principals: []string{"CN=reporting-*,O=acme"}, Actions: []api.Action{api.ActionDecrypt}}}}
		pk := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Policy: pol})
		_, err := w.rewrap(w.cust, cert, pk.EKB)
		kmstest.WantError(t, err, 403, api.CodePolicyDenied)
		// A policy that names it releases.
		pol.Rules = append(pol.Rules, api.PolicyRule{Principals: []string{w.custCreds.DN}, Actions: []api.Action{api.ActionEncrypt}})
		pk = w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Policy: pol})
		if _, err := w.rewrap(w.cust, cert, pk.EKB); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("expired key", func(t *testing.T) {
		exp := w.clock.Now().Add(time.Hour)
		ek := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, ExpiresAt: &exp})
		w.clock.Advance(2 * time.Hour)
		_, err := w.rewrap(w.cust, cert, ek.EKB)
		kmstest.WantError(t, err, 410, api.CodeExpired)
	})
	t.Run("certificate that is not a wrapping certificate", func(t *testing.T) {
		_, err := w.rewrap(w.cust, w.side.Enrollment.CertPEM, dk.EKB)
		kmstest.WantError(t, err, 400, api.CodeInvalidCert)
		_, err = w.rewrap(w.cust, "junk", dk.EKB)
		kmstest.WantError(t, err, 400, api.CodeInvalidCert)
	})
	// What a script sends when it asked a sidecar that is not enrolled yet
	// for its wrapping certificate: jq -r .cert_pem of the 503 not_enrolled
	// body is "null", of an empty answer "". The refusal must send the
	// caller back to the sidecar, not suggest the certificate is malformed.
	t.Run("no certificate: a sidecar not enrolled yet", func(t *testing.T) {
		for _, pemText := range []string{"", "null\n", "  \n"} {
			_, err := w.rewrap(w.cust, pemText, dk.EKB)
			kmstest.WantError(t, err, 400, api.CodeInvalidCert)
			var e *api.Error
			errors.As(err, &e)
			for _, hint := range []string{"GET /v1/wrapping-certificate", "enrolled"} {
				if !strings.Contains(e.Message, hint) {
					t.Errorf("wrapping_cert_pem %q: message %q does not point at the sidecar (%q)", pemText, e.Message, hint)
				}
			}
		}
	})
	t.Run("foreign CA", func(t *testing.T) {
		foreign := kmstest.Start(t, nil)
		foreign.Tenant(t, "acme")
		fp, _ := foreign.App(t, "acme", "deployer", api.RolePipeline)
		_, fc := foreign.App(t, "acme", "payments-api", api.RoleCustodian)
		fs, _ := foreign.EnrolledFake(t, fp, fc.DN)
		_, err := w.rewrap(w.cust, fs.Enrollment.WrappingCertPEM, dk.EKB)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
	})
	t.Run("revoked instance", func(t *testing.T) {
		s := w.enroll(t, kcrypto.DefaultKEM(), w.custCreds.DN)
		var rv api.Revoked
		w.cust.MustDo(t, "DELETE", "/v1/instances/"+s.Enrollment.InstanceID, nil, &rv)
		_, err := w.rewrap(w.cust, s.Enrollment.WrappingCertPEM, dk.EKB)
		kmstest.WantError(t, err, 403, api.CodeRevoked)
		// Its identity certificate no longer authenticates.
		err = s.Client(t, w.env).Do("GET", "/v1/instances", nil, nil)
		kmstest.WantError(t, err, 403, api.CodeRevoked)
	})
	t.Run("wrong role", func(t *testing.T) {
		_, err := w.rewrap(w.pipe, cert, dk.EKB)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
		_, err = w.rewrap(w.env.Anonymous(), cert, dk.EKB)
		kmstest.WantError(t, err, 401, api.CodeUnauthenticated)
	})
	t.Run("batch of 1000 with one refusal is refused whole", func(t *testing.T) {
		ekbs := make([][]byte, 0, 1000)
		for i := 0; i < 999; i++ {
			ekbs = append(ekbs, dk.EKB)
		}
		bad := bytes.Clone(dk.EKB)
		bad[len(bad)-5] ^= 0x80
		_, err := w.rewrap(w.cust, cert, append(ekbs, bad)...)
		kmstest.WantError(t, err, 400, api.CodeInvalidEKB)
		got, err := w.rewrap(w.cust, cert, ekbs...)
		if err != nil || len(got.Keys) != 999 {
			t.Fatalf("rewrap(999) = %d keys, %v", len(got.Keys), err)
		}
	})
}

func TestBadInput(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	raw := func(c *kmstest.Client, method, path, body string) error {
		return c.Do(method, path, json.RawMessage(body), nil)
	}
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     api.Code
	}{
		{"malformed JSON", "POST", "/v1/datakeys", `{"type":`, 400, api.CodeBadRequest},
		{"not JSON", "POST", "/v1/datakeys", `type=aes`, 400, api.CodeBadRequest},
		{"unknown field", "POST", "/v1/datakeys", `{"type":"aes-256-gcm","colour":"red"}`, 400, api.CodeUnknownField},
		{"wrong type", "POST", "/v1/datakeys", `{"type":42}`, 400, api.CodeBadRequest},
		{"unknown key type", "POST", "/v1/datakeys", `{"type":"des"}`, 400, api.CodeInvalidArgument},
		{"missing key type", "POST", "/v1/datakeys", `{}`, 400, api.CodeInvalidArgument},
		{"two objects", "POST", "/v1/datakeys", `{"type":"aes-256-gcm"}{}`, 400, api.CodeBadRequest},
		{"bad base64", "POST", "/v1/keys/rewrap", `{"ekbs":["!!!"],"wrapping_cert_pem":"x"}`, 400, api.CodeBadRequest},
		{"bad policy action", "POST", "/v1/datakeys", `{"type":"aes-256-gcm","policy":{"rules":[{"principals":["CN=a,O=acme"],"actions":["launch"]}]}}`, 400, api.CodeInvalidArgument},
		{"bad policy DN", "POST", "/v1/datakeys", `{"type":"aes-256-gcm","policy":{"rules":[{"principals":["not a dn"],"actions":["encrypt"]}]}}`, 400, api.CodeInvalidArgument},
		{"expiry in the past", "POST", "/v1/datakeys", `{"type":"aes-256-gcm","expires_at":"2001-01-01T00:00:00Z"}`, 400, api.CodeInvalidArgument},
		{"bad time", "POST", "/v1/datakeys", `{"type":"aes-256-gcm","expires_at":"tomorrow"}`, 400, api.CodeBadRequest},
		{"deep nesting", "POST", "/v1/datakeys", strings.Repeat(`{"labels":`, 20000) + strings.Repeat("}", 20000), 400, api.CodeBadRequest},
		{"empty rewrap", "POST", "/v1/keys/rewrap", `{"ekbs":[],"wrapping_cert_pem":"x"}`, 400, api.CodeInvalidArgument},
		{"unknown path", "GET", "/v1/nothing", ``, 404, api.CodeNotFound},
		{"wrong method", "GET", "/v1/datakeys", ``, 405, api.CodeMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.body == "" {
				err = w.cust.Do(tc.method, tc.path, nil, nil)
			} else {
				err = raw(w.cust, tc.method, tc.path, tc.body)
			}
			kmstest.WantError(t, err, tc.status, tc.code)
		})
	}
	t.Run("oversized body", func(t *testing.T) {
		big := `{"type":"aes-256-gcm","purpose":"` + strings.Repeat("a", 2<<20) + `"}`
		kmstest.WantError(t, raw(w.cust, "POST", "/v1/datakeys", big), 413, api.CodeTooLarge)
	})
	t.Run("bad names", func(t *testing.T) {
		for _, name := range []string{"", "Acme", "a b", "a,b", strings.Repeat("a", 64), "-x"} {
			err := w.env.Admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: name}, nil)
			kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
		}
		err := w.env.Admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil)
		kmstest.WantError(t, err, 409, api.CodeConflict)
		err = w.env.Admin.Do("POST", "/v1/tenants/acme/apps", api.CreateAppRequest{Name: "x", Role: "admin"}, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
		err = w.env.Admin.Do("POST", "/v1/tenants/acme/apps", api.CreateAppRequest{Name: "y", Role: api.RoleCustodian, CSRPEM: "junk"}, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidCSR)
		err = w.env.Admin.Do("POST", "/v1/tenants/nope/apps", api.CreateAppRequest{Name: "y", Role: api.RoleCustodian}, nil)
		kmstest.WantError(t, err, 404, api.CodeNotFound)
	})
	t.Run("roles", func(t *testing.T) {
		kmstest.WantError(t, w.cust.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "x"}, nil), 403, api.CodeForbidden)
		kmstest.WantError(t, w.env.Anonymous().Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "x"}, nil), 401, api.CodeUnauthenticated)
		kmstest.WantError(t, w.env.Admin.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil), 403, api.CodeForbidden)
		kmstest.WantError(t, w.pipe.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil), 403, api.CodeForbidden)
		kmstest.WantError(t, w.cust.Do("GET", "/v1/audit", nil, nil), 403, api.CodeForbidden)
		sc := w.side.Client(t, w.env)
		kmstest.WantError(t, sc.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil), 403, api.CodeForbidden)
	})
	t.Run("foreign client certificate", func(t *testing.T) {
		foreign := kmstest.Start(t, nil)
		foreign.Tenant(t, "acme")
		_, fc := foreign.App(t, "acme", "payments-api", api.RoleCustodian)
		c := w.env.Client([]byte(fc.CertPEM), []byte(fc.KeyPEM))
		kmstest.WantError(t, c.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil), 401, api.CodeUnauthenticated)
	})
	t.Run("expired client certificate", func(t *testing.T) {
		w.clock.Advance(400 * 24 * time.Hour)
		defer w.clock.Advance(-400 * 24 * time.Hour)
		kmstest.WantError(t, w.cust.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil), 401, api.CodeUnauthenticated)
	})
	t.Run("health", func(t *testing.T) {
		var h api.Health
		w.env.Anonymous().MustDo(t, "GET", "/healthz", nil, &h)
		if h.Status != "ok" || h.FIPS != kcrypto.FIPS() || h.Seal != "file" {
			t.Fatalf("healthz = %+v", h)
		}
	})
}

func TestInstancesAndAudit(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	other, oc := w.env.App(t, "acme", "ledger", api.RoleCustodian)
	s2 := w.enroll(t, kcrypto.DefaultKEM(), oc.DN)

	var mine api.Instances
	w.cust.MustDo(t, "GET", "/v1/instances", nil, &mine)
	if len(mine.Instances) != 1 || mine.Instances[0].InstanceID != w.side.Enrollment.InstanceID || mine.Instances[0].Enclave != api.EnclaveSoftware {
		t.Fatalf("custodian sees %+v", mine)
	}
	var all api.Instances
	w.env.Admin.MustDo(t, "GET", "/v1/instances", nil, &all)
	if len(all.Instances) != 2 {
		t.Fatalf("admin sees %d instances, want 2", len(all.Instances))
	}
	// A custodian cannot revoke (or even see) another custodian's sidecar.
	err := w.cust.Do("DELETE", "/v1/instances/"+s2.Enrollment.InstanceID, nil, nil)
	kmstest.WantError(t, err, 404, api.CodeNotFound)
	other.MustDo(t, "DELETE", "/v1/instances/"+s2.Enrollment.InstanceID, nil, nil)
	w.env.Admin.MustDo(t, "DELETE", "/v1/instances/"+w.side.Enrollment.InstanceID, nil, nil)
	w.env.Admin.MustDo(t, "GET", "/v1/instances", nil, &all)
	for _, in := range all.Instances {
		if !in.Revoked {
			t.Fatalf("instance %s not revoked", in.InstanceID)
		}
	}

	var page api.AuditPage
	w.env.Admin.MustDo(t, "GET", "/v1/audit?after=0", nil, &page)
	if len(page.Records) < 10 || page.Next != page.Records[len(page.Records)-1].Seq {
		t.Fatalf("audit page has %d records, next %d", len(page.Records), page.Next)
	}
	var sawDenied, sawRevoke bool
	for _, r := range page.Records {
		sawDenied = sawDenied || (r.Action == "instance.revoke" && r.Outcome == "denied") || r.Code == string(api.CodeNotFound)
		sawRevoke = sawRevoke || (r.Action == "instance.revoke" && r.Outcome == "ok")
	}
	if !sawDenied || !sawRevoke {
		t.Fatalf("audit lacks the refused and the successful revocation")
	}
	res, err := audit.Verify(t.Context(), w.env.Server().Store, w.env.Server().KMS.AuditKey())
	if n := res.Records; err != nil || n != int64(len(page.Records))+1 && n < int64(len(page.Records)) {
		t.Fatalf("audit.Verify = %d, %v", n, err)
	}
	kmstest.WantError(t, w.env.Admin.Do("GET", "/v1/audit?after=-1", nil, nil), 400, api.CodeInvalidArgument)
}

func TestRestartLosesNothing(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	dk := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	before, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, dk.EKB)
	if err != nil {
		t.Fatal(err)
	}
	var tok api.EnrollmentToken
	w.pipe.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: w.custCreds.DN}, &tok)

	w.env.Restart()

	after, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, dk.EKB)
	if err != nil {
		t.Fatalf("rewrap after restart: %v", err)
	}
	a, b := w.side.Unwrap(t, &before)[0], w.side.Unwrap(t, &after)[0]
	if !a.Equal(b) {
		t.Fatal("the key changed across a restart")
	}
	kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM()).Enroll(t, w.env.Anonymous(), tok.Token)
	kmstest.WantError(t, w.env.Admin.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, nil), 409, api.CodeConflict)
	if res, err := audit.Verify(t.Context(), w.env.Server().Store, w.env.Server().KMS.AuditKey()); err != nil || res.Records == 0 {
		t.Fatalf("audit.Verify after restart = %d, %v", res.Records, err)
	}
}
