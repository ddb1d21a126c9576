package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net/url"
	"testing"
	"time"
)

func csrPEM(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest() error %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestIssueFromCSR(t *testing.T) {
	c := newCA(t)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []crypto.Signer{newKey(t), edKey} {
		// The requester asks for a subject, SANs and an extension of its
		// choosing; none of it may appear in the certificate.
		req := &x509.CertificateRequest{
			Subject:         pkix.Name{CommonName: "admin", Organization: []string{"evil"}},
			DNSNames:        []string{"kms.example.com"},
			URIs:            []*url.URL{{Scheme: "dcaas", Host: "instance", Path: "/x"}},
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff}}},
		}
		subject := pkix.Name{CommonName: "payments-api", Organization: []string{"acme"}}
		_, cert, err := c.IssueFromCSR(csrPEM(t, key, req), subject, time.Hour)
		if err != nil {
			t.Fatalf("IssueFromCSR(%T) error %v", key, err)
		}
		if dn, _ := NormalizeDN(cert.Subject); dn != "CN=payments-api,O=acme" {
			t.Errorf("subject = %q, want ours", dn)
		}
		if len(cert.DNSNames) != 0 || len(cert.URIs) != 0 || cert.IsCA {
			t.Errorf("requested fields leaked: DNS %v URIs %v IsCA %v", cert.DNSNames, cert.URIs, cert.IsCA)
		}
		if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
			t.Error("certificate does not carry the CSR's key")
		}
		if err := c.Verify(cert, UsageClient, t0); err != nil {
			t.Errorf("Verify() = %v", err)
		}
	}
}

func TestIssueFromCSRInvalid(t *testing.T) {
	c := newCA(t)
	key := newKey(t)
	good := csrPEM(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}})
	block, _ := pem.Decode(good)
	reencode := func(der []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	badSig := bytes.Clone(block.Bytes)
	badSig[len(badSig)-1] ^= 1
	badSubject := bytes.Clone(block.Bytes)
	i := bytes.Index(badSubject, []byte("x"))
	badSubject[i] = 'y'

	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pem  []byte
	}{
		{"empty", nil},
		{"not PEM", []byte("hello")},
		{"wrong PEM type", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes})},
		{"garbage DER", reencode([]byte{0x30, 0x03, 0x02, 0x01, 0x01})},
		{"bad signature", reencode(badSig)},
		{"altered subject", reencode(badSubject)},
		{"data after the block", append(bytes.Clone(good), "junk"...)},
		{"two blocks", append(bytes.Clone(good), good...)},
		{"weak curve", csrPEM(t, p224, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}})},
		{"too large", append(bytes.Clone(good), bytes.Repeat([]byte("\n"), maxCSRSize)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := c.IssueFromCSR(tt.pem, pkix.Name{CommonName: "a"}, time.Hour)
			if !errors.Is(err, ErrInvalidCSR) {
				t.Errorf("IssueFromCSR() error = %v, want ErrInvalidCSR", err)
			}
		})
	}
	if _, err := ParseCSR(append(bytes.Clone(good), "\n\n"...)); err != nil {
		t.Errorf("ParseCSR(trailing newlines) = %v", err)
	}
}
