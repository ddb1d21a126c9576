package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/policy"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newCA returns a CA generated at t0, valid for a year, whose clock is t0.
func newCA(t *testing.T) *CA {
	t.Helper()
	der, key, err := Generate("dcaas test CA", t0, 365*24*time.Hour)
	if err != nil {
		t.Fatalf("Generate() error %v", err)
	}
	c, err := New(der, key)
	if err != nil {
		t.Fatalf("New() error %v", err)
	}
	c.Now = func() time.Time { return t0 }
	return c
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestGenerate(t *testing.T) {
	c := newCA(t)
	cert := c.Cert()
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		t.Errorf("CA basic constraints = IsCA %v, MaxPathLen %d zero %v", cert.IsCA, cert.MaxPathLen, cert.MaxPathLenZero)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("CA cannot sign certificates")
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", cert.PublicKey)
	}
	if cert.Subject.CommonName != "dcaas test CA" || !cert.NotBefore.Equal(t0.Add(-backdate)) || !cert.NotAfter.Equal(t0.Add(365*24*time.Hour)) {
		t.Errorf("CA subject %q valid %v..%v", cert.Subject, cert.NotBefore, cert.NotAfter)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	checkSerial(t, cert)
	if !strings.HasPrefix(c.CertPEM(), "-----BEGIN CERTIFICATE-----") {
		t.Errorf("CertPEM() = %q", c.CertPEM())
	}
	if block, _ := pem.Decode([]byte(c.CertPEM())); block == nil || !slices.Equal(block.Bytes, cert.Raw) {
		t.Error("CertPEM() does not hold the CA certificate")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), CurrentTime: t0}); err != nil {
		t.Errorf("CA does not verify against Pool(): %v", err)
	}

	for _, tt := range []struct {
		name     string
		cn       string
		validity time.Duration
	}{
		{"zero validity", "x", 0},
		{"negative validity", "x", -time.Hour},
		{"no name", "", time.Hour},
		{"name with control", "a\x01", time.Hour},
	} {
		if _, _, err := Generate(tt.cn, t0, tt.validity); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: Generate() error = %v, want ErrInvalidInput", tt.name, err)
		}
	}
}

func checkSerial(t *testing.T, cert *x509.Certificate) {
	t.Helper()
	if n := cert.SerialNumber; n.Sign() <= 0 || n.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", n)
	}
	if s := SerialString(cert); s != strings.ToLower(s) || s != cert.SerialNumber.Text(16) {
		t.Errorf("SerialString() = %q", s)
	}
}

func TestNew(t *testing.T) {
	c := newCA(t)
	if _, err := New(c.Cert().Raw, newKey(t)); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("New(other key) error = %v, want ErrInvalidInput", err)
	}
	if _, err := New([]byte("not a certificate"), newKey(t)); !errors.Is(err, ErrMalformed) {
		t.Errorf("New(garbage) error = %v, want ErrMalformed", err)
	}
	leafKey := newKey(t)
	der, _, err := c.IssueClient(&leafKey.PublicKey, pkix.Name{CommonName: "app"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(der, leafKey); !errors.Is(err, ErrMalformed) {
		t.Errorf("New(leaf) error = %v, want ErrMalformed", err)
	}
}

func TestSerialsDiffer(t *testing.T) {
	c := newCA(t)
	k := newKey(t)
	seen := map[string]bool{}
	for range 50 {
		_, cert, err := c.IssueClient(&k.PublicKey, pkix.Name{CommonName: "app"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		checkSerial(t, cert)
		if s := SerialString(cert); seen[s] {
			t.Fatalf("serial %s issued twice", s)
		} else {
			seen[s] = true
		}
	}
}

func TestIssueServer(t *testing.T) {
	c := newCA(t)
	k := newKey(t)
	der, cert, err := c.IssueServer(&k.PublicKey, []string{"KMS.example.com", "10.0.0.1", "::1", "kms.example.com", "localhost"}, 24*time.Hour)
	if err != nil {
		t.Fatalf("IssueServer() error %v", err)
	}
	if !slices.Equal(der, cert.Raw) {
		t.Error("DER and parsed certificate differ")
	}
	if want := []string{"kms.example.com", "localhost"}; !slices.Equal(cert.DNSNames, want) {
		t.Errorf("DNSNames = %v, want %v", cert.DNSNames, want)
	}
	if len(cert.IPAddresses) != 2 || !cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) || !cert.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v", cert.IPAddresses)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || cert.IsCA {
		t.Errorf("EKU = %v, IsCA %v", cert.ExtKeyUsage, cert.IsCA)
	}
	for _, h := range []string{"localhost", "kms.example.com", "10.0.0.1", "::1"} {
		if err := cert.VerifyHostname(h); err != nil {
			t.Errorf("VerifyHostname(%q) = %v", h, err)
		}
	}
	if err := c.Verify(cert, UsageServer, t0); err != nil {
		t.Errorf("Verify(server) = %v", err)
	}
	if err := c.Verify(cert, UsageClient, t0); !errors.Is(err, ErrMalformed) {
		t.Errorf("Verify(server cert as client) = %v, want ErrMalformed", err)
	}
	_, cert, err = c.IssueServer(&k.PublicKey, nil, time.Hour)
	if err != nil || !slices.Equal(cert.DNSNames, []string{"localhost"}) {
		t.Errorf("IssueServer(no hosts) = %v, %v; want localhost", cert.DNSNames, err)
	}
	for _, h := range []string{"", "bad host", "-x.example", "a..b", "*.example.com", "ex_ample.com"} {
		if _, _, err := c.IssueServer(&k.PublicKey, []string{h}, time.Hour); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("IssueServer(%q) error = %v, want ErrInvalidInput", h, err)
		}
	}
}

