package kms_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// parseCerts parses every PEM CERTIFICATE block of s.
func parseCerts(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// clientWith is a KMS client trusting pool (a trust bundle) and
// authenticating with certPEM/keyPEM.
func clientWith(t *testing.T, env *kmstest.Env, pool *x509.CertPool, certPEM, keyPEM string) *kmstest.Client {
	t.Helper()
	return env.ClientTrusting(pool, []byte(certPEM), []byte(keyPEM))
}

// csrFor is a PEM CSR signed by key.
func csrFor(t *testing.T, key crypto.Signer) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func keyPEMOf(t *testing.T, key *ecdsa.PrivateKey) string {
	t.Helper()
	b, err := kcrypto.MarshalPrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkCreds checks renewed credentials: a certificate for dn from the
// issuing CA, registered under serial, with a key matching it.
func checkCreds(t *testing.T, env *kmstest.Env, creds api.AppCredentials, dn string, wantKey bool) *x509.Certificate {
	t.Helper()
	certs := parseCerts(t, creds.CertPEM)
	if len(certs) != 1 {
		t.Fatalf("cert_pem holds %d certificates, want 1", len(certs))
	}
	cert := certs[0]
	if creds.DN != dn || cert.Subject.String() != dn {
		t.Errorf("renewed DN %q, subject %q; want %q", creds.DN, cert.Subject, dn)
	}
	if creds.Serial != ca.SerialString(cert) || !creds.NotAfter.Equal(cert.NotAfter) {
		t.Errorf("serial %q not_after %v; the certificate says %q %v", creds.Serial, creds.NotAfter, ca.SerialString(cert), cert.NotAfter)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: env.Server().KMS.ClientCAs(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the renewed certificate does not chain to the KMS CA: %v", err)
	}
	if (creds.KeyPEM != "") != wantKey {
		t.Errorf("key_pem present = %t, want %t", creds.KeyPEM != "", wantKey)
	}
	if wantKey {
		if _, err := tls.X509KeyPair([]byte(creds.CertPEM), []byte(creds.KeyPEM)); err != nil {
			t.Errorf("the returned key does not match the certificate: %v", err)
		}
	}
	if len(parseCerts(t, creds.CAPEM)) != 1 {
		t.Errorf("ca_pem holds %d certificates, want the 1 of the bundle", len(parseCerts(t, creds.CAPEM)))
	}
	return cert
}

func TestAppRenewsAndRevokesItsCertificate(t *testing.T) {
	key, err := kcrypto.GenerateIdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		req  any // the renewal body
		key  string
	}{
		{"KMS-generated key, empty body", nil, ""},
		{"KMS-generated key, empty object", json.RawMessage(`{}`), ""},
		{"CSR", api.RenewCertificateRequest{CSRPEM: csrFor(t, key)}, keyPEMOf(t, key)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := kmstest.Start(t, nil)
			env.Tenant(t, "acme")
			old, oldCreds := env.App(t, "acme", "payments-api", api.RoleCustodian)
			var renewed api.AppCredentials
			old.MustDo(t, "POST", "/v1/apps/self/certificate", tt.req, &renewed)
			cert := checkCreds(t, env, renewed, oldCreds.DN, tt.key == "")
			if cert.SerialNumber.Cmp(parseCerts(t, oldCreds.CertPEM)[0].SerialNumber) == 0 {
				t.Fatal("the renewal returned the old certificate")
			}
			keyPEM := renewed.KeyPEM
			if tt.key != "" {
				keyPEM = tt.key
			}
			fresh := env.Client([]byte(renewed.CertPEM), []byte(keyPEM))
			// Both work: the old certificate stays valid until revoked.
			for name, c := range map[string]*kmstest.Client{"old": old, "renewed": fresh} {
				if err := c.Do("GET", "/v1/instances", nil, nil); err != nil {
					t.Errorf("%s certificate after renewal: %v", name, err)
				}
			}
			var list api.AppCertificates
			fresh.MustDo(t, "GET", "/v1/apps/self/certificates", nil, &list)
			if got := bySerial(list); len(got) != 2 || got[oldCreds.Serial].Revoked || got[renewed.Serial].Revoked ||
				got[oldCreds.Serial].Serial == "" || got[renewed.Serial].Serial == "" {
				t.Fatalf("certificates = %+v, want the old and the renewed one, neither revoked", list.Certificates)
			}
			// The renewed certificate revokes the old one, typed as openssl
			// prints serials: upper case, colon-separated, with a leading zero.
			var rev api.RevokedCertificates
			fresh.MustDo(t, "POST", "/v1/apps/self/certificates/revoke", api.RevokeCertificatesRequest{Serial: opensslSerial(parseCerts(t, oldCreds.CertPEM)[0])}, &rev)
			if !slices.Equal(rev.Revoked, []string{oldCreds.Serial}) {
				t.Fatalf("revoked %v, want [%s]", rev.Revoked, oldCreds.Serial)
			}
			// At once: the very next request with the old certificate, on
			// the connection it already holds, is refused.
			kmstest.WantError(t, old.Do("GET", "/v1/instances", nil, nil), http.StatusForbidden, api.CodeRevoked)
			kmstest.WantError(t, old.Do("POST", "/v1/apps/self/certificate", nil, nil), http.StatusForbidden, api.CodeRevoked)
			if err := fresh.Do("GET", "/v1/instances", nil, nil); err != nil {
				t.Errorf("renewed certificate after revoking the old one: %v", err)
			}
			env.Admin.MustDo(t, "GET", "/v1/tenants/acme/apps/payments-api/certificates", nil, &list)
			if got := bySerial(list); len(got) != 2 || !got[oldCreds.Serial].Revoked || got[oldCreds.Serial].RevokedAt == nil || got[renewed.Serial].Revoked {
				t.Errorf("the admin lists %+v, want the old one revoked", list.Certificates)
			}
		})
	}
}

func bySerial(l api.AppCertificates) map[string]api.AppCertificate {
	m := map[string]api.AppCertificate{}
	for _, c := range l.Certificates {
		m[c.Serial] = c
	}
	return m
}

// opensslSerial writes a serial as `openssl x509 -serial` and browsers do.
func opensslSerial(c *x509.Certificate) string {
	b := c.SerialNumber.Bytes()
	parts := []string{"00"}
	for _, x := range b {
		parts = append(parts, strings.ToUpper(hex2(x)))
	}
	return strings.Join(parts, ":")
}

func hex2(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&15]})
}

