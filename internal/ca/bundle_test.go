package ca

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestRotationStates follows a CA rotation: the old CA issues and trusts
// the next (prepared), the next issues and trusts the old (activated),
// the next alone (retired). Every state verifies exactly the leaves of
// the CAs it trusts.
func TestRotationStates(t *testing.T) {
	old, next, stranger := newCA(t), newCA(t), newCA(t)
	k := newKey(t)
	leaf := func(c *CA) *x509.Certificate {
		t.Helper()
		_, cert, err := c.IssueClient(&k.PublicKey, pkix.Name{CommonName: "app", Organization: []string{"acme"}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	byOld, byNext, byStranger := leaf(old), leaf(next), leaf(stranger)
	build := func(issuer *CA, others ...*CA) *CA {
		t.Helper()
		var ders [][]byte
		for _, o := range others {
			ders = append(ders, o.Cert().Raw)
		}
		c, err := New(issuer.Cert().Raw, issuer.key, ders...)
		if err != nil {
			t.Fatalf("New() = %v", err)
		}
		c.Now = func() time.Time { return t0 }
		return c
	}
	tests := []struct {
		name      string
		ca        *CA
		issuer    *CA
		roots     []*CA
		oldLeaf   error
		nextLeaf  error
		strangers error
	}{
		{"before", build(old), old, []*CA{old}, nil, ErrForeign, ErrForeign},
		{"prepared", build(old, next), old, []*CA{old, next}, nil, nil, ErrForeign},
		{"activated", build(next, old), next, []*CA{next, old}, nil, nil, ErrForeign},
		{"retired", build(next), next, []*CA{next}, ErrForeign, nil, ErrForeign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, v := range []struct {
				what string
				cert *x509.Certificate
				want error
			}{{"old CA's leaf", byOld, tt.oldLeaf}, {"next CA's leaf", byNext, tt.nextLeaf}, {"stranger's leaf", byStranger, tt.strangers}} {
				err := tt.ca.Verify(v.cert, UsageClient, t0)
				if !errors.Is(err, v.want) || (v.want == nil) != (err == nil) {
					t.Errorf("Verify(%s) = %v, want %v", v.what, err, v.want)
				}
				_, perr := v.cert.Verify(x509.VerifyOptions{Roots: tt.ca.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
				if (perr == nil) != (v.want == nil) {
					t.Errorf("%s against Pool(): %v, want success %t", v.what, perr, v.want == nil)
				}
			}
			for _, r := range tt.roots {
				if err := tt.ca.Verify(r.Cert(), UsageClient, t0); !errors.Is(err, ErrMalformed) {
					t.Errorf("Verify(a trusted CA certificate) = %v, want ErrMalformed", err)
				}
			}
			// New certificates come from the issuer alone.
			_, issued, err := tt.ca.IssueClient(&k.PublicKey, pkix.Name{CommonName: "new"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if err := issued.CheckSignatureFrom(tt.issuer.Cert()); err != nil {
				t.Errorf("a new certificate is not signed by the issuing CA: %v", err)
			}
			if !tt.ca.Cert().Equal(tt.issuer.Cert()) || tt.ca.CertPEM() != tt.issuer.CertPEM() {
				t.Error("Cert()/CertPEM() is not the issuing CA")
			}
			// The bundle and Roots list every trusted CA, the issuer first.
			rest := []byte(tt.ca.BundlePEM())
			var got []*x509.Certificate
			for {
				var b *pem.Block
				b, rest = pem.Decode(rest)
				if b == nil {
					break
				}
				c, err := x509.ParseCertificate(b.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, c)
			}
			if len(rest) != 0 {
				t.Errorf("BundlePEM() has %d bytes after its last PEM block", len(rest))
			}
			roots := tt.ca.Roots()
			if len(got) != len(tt.roots) || len(roots) != len(tt.roots) {
				t.Fatalf("BundlePEM() holds %d certificates, Roots() %d; want %d", len(got), len(roots), len(tt.roots))
			}
			for i, r := range tt.roots {
				if !got[i].Equal(r.Cert()) || !roots[i].Equal(r.Cert()) {
					t.Errorf("bundle certificate %d is not the expected CA", i)
				}
			}
			roots[0] = nil // the caller's slice
			if tt.ca.Roots()[0] == nil {
				t.Error("Roots() shares its slice with the CA")
			}
		})
	}
}

func TestNewTrustedRefuses(t *testing.T) {
	c, other := newCA(t), newCA(t)
	k := newKey(t)
	leafDER, _, err := c.IssueClient(&k.PublicKey, pkix.Name{CommonName: "app"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		trusted [][]byte
		want    error
	}{
		{"the issuer again", [][]byte{c.Cert().Raw}, ErrInvalidInput},
		{"another CA twice", [][]byte{other.Cert().Raw, other.Cert().Raw}, ErrInvalidInput},
		{"a leaf", [][]byte{leafDER}, ErrMalformed},
		{"garbage", [][]byte{[]byte("not DER")}, ErrMalformed},
		{"empty", [][]byte{nil}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(c.Cert().Raw, c.key, tt.trusted...); !errors.Is(err, tt.want) {
				t.Errorf("New(trusting %s) = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
	if got, err := New(c.Cert().Raw, c.key, other.Cert().Raw); err != nil || !slices.ContainsFunc(got.Roots(), other.Cert().Equal) {
		t.Errorf("New(trusting another CA) = %v; want it among the roots", err)
	}
}
