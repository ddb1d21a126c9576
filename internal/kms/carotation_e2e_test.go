package kms_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// poolOf is a pool of every certificate in a PEM bundle.
func poolOf(t *testing.T, bundle string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM([]byte(bundle)) {
		t.Fatal("no certificate in the bundle")
	}
	return p
}

// presentedCert makes a fresh TLS connection to the KMS, trusting pool,
// and returns the server certificate it presented.
func presentedCert(t *testing.T, env *kmstest.Env, pool *x509.CertPool) (*x509.Certificate, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", env.Addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// eventually retries cond every 20 ms for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, 10*time.Second, what, cond)
}

func eventuallyWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readCA(t *testing.T, c *kmstest.Client) api.CATrust {
	t.Helper()
	var tr api.CATrust
	c.MustDo(t, "GET", "/v1/ca", nil, &tr)
	return tr
}

// checkTrust checks a CATrust against what it must say, and that the
// data dir's ca.pem holds the same bundle.
func checkTrust(t *testing.T, env *kmstest.Env, tr api.CATrust, phase api.CAPhase, issuing string, trusted ...string) {
	t.Helper()
	if tr.Phase != phase || tr.IssuingSerial != issuing || len(tr.CAs) != len(trusted) {
		t.Fatalf("CA trust = phase %s issuing %s, %d CAs; want %s %s %d", tr.Phase, tr.IssuingSerial, len(tr.CAs), phase, issuing, len(trusted))
	}
	bundle := parseCerts(t, tr.BundlePEM)
	for i, serial := range trusted {
		if tr.CAs[i].Serial != serial || ca.SerialString(bundle[i]) != serial || tr.CAs[i].Issuing != (serial == issuing) {
			t.Errorf("CA %d = %+v (bundle %s), want serial %s", i, tr.CAs[i], ca.SerialString(bundle[i]), serial)
		}
	}
	eventually(t, "ca.pem holds the bundle", func() bool {
		b, err := os.ReadFile(filepath.Join(env.DataDir, kms.CAFile))
		return err == nil && string(b) == tr.BundlePEM
	})
}