func TestAdminManagesAppCertificates(t *testing.T) {
	env := kmstest.Start(t, nil)
	env.Tenant(t, "acme")
	env.Tenant(t, "globex")
	cust, creds := env.App(t, "acme", "payments-api", api.RoleCustodian)
	other, _ := env.App(t, "globex", "payments-api", api.RoleCustodian) // same name, another tenant

	// Revoke every certificate of acme's app: it is cut off, globex's app
	// of the same name is not.
	var rev api.RevokedCertificates
	env.Admin.MustDo(t, "POST", "/v1/tenants/acme/apps/payments-api/certificates/revoke", api.RevokeCertificatesRequest{All: true}, &rev)
	if !slices.Equal(rev.Revoked, []string{creds.Serial}) {
		t.Fatalf("revoked %v, want [%s]", rev.Revoked, creds.Serial)
	}
	kmstest.WantError(t, cust.Do("GET", "/v1/instances", nil, nil), http.StatusForbidden, api.CodeRevoked)
	if err := other.Do("GET", "/v1/instances", nil, nil); err != nil {
		t.Fatalf("globex's app after acme's was revoked: %v", err)
	}
	// Revoking again revokes nothing new; by serial it is idempotent.
	env.Admin.MustDo(t, "POST", "/v1/tenants/acme/apps/payments-api/certificates/revoke", api.RevokeCertificatesRequest{All: true}, &rev)
	if len(rev.Revoked) != 0 {
		t.Errorf("second revoke-all revoked %v, want nothing", rev.Revoked)
	}
	env.Admin.MustDo(t, "POST", "/v1/tenants/acme/apps/payments-api/certificates/revoke", api.RevokeCertificatesRequest{Serial: creds.Serial}, &rev)
	if !slices.Equal(rev.Revoked, []string{creds.Serial}) {
		t.Errorf("revoking a revoked serial again = %v, want it listed", rev.Revoked)
	}

	// The app cannot renew itself any more; the admin issues it a new
	// certificate (recovery), with a key the app keeps.
	key, err := kcrypto.GenerateIdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	var issued api.AppCredentials
	env.Admin.MustDo(t, "POST", "/v1/tenants/acme/apps/payments-api/certificate", api.RenewCertificateRequest{CSRPEM: csrFor(t, key)}, &issued)
	checkCreds(t, env, issued, creds.DN, false)
	back := env.Client([]byte(issued.CertPEM), []byte(keyPEMOf(t, key)))
	if err := back.Do("GET", "/v1/instances", nil, nil); err != nil {
		t.Fatalf("the app with its admin-issued certificate: %v", err)
	}
	// The app may manage its own certificates through the tenant path too.
	var list api.AppCertificates
	back.MustDo(t, "GET", "/v1/tenants/acme/apps/payments-api/certificates", nil, &list)
	if len(list.Certificates) != 2 {
		t.Errorf("the app lists %d certificates, want 2", len(list.Certificates))
	}

	// The admin renews its own certificate like any application.
	var adminCreds api.AppCredentials
	env.Admin.MustDo(t, "POST", "/v1/apps/self/certificate", nil, &adminCreds)
	checkCreds(t, env, adminCreds, "CN=admin,O=dcaas", true)
	admin2 := env.Client([]byte(adminCreds.CertPEM), []byte(adminCreds.KeyPEM))
	if err := admin2.Do("POST", "/v1/tenants", api.CreateTenantRequest{Name: "initech"}, nil); err != nil {
		t.Errorf("the renewed admin certificate: %v", err)
	}
}

