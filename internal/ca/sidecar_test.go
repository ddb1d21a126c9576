package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/fips140"
	"crypto/hpke"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
)

const custodian = "CN=payments-api,O=acme"

func TestIssueInstance(t *testing.T) {
	c := newCA(t)
	k := newKey(t)
	_, cert, err := c.IssueInstance(&k.PublicKey, "i-01HZX", "acme", " cn = payments-api , o = acme ", time.Hour)
	if err != nil {
		t.Fatalf("IssueInstance() error %v", err)
	}
	if dn, _ := NormalizeDN(cert.Subject); dn != "CN=i-01HZX,OU=sidecar,O=acme" {
		t.Errorf("subject = %q", dn)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "dcaas://instance/i-01HZX" {
		t.Errorf("URIs = %v", cert.URIs)
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("EKU = %v", cert.ExtKeyUsage)
	}
	for _, u := range []Usage{UsageClient, UsageServer} {
		if err := c.Verify(cert, u, t0); err != nil {
			t.Errorf("Verify(%d) = %v", u, err)
		}
	}
	if err := c.Verify(cert, UsageWrapping, t0); !errors.Is(err, ErrMalformed) {
		t.Errorf("Verify(instance as wrapping) = %v, want ErrMalformed", err)
	}
	info, err := ParseInstance(cert)
	want := InstanceInfo{InstanceID: "i-01HZX", Tenant: "acme", CustodianDN: custodian, Serial: SerialString(cert)}
	if err != nil || info != want {
		t.Errorf("ParseInstance() = %+v, %v; want %+v", info, err, want)
	}
	if _, err := ParseWrapping(cert); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseWrapping(instance) error = %v, want ErrMalformed", err)
	}
	_, client, err := c.IssueClient(&k.PublicKey, pkix.Name{CommonName: "i-01HZX", OrganizationalUnit: []string{"sidecar"}, Organization: []string{"acme"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseInstance(client); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseInstance(client cert) error = %v, want ErrMalformed", err)
	}
}

func TestIssueSidecarInvalid(t *testing.T) {
	c := newCA(t)
	k := newKey(t)
	kp := newKey(t).PublicKey
	p256, _ := kp.ECDH()
	tests := []struct {
		name, id, tenant, custodian string
	}{
		{"empty id", "", "acme", custodian},
		{"id with slash", "a/b", "acme", custodian},
		{"id with space", "a b", "acme", custodian},
		{"id with comma", "a,OU=x", "acme", custodian},
		{"long id", strings.Repeat("a", 129), "acme", custodian},
		{"no tenant", "i-1", "", custodian},
		{"tenant with control", "i-1", "a\x00", custodian},
		{"no custodian", "i-1", "acme", ""},
		{"bad custodian", "i-1", "acme", "CN=a;O=b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := c.IssueInstance(&k.PublicKey, tt.id, tt.tenant, tt.custodian, time.Hour); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("IssueInstance() error = %v, want ErrInvalidInput", err)
			}
			if _, _, err := c.IssueWrapping(&k.PublicKey, api.KEMP256, p256.Bytes(), tt.id, tt.tenant, tt.custodian, time.Hour); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("IssueWrapping() error = %v, want ErrInvalidInput", err)
			}
		})
	}
}

// kems are the four KEMs with their crypto/hpke instances.
var kems = []struct {
	name api.KEM
	kem  hpke.KEM
}{
	{api.KEMX25519, hpke.DHKEM(ecdh.X25519())},
	{api.KEMP256, hpke.DHKEM(ecdh.P256())},
	{api.KEMMLKEM768X25519, hpke.MLKEM768X25519()},
	{api.KEMMLKEM768P256, hpke.MLKEM768P256()},
}

func generate(t *testing.T, kem hpke.KEM) hpke.PrivateKey {
	t.Helper()
	sk, err := kem.GenerateKey()
	if err != nil {
		if fips140.Enabled() {
			t.Skipf("KEM %#04x unavailable in FIPS mode: %v", kem.ID(), err)
		}
		t.Fatalf("GenerateKey() error %v", err)
	}
	return sk
}