func TestCARotation(t *testing.T) {
	const checkInterval = 50 * time.Millisecond
	env := kmstest.Start(t, func(o *kms.Options) { o.Config.CertCheckInterval = checkInterval })
	anon := env.Anonymous()
	env.Tenant(t, "acme")
	_, custCreds := env.App(t, "acme", "payments-api", api.RoleCustodian)
	pipe, _ := env.App(t, "acme", "deployer", api.RolePipeline)
	enroll := func(c *kmstest.Client) *kmstest.FakeSidecar {
		var tok api.EnrollmentToken
		pipe.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: custCreds.DN}, &tok)
		s := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
		s.Enroll(t, c, tok.Token)
		return s
	}
	oldSide := enroll(anon)

	before := readCA(t, anon)
	oldSerial := before.IssuingSerial
	checkTrust(t, env, before, api.CAPhaseStable, oldSerial, oldSerial)
	if before.ChangedAt != nil {
		t.Errorf("changed_at = %v before any rotation, want none", before.ChangedAt)
	}
	for _, step := range []string{"activate", "retire"} {
		kmstest.WantError(t, env.Admin.Do("POST", "/v1/ca/"+step, nil, nil), http.StatusConflict, api.CodeConflict)
	}

	// Prepare: a second CA in the bundle; the old one still issues.
	var prepared api.CATrust
	env.Admin.MustDo(t, "POST", "/v1/ca/prepare", nil, &prepared)
	newSerial := prepared.CAs[len(prepared.CAs)-1].Serial
	checkTrust(t, env, prepared, api.CAPhasePrepared, oldSerial, oldSerial, newSerial)
	checkTrust(t, env, readCA(t, anon), api.CAPhasePrepared, oldSerial, oldSerial, newSerial)
	if prepared.ChangedAt == nil {
		t.Error("changed_at absent after prepare")
	}
	kmstest.WantError(t, env.Admin.Do("POST", "/v1/ca/prepare", nil, nil), http.StatusConflict, api.CodeConflict)
	kmstest.WantError(t, env.Admin.Do("POST", "/v1/ca/retire", nil, nil), http.StatusConflict, api.CodeConflict)
	// Sidecars and applications learn the whole bundle.
	midSide := enroll(anon)
	if !sameBundle(t, midSide.Enrollment.CAPEM, prepared.BundlePEM) {
		t.Errorf("enrollment ca_pem holds %d certificates, want the bundle of 2", len(parseCerts(t, midSide.Enrollment.CAPEM)))
	}
	_, midCreds := env.App(t, "acme", "reporting", api.RoleCustodian)
	if !sameBundle(t, midCreds.CAPEM, prepared.BundlePEM) || issuerSerial(t, env, midCreds.CertPEM, prepared) != oldSerial {
		t.Errorf("an app created after prepare: ca_pem is not the bundle, or its certificate is not by the old CA")
	}

	// Between prepare and activate, every peer of the KMS takes the bundle
	// (the KMS's TLS certificate comes from the new CA after activate).
	bundle := poolOf(t, prepared.BundlePEM)
	adminCert, adminKey := env.AdminPEM(t)
	admin := clientWith(t, env, bundle, string(adminCert), string(adminKey))
	oldCust := clientWith(t, env, bundle, custCreds.CertPEM, custCreds.KeyPEM)

	// Activate: the new CA issues, the old one is still trusted.
	var activated api.CATrust
	admin.MustDo(t, "POST", "/v1/ca/activate", nil, &activated)
	// The bundle lists the issuing CA first.
	checkTrust(t, env, activated, api.CAPhaseActivated, newSerial, newSerial, oldSerial)
	kmstest.WantError(t, admin.Do("POST", "/v1/ca/activate", nil, nil), http.StatusConflict, api.CodeConflict)
	var renewed api.AppCredentials
	oldCust.MustDo(t, "POST", "/v1/apps/self/certificate", nil, &renewed)
	if got := issuerSerial(t, env, renewed.CertPEM, activated); got != newSerial {
		t.Fatalf("a certificate renewed after activate is issued by %s, want the new CA %s", got, newSerial)
	}
	newCust := clientWith(t, env, bundle, renewed.CertPEM, renewed.KeyPEM)
	newSide := enroll(clientWith(t, env, bundle, "", ""))
	for name, c := range map[string]*kmstest.Client{
		"old custodian": oldCust, "renewed custodian": newCust,
	} {
		if err := c.Do("GET", "/v1/instances", nil, nil); err != nil {
			t.Errorf("%s while both CAs are trusted: %v", name, err)
		}
	}
	for name, s := range map[string]*kmstest.FakeSidecar{"old sidecar": oldSide, "new sidecar": newSide} {
		c := clientWith(t, env, bundle, s.Enrollment.CertPEM, keyPEMOf(t, s.Key))
		if err := c.Do("GET", "/v1/revocations", nil, nil); err != nil {
			t.Errorf("%s while both CAs are trusted: %v", name, err)
		}
	}
	// The KMS re-issues its own TLS certificate from the new CA, in place.
	newOnly := poolOf(t, activated.CAs[0].CertPEM)
	eventually(t, "the TLS server certificate is issued by the new CA", func() bool {
		c, err := presentedCert(t, env, bundle)
		if err != nil {
			return false
		}
		_, err = c.Verify(x509.VerifyOptions{Roots: newOnly})
		return err == nil
	})

	// Retire: refused while the caller's own certificate would be cut off
	// (once the retire delay after activate, two check intervals, passed).
	eventually(t, "the retire delay passes", func() bool { return time.Since(*activated.ChangedAt) > 2*checkInterval })
	kmstest.WantError(t, admin.Do("POST", "/v1/ca/retire", nil, nil), http.StatusConflict, api.CodeConflict)
	var adminCreds api.AppCredentials
	admin.MustDo(t, "POST", "/v1/apps/self/certificate", nil, &adminCreds)
	newAdmin := clientWith(t, env, bundle, adminCreds.CertPEM, adminCreds.KeyPEM)
	var retired api.CATrust
	newAdmin.MustDo(t, "POST", "/v1/ca/retire", nil, &retired)
	checkTrust(t, env, retired, api.CAPhaseStable, newSerial, newSerial)

	// Certificates that chain only to the old CA are refused at once; the
	// new ones work, over a TLS connection trusting only the new CA.
	newPool := poolOf(t, retired.BundlePEM)
	if _, err := presentedCert(t, env, newPool); err != nil {
		t.Fatalf("TLS with only the new CA trusted: %v", err)
	}
	kmstest.WantError(t, oldCust.Do("GET", "/v1/instances", nil, nil), http.StatusUnauthorized, api.CodeUnauthenticated)
	kmstest.WantError(t, admin.Do("GET", "/v1/instances", nil, nil), http.StatusUnauthorized, api.CodeUnauthenticated)
	oldSideClient := clientWith(t, env, newPool, oldSide.Enrollment.CertPEM, keyPEMOf(t, oldSide.Key))
	kmstest.WantError(t, oldSideClient.Do("GET", "/v1/revocations", nil, nil), http.StatusUnauthorized, api.CodeUnauthenticated)
	// Rewrap refuses the old sidecar's wrapping certificate too.
	var dk api.DataKey
	newCust = clientWith(t, env, newPool, renewed.CertPEM, renewed.KeyPEM)
	newCust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
	err := newCust.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dk.EKB}, WrappingCertPEM: oldSide.Enrollment.WrappingCertPEM}, nil)
	kmstest.WantError(t, err, http.StatusForbidden, api.CodeForbidden)
	if err := newCust.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dk.EKB}, WrappingCertPEM: newSide.Enrollment.WrappingCertPEM}, nil); err != nil {
		t.Errorf("rewrap to the new sidecar after retire: %v", err)
	}
	for _, c := range []*kmstest.Client{clientWith(t, env, newPool, adminCreds.CertPEM, adminCreds.KeyPEM)} {
		if err := c.Do("GET", "/v1/instances", nil, nil); err != nil {
			t.Errorf("the renewed admin after retire: %v", err)
		}
	}

	// A restart keeps the rotated state; a second rotation works the same.
	env.Restart()
	restarted := clientWith(t, env, newPool, adminCreds.CertPEM, adminCreds.KeyPEM)
	checkTrust(t, env, readCA(t, restarted), api.CAPhaseStable, newSerial, newSerial)
	var again api.CATrust
	restarted.MustDo(t, "POST", "/v1/ca/prepare", nil, &again)
	third := again.CAs[1].Serial
	checkTrust(t, env, again, api.CAPhasePrepared, newSerial, newSerial, third)
	if third == oldSerial || third == newSerial {
		t.Errorf("the third CA reuses serial %s", third)
	}
}