func TestAppCertificateRefusals(t *testing.T) {
	clock := kmstest.NewClock()
	env := kmstest.Start(t, func(o *kms.Options) {
		o.Now = clock.Now
		o.Config.CertTicks = make(chan time.Time) // the fake clock must not renew the server certificate
	})
	env.Tenant(t, "acme")
	cust, custCreds := env.App(t, "acme", "payments-api", api.RoleCustodian)
	pipe, _ := env.App(t, "acme", "deployer", api.RolePipeline)
	_, _ = env.App(t, "acme", "victim", api.RoleCustodian)
	side, sidecar := env.EnrolledFake(t, pipe, custCreds.DN)

	// A certificate from another CA, for the same DN.
	der, caKey, err := ca.Generate("dcaas KMS CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := ca.New(der, caKey)
	if err != nil {
		t.Fatal(err)
	}
	fkey, err := kcrypto.GenerateIdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	fder, _, err := stranger.IssueClient(fkey.Public(), pkix.Name{CommonName: "payments-api", Organization: []string{"acme"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign := env.Client(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fder}), []byte(keyPEMOf(t, fkey)))

	// Malformed CSRs.
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := csrFor(t, fkey)
	block, _ := pem.Decode([]byte(good))
	tampered := slices.Clone(block.Bytes)
	tampered[len(tampered)-1] ^= 1
	badSig := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}))

	// A revoked app.
	revoked, _ := env.App(t, "acme", "gone", api.RoleCustodian)
	env.Admin.MustDo(t, "POST", "/v1/tenants/acme/apps/gone/certificates/revoke", api.RevokeCertificatesRequest{All: true}, nil)

	victimSerial := func() string {
		var l api.AppCertificates
		env.Admin.MustDo(t, "GET", "/v1/tenants/acme/apps/victim/certificates", nil, &l)
		return l.Certificates[0].Serial
	}()

	tests := []struct {
		name   string
		c      *kmstest.Client
		method string
		path   string
		body   any
		status int
		code   api.Code
	}{
		{"no certificate", env.Anonymous(), "POST", "/v1/apps/self/certificate", nil, 401, api.CodeUnauthenticated},
		{"foreign CA", foreign, "POST", "/v1/apps/self/certificate", nil, 401, api.CodeUnauthenticated},
		{"revoked", revoked, "POST", "/v1/apps/self/certificate", nil, 403, api.CodeRevoked},
		{"sidecar renews as an app", sidecar, "POST", "/v1/apps/self/certificate", nil, 403, api.CodeForbidden},
		{"sidecar lists", sidecar, "GET", "/v1/apps/self/certificates", nil, 403, api.CodeForbidden},
		{"custodian issues for an app", cust, "POST", "/v1/tenants/acme/apps/payments-api/certificate", nil, 403, api.CodeForbidden},
		{"custodian lists another app", cust, "GET", "/v1/tenants/acme/apps/victim/certificates", nil, 403, api.CodeForbidden},
		{"custodian revokes another app", cust, "POST", "/v1/tenants/acme/apps/victim/certificates/revoke", api.RevokeCertificatesRequest{All: true}, 403, api.CodeForbidden},
		{"pipeline prepares a CA", pipe, "POST", "/v1/ca/prepare", nil, 403, api.CodeForbidden},
		{"CSR not PEM", cust, "POST", "/v1/apps/self/certificate", api.RenewCertificateRequest{CSRPEM: "hello"}, 400, api.CodeInvalidCSR},
		{"CSR of the wrong PEM type", cust, "POST", "/v1/apps/self/certificate", api.RenewCertificateRequest{CSRPEM: custCreds.CertPEM}, 400, api.CodeInvalidCSR},
		{"CSR with a bad signature", cust, "POST", "/v1/apps/self/certificate", api.RenewCertificateRequest{CSRPEM: badSig}, 400, api.CodeInvalidCSR},
		{"CSR with a P-224 key", cust, "POST", "/v1/apps/self/certificate", api.RenewCertificateRequest{CSRPEM: csrFor(t, p224)}, 400, api.CodeInvalidCSR},
		{"CSR followed by junk", env.Admin, "POST", "/v1/tenants/acme/apps/victim/certificate", api.RenewCertificateRequest{CSRPEM: good + "junk"}, 400, api.CodeInvalidCSR},
		{"unknown field", cust, "POST", "/v1/apps/self/certificate", json.RawMessage(`{"csr":"x"}`), 400, api.CodeUnknownField},
		{"not JSON", cust, "POST", "/v1/apps/self/certificate", json.RawMessage(`{`), 400, api.CodeBadRequest},
		{"revoke neither", cust, "POST", "/v1/apps/self/certificates/revoke", api.RevokeCertificatesRequest{}, 400, api.CodeInvalidArgument},
		{"revoke both", cust, "POST", "/v1/apps/self/certificates/revoke", api.RevokeCertificatesRequest{Serial: custCreds.Serial, All: true}, 400, api.CodeInvalidArgument},
		{"revoke no body", cust, "POST", "/v1/apps/self/certificates/revoke", nil, 400, api.CodeBadRequest},
		{"serial not hex", cust, "POST", "/v1/apps/self/certificates/revoke", api.RevokeCertificatesRequest{Serial: "xyz"}, 400, api.CodeInvalidArgument},
		{"serial zero", cust, "POST", "/v1/apps/self/certificates/revoke", api.RevokeCertificatesRequest{Serial: "00:00"}, 400, api.CodeInvalidArgument},
		{"serial too long", cust, "POST", "/v1/apps/self/certificates/revoke", api.RevokeCertificatesRequest{Serial: strings.Repeat("f", 41)}, 400, api.CodeInvalidArgument},
		{"unknown serial", cust, "POST", "/v1/apps/self/certificates/revoke", api.RevokeCertificatesRequest{Serial: "abcdef"}, 404, api.CodeNotFound},
		{"another app's serial", cust, "POST", "/v1/apps/self/certificates/revoke", api.RevokeCertificatesRequest{Serial: victimSerial}, 404, api.CodeNotFound},
		{"sidecar's own serial", cust, "POST", "/v1/apps/self/certificates/revoke", api.RevokeCertificatesRequest{Serial: ca.SerialString(parseCerts(t, side.Enrollment.CertPEM)[0])}, 404, api.CodeNotFound},
		{"unknown app", env.Admin, "GET", "/v1/tenants/acme/apps/nobody/certificates", nil, 404, api.CodeNotFound},
		{"unknown tenant", env.Admin, "POST", "/v1/tenants/nope/apps/payments-api/certificate", nil, 404, api.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kmstest.WantError(t, tt.c.Do(tt.method, tt.path, tt.body, nil), tt.status, tt.code)
		})
	}
	// Nothing above changed the victim's certificates.
	if victimSerial != func() string {
		var l api.AppCertificates
		env.Admin.MustDo(t, "GET", "/v1/tenants/acme/apps/victim/certificates", nil, &l)
		if len(l.Certificates) != 1 || l.Certificates[0].Revoked {
			t.Errorf("victim's certificates = %+v, want its one, unrevoked", l.Certificates)
		}
		return l.Certificates[0].Serial
	}() {
		t.Error("the victim's certificate changed")
	}

	// Expired: a year and a day later, the custodian's certificate no
	// longer renews itself (the admin must issue a new one).
	clock.Advance(366 * 24 * time.Hour)
	kmstest.WantError(t, cust.Do("POST", "/v1/apps/self/certificate", nil, nil), 401, api.CodeUnauthenticated)
}