func TestWrappingRoundTrip(t *testing.T) {
	c := newCA(t)
	identity := newKey(t)
	for _, tt := range kems {
		t.Run(string(tt.name), func(t *testing.T) {
			sk := generate(t, tt.kem)
			pk := sk.PublicKey().Bytes()
			_, cert, err := c.IssueWrapping(&identity.PublicKey, tt.name, pk, "i-1", "acme", custodian, time.Hour)
			if err != nil {
				t.Fatalf("IssueWrapping() error %v", err)
			}
			if err := c.Verify(cert, UsageWrapping, t0); err != nil {
				t.Errorf("Verify(wrapping) = %v", err)
			}
			for _, u := range []Usage{UsageClient, UsageServer} {
				if err := c.Verify(cert, u, t0); !errors.Is(err, ErrMalformed) {
					t.Errorf("Verify(wrapping as %d) = %v, want ErrMalformed", u, err)
				}
			}
			// Go's TLS stack must refuse it as a client certificate too.
			if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
				t.Error("crypto/x509 accepts the wrapping certificate for clientAuth")
			}
			if cert.KeyUsage != x509.KeyUsageKeyAgreement|x509.KeyUsageKeyEncipherment {
				t.Errorf("KeyUsage = %v", cert.KeyUsage)
			}
			info, err := ParseWrapping(cert)
			if err != nil {
				t.Fatalf("ParseWrapping() error %v", err)
			}
			want := WrappingInfo{InstanceID: "i-1", Tenant: "acme", CustodianDN: custodian, KEM: tt.name, PublicKey: pk, Serial: SerialString(cert)}
			if info.InstanceID != want.InstanceID || info.Tenant != want.Tenant || info.CustodianDN != want.CustodianDN ||
				info.KEM != want.KEM || !bytes.Equal(info.PublicKey, want.PublicKey) || info.Serial != want.Serial {
				t.Errorf("ParseWrapping() = %+v, want %+v", info, want)
			}
			checkSPKIHolds(t, cert, tt.name, pk, &identity.PublicKey)

			// What the KMS seals to the certificate, the private key opens.
			recipient, err := tt.kem.NewPublicKey(info.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			ct, err := hpke.Seal(recipient, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte("info"), []byte("a DEK"))
			if err != nil {
				t.Fatal(err)
			}
			pt, err := hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte("info"), ct)
			if err != nil || string(pt) != "a DEK" {
				t.Errorf("hpke.Open() = %q, %v", pt, err)
			}
		})
	}
}

// checkSPKIHolds checks that a p256 wrapping certificate carries its key in
// SubjectPublicKeyInfo and the others the identity key.
func checkSPKIHolds(t *testing.T, cert *x509.Certificate, kem api.KEM, pk []byte, identity *ecdsa.PublicKey) {
	t.Helper()
	if kem != api.KEMP256 {
		if !identity.Equal(cert.PublicKey) {
			t.Errorf("SubjectPublicKeyInfo is not the identity key")
		}
		return
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("SubjectPublicKeyInfo is %T", cert.PublicKey)
	}
	e, err := pub.ECDH()
	if err != nil || !bytes.Equal(e.Bytes(), pk) {
		t.Errorf("SubjectPublicKeyInfo is not the p256 wrapping key")
	}
}

func TestIssueWrappingInvalidKey(t *testing.T) {
	c := newCA(t)
	identity := newKey(t)
	p256 := generate(t, hpke.DHKEM(ecdh.P256())).PublicKey().Bytes()
	hybrid := generate(t, hpke.MLKEM768P256()).PublicKey().Bytes()
	tests := []struct {
		name     string
		kem      api.KEM
		key      []byte
		identity crypto.PublicKey
	}{
		{"unknown KEM", "rsa", p256, &identity.PublicKey},
		{"empty KEM", "", p256, &identity.PublicKey},
		{"no key", api.KEMP256, nil, &identity.PublicKey},
		{"short key", api.KEMP256, p256[:64], &identity.PublicKey},
		{"point off the curve", api.KEMP256, append([]byte{4}, bytes.Repeat([]byte{1}, 64)...), &identity.PublicKey},
		{"p256 key for x25519", api.KEMX25519, p256, &identity.PublicKey},
		{"hybrid key for p256", api.KEMP256, hybrid, &identity.PublicKey},
		{"truncated hybrid", api.KEMMLKEM768P256, hybrid[:len(hybrid)-1], &identity.PublicKey},
		{"hybrid without identity", api.KEMMLKEM768P256, hybrid, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := c.IssueWrapping(tt.identity, tt.kem, tt.key, "i-1", "acme", custodian, time.Hour)
			if !errors.Is(err, ErrInvalidInput) {
				t.Errorf("IssueWrapping() error = %v, want ErrInvalidInput", err)
			}
		})
	}
}