// sameBundle reports whether two PEM bundles hold the same certificates in
// the same order.
func sameBundle(t *testing.T, a, b string) bool {
	t.Helper()
	ca, cb := parseCerts(t, a), parseCerts(t, b)
	if len(ca) != len(cb) {
		return false
	}
	for i := range ca {
		if !ca[i].Equal(cb[i]) {
			return false
		}
	}
	return true
}

// issuerSerial names which CA of tr signed the certificate in certPEM.
func issuerSerial(t *testing.T, _ *kmstest.Env, certPEM string, tr api.CATrust) string {
	t.Helper()
	leaf := parseCerts(t, certPEM)[0]
	for _, c := range tr.CAs {
		if leaf.CheckSignatureFrom(parseCerts(t, c.CertPEM)[0]) == nil {
			return c.Serial
		}
	}
	return ""
}

// TestResealCoversRotatedCAs: moving the data dir to another seal must
// reseal every CA's key, not only the first, each under its own AAD.
func TestResealCoversRotatedCAs(t *testing.T) {
	env := kmstest.Start(t, nil)
	env.Admin.MustDo(t, "POST", "/v1/ca/prepare", nil, nil)
	env.Stop()
	items := resealed(t, env, kms.SealedCAKey)
	if len(items) != 2 || items[0].Version != 1 || items[1].Version != 2 || bytes.Equal(items[0].AAD, items[1].AAD) ||
		items[0].String() != "CA key" || items[1].String() != "CA key 2" {
		t.Fatalf("resealed CA keys %v, want CA key 1 and 2 under distinct AADs", items)
	}
	env.Restart()
	if tr := readCA(t, env.Anonymous()); tr.Phase != api.CAPhasePrepared || len(tr.CAs) != 2 {
		t.Errorf("after reseal and restart: phase %s with %d CAs, want prepared with 2", tr.Phase, len(tr.CAs))
	}
}

// TestCARetireWaitsForReplicas: retire is refused until two check
// intervals after activate, the time replicas need to pick the new CA up
// and re-issue their TLS certificates.
func TestCARetireWaitsForReplicas(t *testing.T) {
	clock := kmstest.NewClock()
	const interval = 30 * time.Second
	env := kmstest.Start(t, func(o *kms.Options) {
		o.Now = clock.Now
		o.Config.CertCheckInterval = interval
		o.Config.CertTicks = make(chan time.Time)
	})
	env.Admin.MustDo(t, "POST", "/v1/ca/prepare", nil, nil)
	var tr api.CATrust
	env.Admin.MustDo(t, "POST", "/v1/ca/activate", nil, &tr)
	var creds api.AppCredentials
	env.Admin.MustDo(t, "POST", "/v1/apps/self/certificate", nil, &creds)
	admin := clientWith(t, env, poolOf(t, tr.BundlePEM), creds.CertPEM, creds.KeyPEM)
	for _, step := range []struct {
		after time.Duration
		ok    bool
	}{{0, false}, {2*interval - time.Second, false}, {2*interval + time.Second, true}} {
		clock.Advance(tr.ChangedAt.Add(step.after).Sub(clock.Now()))
		err := admin.Do("POST", "/v1/ca/retire", nil, nil)
		if step.ok {
			if err != nil {
				t.Fatalf("retire %v after activate = %v, want success", step.after, err)
			}
			continue
		}
		kmstest.WantError(t, err, http.StatusConflict, api.CodeConflict)
	}
}