func TestIssueClient(t *testing.T) {
	c := newCA(t)
	k := newKey(t)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, pub := range []crypto.PublicKey{&k.PublicKey, edKey.Public()} {
		subject := pkix.Name{CommonName: "payments-api", Organization: []string{"acme"}}
		_, cert, err := c.IssueClient(pub, subject, time.Hour)
		if err != nil {
			t.Fatalf("IssueClient(%T) error %v", pub, err)
		}
		if dn, err := NormalizeDN(cert.Subject); err != nil || dn != "CN=payments-api,O=acme" {
			t.Errorf("NormalizeDN(subject) = %q, %v", dn, err)
		}
		if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			t.Errorf("EKU = %v", cert.ExtKeyUsage)
		}
		if err := c.Verify(cert, UsageClient, t0.Add(30*time.Minute)); err != nil {
			t.Errorf("Verify(client) = %v", err)
		}
		if err := c.Verify(cert, UsageServer, t0); !errors.Is(err, ErrMalformed) {
			t.Errorf("Verify(client cert as server) = %v, want ErrMalformed", err)
		}
		if err := c.Verify(cert, UsageWrapping, t0); !errors.Is(err, ErrMalformed) {
			t.Errorf("Verify(client cert as wrapping) = %v, want ErrMalformed", err)
		}
	}
	for _, tt := range []struct {
		name    string
		subject pkix.Name
		pub     crypto.PublicKey
		ttl     time.Duration
	}{
		{"no common name", pkix.Name{Organization: []string{"acme"}}, &k.PublicKey, time.Hour},
		{"control character", pkix.Name{CommonName: "a\nb"}, &k.PublicKey, time.Hour},
		{"zero ttl", pkix.Name{CommonName: "a"}, &k.PublicKey, 0},
		{"unsupported key", pkix.Name{CommonName: "a"}, "not a key", time.Hour},
	} {
		if _, _, err := c.IssueClient(tt.pub, tt.subject, tt.ttl); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: IssueClient() error = %v, want ErrInvalidInput", tt.name, err)
		}
	}
}

