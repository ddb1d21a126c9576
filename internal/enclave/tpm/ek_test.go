package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"testing"

	"github.com/dcaas/dcaas/internal/enclave/tpm/tpmsim"
)

func TestEKCertificateFromNV(t *testing.T) {
	e := openEnclave(t, t.TempDir())
	cert := bytes.Repeat([]byte("a DER EK certificate of some length "), 40) // over one NV read
	if err := tpmsim.ProvisionEKCert(sim, ECCEKCertIndex, cert); err != nil {
		t.Fatal(err)
	}
	got, err := e.EKCertificate(t.Context())
	if err != nil {
		t.Fatalf("EKCertificate = %v", err)
	}
	if !bytes.Equal(got, cert) {
		t.Fatalf("EKCertificate = %d bytes, want the %d provisioned", len(got), len(cert))
	}
	ek, err := e.EKPublic(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.EKPublic(t.Context())
	if err != nil || !ek.(*ecdsa.PublicKey).Equal(again) {
		t.Fatalf("the EK changed between calls: %v", err)
	}
}