// TestParseWrappingInconsistent signs, with the real CA, wrapping
// certificates whose fields disagree, and expects ParseWrapping (and so
// Verify) to refuse each.
func TestParseWrappingInconsistent(t *testing.T) {
	c := newCA(t)
	identity := newKey(t)
	p256 := generate(t, hpke.DHKEM(ecdh.P256())).PublicKey().Bytes()
	otherP256, _ := newKey(t).PublicKey.ECDH()
	wk := func(kem string, key []byte) pkix.Extension {
		v, err := asn1.Marshal(wrappingKey{KEM: kem, PublicKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return pkixExt(oidWrappingKey, v)
	}
	ids := func(id, dn string) []pkix.Extension {
		exts, err := sidecarExts(id, dn)
		if err != nil {
			t.Fatal(err)
		}
		return exts
	}
	base := func() *x509.Certificate {
		return &x509.Certificate{
			Subject:            sidecarSubject("i-1", "acme"),
			KeyUsage:           x509.KeyUsageKeyAgreement | x509.KeyUsageKeyEncipherment,
			UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidEKUWrapping},
			URIs:               []*url.URL{instanceURI("i-1")},
			ExtraExtensions:    append(ids("i-1", custodian), wk("p256", p256)),
		}
	}
	spkiP256, _ := ecdh.P256().NewPublicKey(p256)
	tests := []struct {
		name   string
		modify func(*x509.Certificate)
		spki   crypto.PublicKey
	}{
		{"consistent", func(*x509.Certificate) {}, spkiP256},
		{"SPKI is another key", func(*x509.Certificate) {}, otherP256},
		{"p256 with identity SPKI", func(*x509.Certificate) {}, &identity.PublicKey},
		{"no wrapping extension", func(c *x509.Certificate) { c.ExtraExtensions = ids("i-1", custodian) }, spkiP256},
		{"unknown KEM", func(c *x509.Certificate) { c.ExtraExtensions = append(ids("i-1", custodian), wk("kyber", p256)) }, spkiP256},
		{"bad key", func(c *x509.Certificate) { c.ExtraExtensions = append(ids("i-1", custodian), wk("p256", p256[:10])) }, spkiP256},
		{"garbage extension", func(c *x509.Certificate) {
			c.ExtraExtensions = append(ids("i-1", custodian), pkixExt(oidWrappingKey, []byte{1, 2, 3}))
		}, spkiP256},
		{"id disagrees with CN", func(c *x509.Certificate) { c.ExtraExtensions = append(ids("i-2", custodian), wk("p256", p256)) }, spkiP256},
		{"no URI", func(c *x509.Certificate) { c.URIs = nil }, spkiP256},
		{"other URI", func(c *x509.Certificate) { c.URIs = []*url.URL{instanceURI("i-2")} }, spkiP256},
		{"non-canonical custodian", func(c *x509.Certificate) {
			c.ExtraExtensions = append(ids("i-1", "cn=payments-api, o=acme"), wk("p256", p256))
		}, spkiP256},
		{"no OU", func(c *x509.Certificate) { c.Subject.OrganizationalUnit = nil }, spkiP256},
		{"two tenants", func(c *x509.Certificate) { c.Subject.Organization = []string{"a", "b"} }, spkiP256},
		{"TLS usage", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} }, spkiP256},
		{"no wrapping usage", func(c *x509.Certificate) { c.UnknownExtKeyUsage = nil }, spkiP256},
		{"signing key usage", func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature }, spkiP256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := base()
			tt.modify(tmpl)
			_, cert, err := c.issue(tmpl, tt.spki, time.Hour)
			if err != nil {
				t.Fatalf("issue() error %v", err)
			}
			_, perr := ParseWrapping(cert)
			verr := c.Verify(cert, UsageWrapping, t0)
			if tt.name == "consistent" {
				if perr != nil || verr != nil {
					t.Errorf("ParseWrapping() = %v, Verify() = %v; want nil", perr, verr)
				}
				return
			}
			if !errors.Is(perr, ErrMalformed) || !errors.Is(verr, ErrMalformed) {
				t.Errorf("ParseWrapping() = %v, Verify() = %v; want ErrMalformed", perr, verr)
			}
		})
	}
}
