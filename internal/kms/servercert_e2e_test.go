package kms_test

import (
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/ca"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestServerCertRenewsInPlace runs a KMS whose TLS certificate lives
// 10 seconds, on the real clock and the real ticker: a client connecting
// after two thirds of that sees a new certificate (new serial, new
// expiry) from the same process, and requests keep working throughout.
func TestServerCertRenewsInPlace(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 10 s certificate to be renewed")
	}
	const ttl = 10 * time.Second
	env := kmstest.Start(t, func(o *kms.Options) { o.Config.ServerCertTTL = ttl })
	srv := env.Server()
	first, err := presentedCert(t, env, env.CAPool)
	if err != nil {
		t.Fatal(err)
	}
	if life := time.Until(first.NotAfter); life > ttl || life < ttl-3*time.Second {
		t.Fatalf("the server certificate has %v left, want about %v", life, ttl)
	}
	var second = first
	eventuallyWithin(t, 3*ttl, "a renewed server certificate", func() bool {
		if err := env.Admin.Do("GET", "/v1/instances", nil, nil); err != nil {
			t.Fatalf("a request while waiting for the renewal: %v", err)
		}
		c, err := presentedCert(t, env, env.CAPool)
		if err != nil {
			t.Fatalf("TLS handshake while waiting for the renewal: %v", err)
		}
		second = c
		return !c.Equal(first)
	})
	if time.Now().After(first.NotAfter) {
		t.Errorf("renewed only after the first certificate expired (%v)", first.NotAfter)
	}
	if ca.SerialString(second) == ca.SerialString(first) || !second.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate: serial %s (was %s), expiry %v (was %v)", ca.SerialString(second), ca.SerialString(first), second.NotAfter, first.NotAfter)
	}
	if env.Server() != srv || !srv.KMS.ServerCertificate().Equal(second) {
		t.Error("the KMS was restarted, or does not report the certificate it presents")
	}
}
