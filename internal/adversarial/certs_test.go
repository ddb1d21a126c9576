package adversarial_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// lookalike is a CA an attacker made with the KMS CA's exact name.
type lookalike struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newLookalike(t testing.TB, caPEM []byte) *lookalike {
	t.Helper()
	real := parsePEM(t, string(caPEM))
	der, key, err := ca.Generate(real.Subject.CommonName, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.String() != real.Subject.String() {
		t.Fatalf("look-alike CA is %q, want %q", cert.Subject, real.Subject)
	}
	return &lookalike{cert: cert, key: key}
}

// forge re-signs a copy of certPEM with the look-alike CA: same serial,
// subject, validity, public key and extensions (dcaas fields included);
// only the signature (and so the issuing key) differs.
func (l *lookalike) forge(t testing.TB, certPEM string) string {
	t.Helper()
	real := parsePEM(t, certPEM)
	tmpl := *real
	tmpl.ExtraExtensions = real.Extensions
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, l.cert, real.PublicKey, l.key)
	if err != nil {
		t.Fatalf("forging %s: %v", real.Subject, err)
	}
	forged, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if forged.SerialNumber.Cmp(real.SerialNumber) != 0 || forged.Subject.String() != real.Subject.String() ||
		forged.Issuer.String() != real.Issuer.String() {
		t.Fatalf("forgery differs from %s in more than its signature", real.Subject)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func parsePEM(t testing.TB, s string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		t.Fatalf("no PEM in %q", s)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mtlsListener serves s's mutual-TLS listener on a loopback port and
// returns a client factory for it.
func (s *side) mtlsListener(t testing.TB, w *world) func(certPEM, keyPEM string) *client.Sidecar {
	t.Helper()
	addr := e2e.ServeMutualTLS(t, s.sc)
	return func(certPEM, keyPEM string) *client.Sidecar {
		c, err := client.NewSidecarTLS("https://"+addr, w.env.CAPEM, []byte(certPEM), []byte(keyPEM), s.sc.ServerName(), client.WithRetry(1, 0, 0))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// TestLookalikeCA: an attacker builds a CA with the KMS CA's name and
// re-signs byte-for-byte copies of real certificates (same serial, DN,
// dcaas extensions, public key) — a custodian's, a sidecar instance's, and
// a wrapping certificate naming a real instance. Every one is refused on
// the signature alone. (Certificates of another, unrelated KMS:
// internal/kms TestBadInput/foreign_client_certificate,
// TestRewrapRefusals/foreign_CA, sidecar TestSidecarMutualTLSListener.)
func TestLookalikeCA(t *testing.T) {
	w := newWorld(t)
	evil := newLookalike(t, w.env.CAPEM)
	a := w.sidecar(t, w.payCreds.DN, "", nil)
	dk := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})

	t.Run("custodian certificate at the KMS", func(t *testing.T) {
		forged := evil.forge(t, w.payCreds.CertPEM)
		c := w.env.Client([]byte(forged), []byte(w.payCreds.KeyPEM))
		err := c.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)
		kmstest.WantError(t, err, 401, api.CodeUnauthenticated)
		_, err = rewrap(c, a.cert, dk.EKB)
		kmstest.WantError(t, err, 401, api.CodeUnauthenticated)
	})
	t.Run("custodian certificate at the sidecar's mTLS listener", func(t *testing.T) {
		client := a.mtlsListener(t, w)
		req := api.HashRequest{Algorithm: "sha-256", Message: []byte("x")}
		if err := client(w.payCreds.CertPEM, w.payCreds.KeyPEM).Do(t.Context(), "POST", "/v1/crypto/hash", req, nil); err != nil {
			t.Fatalf("the real custodian certificate over mTLS: %v", err)
		}
		forged := evil.forge(t, w.payCreds.CertPEM)
		if err := client(forged, w.payCreds.KeyPEM).Do(t.Context(), "POST", "/v1/crypto/hash", req, nil); err == nil {
			t.Fatal("the sidecar served a client certificate from a look-alike CA")
		}
	})
	t.Run("wrapping certificate naming a real instance", func(t *testing.T) {
		forged := evil.forge(t, a.cert)
		info, err := ca.ParseWrapping(parsePEM(t, forged))
		if err != nil || info.InstanceID != a.id {
			t.Fatalf("the forgery does not read as %s's wrapping certificate: %+v, %v", a.id, info, err)
		}
		_, err = rewrap(w.pay, forged, dk.EKB)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
	})
	t.Run("sidecar identity certificate at the KMS", func(t *testing.T) {
		fake := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
		fake.Enroll(t, w.env.Anonymous(), w.token(t, w.payCreds.DN))
		keyPEM, err := kcrypto.MarshalPrivateKeyPEM(fake.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.env.Client([]byte(fake.Enrollment.CertPEM), keyPEM).Do("GET", "/v1/revocations", nil, nil); err != nil {
			t.Fatalf("the real instance certificate: %v", err)
		}
		forged := evil.forge(t, fake.Enrollment.CertPEM)
		err = w.env.Client([]byte(forged), keyPEM).Do("GET", "/v1/revocations", nil, nil)
		kmstest.WantError(t, err, 401, api.CodeUnauthenticated)
		// A wrapping certificate is not a TLS client certificate, even
		// with the identity key in its SubjectPublicKeyInfo.
		if pub, ok := parsePEM(t, fake.Enrollment.WrappingCertPEM).PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(fake.Key.Public()) {
			err = w.env.Client([]byte(fake.Enrollment.WrappingCertPEM), keyPEM).Do("GET", "/v1/revocations", nil, nil)
			kmstest.WantError(t, err, 401, api.CodeUnauthenticated)
		}
	})
}

// TestExpiredSidecarCertificates: the KMS clock moves past the sidecar
// certificates' 30-day life (kms.Config.InstanceCertTTL). The instance can
// no longer pull keys, and custodians can no longer rewrap to it; before
// their start (a clock set back) they are refused the same way. Expired
// custodian certificates: internal/kms TestBadInput/expired_client_certificate.
func TestExpiredSidecarCertificates(t *testing.T) {
	w := newWorld(t)
	// The sidecar enrolls an hour after the custodians, so setting the
	// clock back half an hour makes only its certificates not yet valid.
	w.clock.Advance(time.Hour)
	a := w.sidecar(t, w.payCreds.DN, "", func(c *sidecar.Config) { c.Now = w.clock.Now })
	dk := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	a.load(t, w.pay, dk) // valid now

	for _, tc := range []struct {
		name string
		skew time.Duration
	}{
		{"expired", 30*24*time.Hour + time.Hour},
		{"not yet valid", -30 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.clock.Advance(tc.skew)
			defer w.clock.Advance(-tc.skew)
			_, err := rewrap(w.pay, a.cert, dk.EKB)
			kmstest.WantError(t, err, 410, api.CodeExpired)
			// The custodian's own certificate is valid, so it gets a grant;
			// the sidecar's identity certificate is refused.
			g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{dk.EKB}})
			err = a.do(t, "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: g, EKBs: [][]byte{dk.EKB}}, nil)
			kmstest.WantError(t, err, 401, api.CodeUnauthenticated)
		})
	}
}