func TestValidity(t *testing.T) {
	c := newCA(t)
	k := newKey(t)
	_, cert, err := c.IssueClient(&k.PublicKey, pkix.Name{CommonName: "a"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotBefore.Equal(t0.Add(-backdate)) || !cert.NotAfter.Equal(t0.Add(time.Hour)) {
		t.Errorf("valid %v..%v, want %v..%v", cert.NotBefore, cert.NotAfter, t0.Add(-backdate), t0.Add(time.Hour))
	}
	_, cert, err = c.IssueClient(&k.PublicKey, pkix.Name{CommonName: "a"}, 10*365*24*time.Hour)
	if err != nil || !cert.NotAfter.Equal(c.Cert().NotAfter) {
		t.Errorf("long ttl: NotAfter %v, %v; want the CA's %v", cert.NotAfter, err, c.Cert().NotAfter)
	}
	c.Now = func() time.Time { return c.Cert().NotAfter.Add(time.Second) }
	if _, _, err := c.IssueClient(&k.PublicKey, pkix.Name{CommonName: "a"}, time.Hour); !errors.Is(err, ErrExpired) {
		t.Errorf("IssueClient by an expired CA error = %v, want ErrExpired", err)
	}
}

func TestVerify(t *testing.T) {
	c := newCA(t)
	other := newCA(t)
	k := newKey(t)
	_, cert, err := c.IssueClient(&k.PublicKey, pkix.Name{CommonName: "a", Organization: []string{"t"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, foreign, err := other.IssueClient(&k.PublicKey, pkix.Name{CommonName: "a", Organization: []string{"t"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A certificate claiming our CA's name but signed by another key.
	impostorTmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "a"}, NotBefore: t0, NotAfter: t0.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	fakeParent := *c.Cert()
	fakeParent.PublicKey = other.Cert().PublicKey
	impostorDER, err := x509.CreateCertificate(rand.Reader, impostorTmpl, &fakeParent, &k.PublicKey, other.key)
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := x509.ParseCertificate(impostorDER)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		cert  *x509.Certificate
		usage Usage
		now   time.Time
		want  error
	}{
		{"valid", cert, UsageClient, t0, nil},
		{"backdated start", cert, UsageClient, t0.Add(-backdate), nil},
		{"last moment", cert, UsageClient, t0.Add(time.Hour), nil},
		{"expired", cert, UsageClient, t0.Add(time.Hour + time.Second), ErrExpired},
		{"not yet valid", cert, UsageClient, t0.Add(-backdate - time.Second), ErrExpired},
		{"foreign CA", foreign, UsageClient, t0, ErrForeign},
		{"foreign and expired", foreign, UsageClient, t0.Add(2 * time.Hour), ErrForeign},
		{"impostor", impostor, UsageClient, t0, ErrForeign},
		{"the CA itself", c.Cert(), UsageClient, t0, ErrMalformed},
		{"nil", nil, UsageClient, t0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Verify(tt.cert, tt.usage, tt.now)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Verify() = %v, want %v", err, tt.want)
			}
		})
	}
	if err := c.Verify(cert, 0, t0); err == nil {
		t.Error("Verify(usage 0) succeeded")
	}
	// Verify remembers what it verified (per usage): the client
	// certificate verified above is not a wrapping certificate, and
	// another CA that does not trust c's certificate still refuses it.
	if err := c.Verify(cert, UsageWrapping, t0); !errors.Is(err, ErrMalformed) {
		t.Errorf("Verify(client certificate, UsageWrapping) = %v, want ErrMalformed", err)
	}
	if err := other.Verify(cert, UsageClient, t0); !errors.Is(err, ErrForeign) {
		t.Errorf("other CA: Verify() = %v, want ErrForeign", err)
	}
}

func TestVerifyExpiredCA(t *testing.T) {
	der, key, err := Generate("short CA", t0, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(der, key)
	if err != nil {
		t.Fatal(err)
	}
	c.Now = func() time.Time { return t0 }
	k := newKey(t)
	_, cert, err := c.IssueClient(&k.PublicKey, pkix.Name{CommonName: "a"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Re-sign a leaf that outlives the CA by bypassing the clipping.
	tmpl := *cert
	tmpl.NotAfter = t0.Add(5 * time.Hour)
	longDER, err := x509.CreateCertificate(rand.Reader, &tmpl, c.Cert(), &k.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	long, err := x509.ParseCertificate(longDER)
	if err != nil {
		t.Fatal(err)
	}
	// Verified while both are valid, the leaf is still refused once the
	// CA certificate has expired.
	if err := c.Verify(long, UsageClient, t0.Add(time.Hour)); err != nil {
		t.Fatalf("Verify() while the CA is valid = %v", err)
	}
	if err := c.Verify(long, UsageClient, t0.Add(3*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("Verify() after the CA expired = %v, want ErrExpired", err)
	}
}

func TestNormalizeDN(t *testing.T) {
	name := pkix.Name{CommonName: "i-1", OrganizationalUnit: []string{"sidecar"}, Organization: []string{"acme, inc"}}
	got, err := NormalizeDN(name)
	if err != nil || got != `CN=i-1,OU=sidecar,O=acme\, inc` {
		t.Errorf("NormalizeDN() = %q, %v", got, err)
	}
	if _, err := NormalizeDN(pkix.Name{}); !errors.Is(err, policy.ErrInvalidDN) {
		t.Errorf("NormalizeDN(empty) error = %v, want policy.ErrInvalidDN", err)
	}
}
