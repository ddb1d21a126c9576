package client_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestCertificateLifecycle drives renewal, revocation and a CA rotation
// through the SDK against a real KMS.
func TestCertificateLifecycle(t *testing.T) {
	ctx := t.Context()
	env := kmstest.Start(t, nil)
	adminCert, adminKey := env.AdminPEM(t)
	admin, err := client.NewKMS([]string{env.URL}, env.CAPEM, adminCert, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	creds, err := admin.CreateApp(ctx, "acme", api.CreateAppRequest{Name: "payments-api", Role: api.RoleCustodian})
	if err != nil {
		t.Fatal(err)
	}
	old, err := client.NewKMS([]string{env.URL}, []byte(creds.CAPEM), []byte(creds.CertPEM), []byte(creds.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	renewed, err := old.RenewCertificate(ctx, "")
	if err != nil {
		t.Fatalf("RenewCertificate = %v", err)
	}
	if renewed.KeyPEM == "" || renewed.Serial == creds.Serial || renewed.DN != creds.DN {
		t.Fatalf("RenewCertificate = serial %s (was %s), DN %s, key present %t", renewed.Serial, creds.Serial, renewed.DN, renewed.KeyPEM != "")
	}
	fresh, err := client.NewKMS([]string{env.URL}, []byte(renewed.CAPEM), []byte(renewed.CertPEM), []byte(renewed.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	own, err := fresh.Certificates(ctx, "", "")
	if err != nil || len(own) != 2 {
		t.Fatalf("Certificates(own) = %d, %v; want 2", len(own), err)
	}
	byAdmin, err := admin.Certificates(ctx, "acme", "payments-api")
	if err != nil || len(byAdmin) != 2 {
		t.Fatalf("Certificates(acme, payments-api) = %d, %v; want 2", len(byAdmin), err)
	}
	if _, err := admin.Certificates(ctx, "acme", ""); !errors.Is(err, client.ErrAppNamedHalfway) {
		t.Errorf("Certificates(acme, \"\") = %v, want ErrAppNamedHalfway", err)
	}
	revoked, err := fresh.RevokeCertificates(ctx, "", "", api.RevokeCertificatesRequest{Serial: creds.Serial})
	if err != nil || !slices.Equal(revoked, []string{creds.Serial}) {
		t.Fatalf("RevokeCertificates = %v, %v", revoked, err)
	}
	if _, err := old.ListInstances(ctx); !errors.Is(err, client.ErrRevoked) {
		t.Errorf("the revoked certificate's next call = %v, want ErrRevoked", err)
	}
	if _, err := fresh.ListInstances(ctx); err != nil {
		t.Errorf("the renewed certificate: %v", err)
	}
	if _, err := fresh.IssueAppCertificate(ctx, "acme", "payments-api", ""); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("IssueAppCertificate by a custodian = %v, want ErrForbidden", err)
	}

	// CA rotation, as far as the SDK goes: prepare, and the bundle.
	anon, err := client.NewKMS([]string{env.URL}, env.CAPEM, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	tr, err := anon.CA(ctx)
	if err != nil || tr.Phase != api.CAPhaseStable || len(tr.CAs) != 1 {
		t.Fatalf("CA() = %+v, %v; want one CA, stable", tr, err)
	}
	if _, err := fresh.PrepareCA(ctx); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("PrepareCA by a custodian = %v, want ErrForbidden", err)
	}
	if _, err := admin.ActivateCA(ctx); !errors.Is(err, client.ErrConflict) {
		t.Errorf("ActivateCA before PrepareCA = %v, want ErrConflict", err)
	}
	prepared, err := admin.PrepareCA(ctx)
	if err != nil || prepared.Phase != api.CAPhasePrepared || len(prepared.CAs) != 2 || prepared.IssuingSerial != tr.IssuingSerial {
		t.Fatalf("PrepareCA = %+v, %v", prepared, err)
	}
	if n := countCerts(prepared.BundlePEM); n != 2 {
		t.Errorf("bundle after PrepareCA holds %d certificates, want 2", n)
	}
	again, err := fresh.RenewCertificate(ctx, "")
	if err != nil || countCerts(again.CAPEM) != 2 {
		t.Errorf("RenewCertificate after PrepareCA: ca_pem holds %d certificates (%v), want the bundle of 2", countCerts(again.CAPEM), err)
	}
}

func countCerts(bundle string) int {
	n := 0
	rest := []byte(bundle)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return n
		}
		if _, err := x509.ParseCertificate(b.Bytes); err == nil {
			n++
		}
	}
}
