package kms

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
)

// FuzzParseCSR: the enrollment CSR parser never panics and refuses with an
// invalid_csr API error; what it accepts has a verified signature.
func FuzzParseCSR(f *testing.F) {
	key, err := kcrypto.GenerateIdentityKey()
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "s"}}, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})))
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		csr, err := parseCSR(s)
		if err != nil {
			var e *api.Error
			if !errors.As(err, &e) || e.Code != api.CodeInvalidCSR {
				t.Fatalf("parseCSR refused with %v, want invalid_csr", err)
			}
			return
		}
		if csr.CheckSignature() != nil {
			t.Fatal("parseCSR accepted a CSR whose signature does not verify")
		}
	})
}
