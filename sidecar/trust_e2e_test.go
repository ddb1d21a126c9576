package sidecar_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// storedEnrollment is the identity certificate and trust bundle the
// sidecar of f stored with its enrollment.
func storedEnrollment(t *testing.T, f *fixture) (certPEM, caPEM string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dataDir, "enrollment.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		CertPEM string `json:"cert_pem"`
		CAPEM   string `json:"ca_pem"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e.CertPEM, e.CAPEM
}

// trusts waits until the sidecar of f has stored bundle, the KMS's trust
// bundle after step.
func trusts(t *testing.T, f *fixture, step, bundle string) {
	t.Helper()
	eventually(t, "trusting the bundle after "+step, func() error {
		if _, got := storedEnrollment(t, f); got != bundle {
			return fmt.Errorf("the sidecar trusts %d certificates, want the KMS's bundle", strings.Count(got, "BEGIN"))
		}
		return nil
	})
}

// poolOf is a pool of the certificates of a PEM bundle.
func poolOf(bundle string) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM([]byte(bundle))
	return p
}

// TestTrustFollowsPreparedCA: a sidecar whose certificates are not due for
// renewal learns the prepared CA at a revocation poll (its configuration
// names only the old one), so it still reaches the KMS once the KMS's TLS
// certificate comes from the new CA: a key deleted after activate is
// evicted.
func TestTrustFollowsPreparedCA(t *testing.T) {
	f := newFixture(t, nil, func(o *kms.Options) { o.Config.CertCheckInterval = 50 * time.Millisecond })
	dks := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	var prepared, activated api.CATrust
	f.env.Admin.MustDo(t, "POST", "/v1/ca/prepare", nil, &prepared)
	trusts(t, f, "prepare", prepared.BundlePEM)
	eventually(t, "logging the change", func() error { // logged after it is stored
		if !strings.Contains(f.logs.String(), "the KMS's trust bundle changed") {
			return fmt.Errorf("no log line says the trust bundle changed")
		}
		return nil
	})
	both := poolOf(prepared.BundlePEM)
	adminCert, adminKey := f.env.AdminPEM(t)
	f.env.ClientTrusting(both, adminCert, adminKey).MustDo(t, "POST", "/v1/ca/activate", nil, &activated)
	newCA := poolOf(activated.CAs[0].CertPEM)
	eventually(t, "presenting a TLS certificate of the new CA", func() error {
		conn, err := tls.Dial("tcp", f.env.Addr, &tls.Config{RootCAs: newCA, ServerName: "127.0.0.1"})
		if err == nil {
			conn.Close()
		}
		return err
	})
	cust := f.env.ClientTrusting(both, []byte(f.creds.CertPEM), []byte(f.creds.KeyPEM))
	cust.MustDo(t, "DELETE", "/v1/datakeys/"+dks[0].KeyID, nil, nil)
	eventually(t, "evicting the key deleted after activate", func() error {
		err := f.local.Do(t.Context(), "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: dks[0].KeyID}, Plaintext: []byte("x")}, nil)
		if api.CodeOf(err) != api.CodeRevoked {
			return fmt.Errorf("encrypt = %v, want revoked", err)
		}
		return nil
	})
}

// TestTrustFollowsCARotation: once the old CA is retired, a running
// sidecar's mutual-TLS listener refuses a caller whose certificate chains
// only to the old CA — the CA the sidecar's configuration names — and
// takes the caller's renewed certificate, with no restart. (The sidecar
// renews its own certificates every 2 s here, as a rotation needs before
// retire.)
func TestTrustFollowsCARotation(t *testing.T) {
	const checkInterval = 50 * time.Millisecond
	f := newFixture(t, nil, func(o *kms.Options) {
		o.Config.CertCheckInterval = checkInterval
		o.Config.InstanceCertTTL = 3 * time.Second
	})
	dks := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	addr := e2e.ServeMutualTLS(t, f.sc)
	encrypt := func(roots *x509.CertPool, certPEM, keyPEM string) error {
		pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.NewSidecarWithTLS("https://"+addr, &tls.Config{RootCAs: roots, ServerName: f.sc.ServerName(), Certificates: []tls.Certificate{pair}}, client.WithRetry(1, 0, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Do(t.Context(), "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: dks[0].KeyID}, Plaintext: []byte("hi")}, nil)
	}
	if err := encrypt(f.env.CAPool, f.creds.CertPEM, f.creds.KeyPEM); err != nil {
		t.Fatalf("the custodian over mTLS before the rotation: %v", err)
	}

	var prepared, activated, retired api.CATrust
	f.env.Admin.MustDo(t, "POST", "/v1/ca/prepare", nil, &prepared)
	trusts(t, f, "prepare", prepared.BundlePEM)
	both := poolOf(prepared.BundlePEM)
	adminCert, adminKey := f.env.AdminPEM(t)
	admin := f.env.ClientTrusting(both, adminCert, adminKey)
	admin.MustDo(t, "POST", "/v1/ca/activate", nil, &activated)
	trusts(t, f, "activate", activated.BundlePEM)
	newCA := poolOf(activated.CAs[0].CertPEM)
	eventually(t, "renewed with the new CA", func() error {
		certPEM, _ := storedEnrollment(t, f)
		block, _ := pem.Decode([]byte(certPEM))
		if block == nil {
			return fmt.Errorf("no certificate stored")
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return err
		}
		_, err = c.Verify(x509.VerifyOptions{Roots: newCA, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		return err
	})

	var renewed, adminCreds api.AppCredentials
	f.env.ClientTrusting(both, []byte(f.creds.CertPEM), []byte(f.creds.KeyPEM)).MustDo(t, "POST", "/v1/apps/self/certificate", nil, &renewed)
	admin.MustDo(t, "POST", "/v1/apps/self/certificate", nil, &adminCreds)
	newAdmin := f.env.ClientTrusting(both, []byte(adminCreds.CertPEM), []byte(adminCreds.KeyPEM))
	eventually(t, "retiring the old CA (409 until two check intervals after activate)", func() error {
		err := newAdmin.Do("POST", "/v1/ca/retire", nil, &retired)
		if err != nil && api.CodeOf(err) != api.CodeConflict {
			t.Fatalf("retire: %v", err)
		}
		return err
	})
	trusts(t, f, "retire", retired.BundlePEM)

	if err := encrypt(both, f.creds.CertPEM, f.creds.KeyPEM); err == nil {
		t.Error("a caller certificate of the retired CA was taken after retire; want the handshake refused")
	}
	if err := encrypt(both, renewed.CertPEM, renewed.KeyPEM); err != nil {
		t.Errorf("the custodian's renewed certificate after retire: %v", err)
	}
	kmstest.WantError(t, f.env.ClientTrusting(both, []byte(f.creds.CertPEM), []byte(f.creds.KeyPEM)).Do("GET", "/v1/instances", nil, nil), 401, api.CodeUnauthenticated)
}

// TestKMSTrustIsTheBundle: once the KMS has handed the sidecar its trust
// bundle, the sidecar's own connections to the KMS are verified against
// that bundle alone, not also the CA file it was configured with. Here the
// configured file names a second CA the KMS does not use (as a CA a
// rotation retired, or one compromised, would stay in a file nobody
// edited): a server with a certificate of that CA, put where the KMS was,
// sees TLS handshakes and never a request.
func TestKMSTrustIsTheBundle(t *testing.T) {
	rogue := newTestCA(t, "rogue CA")
	impostorCert := rogue.serverCert(t, "127.0.0.1")
	var hellos, requests atomic.Int32
	impostor := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "impostor", http.StatusServiceUnavailable)
	}))
	impostor.TLS = &tls.Config{
		Certificates: []tls.Certificate{impostorCert},
		ClientAuth:   tls.RequestClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			hellos.Add(1)
			return nil, nil
		},
	}
	impostor.StartTLS()
	t.Cleanup(impostor.Close)

	var target atomic.Pointer[string]
	proxy := e2e.NewCutProxy(t, func() (net.Conn, error) { return net.Dial("tcp", *target.Load()) })
	f := newFixture(t, func(c *sidecar.Config) {
		kmsAddr := strings.TrimPrefix(c.KMSURL, "https://")
		target.Store(&kmsAddr)
		c.KMSURL = "https://" + proxy.Addr()
		c.CAPEM = append(slices.Clone(c.CAPEM), rogue.pem...)
	})
	f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM}) // the KMS is reached through the proxy

	addr := strings.TrimPrefix(impostor.URL, "https://")
	target.Store(&addr)
	proxy.Cut() // the sidecar's connections to the KMS end; new ones reach the impostor
	proxy.Restore()
	eventually(t, "the sidecar calling the impostor", func() error {
		if n := hellos.Load(); n < 3 && requests.Load() == 0 {
			return fmt.Errorf("%d TLS handshakes so far", n)
		}
		return nil
	})
	if n := requests.Load(); n > 0 {
		t.Fatalf("the sidecar sent %d requests to a server with a certificate of a CA only its configuration names, not the KMS's bundle", n)
	}
}

// serverCert issues a TLS server certificate for the IP address host.
func (ca *testCA) serverCert(t *testing.T, host string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(host)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestRevokedCustodianCertRefused: a custodian certificate revoked at the
// KMS (dcaas app cert revoke) is refused at the sidecar's mutual-TLS
// listener within a poll — the listener checks chains, so before, it took
// the certificate until it expired — while the custodian's other
// certificate still works; the list survives in the data dir.
func TestRevokedCustodianCertRefused(t *testing.T) {
	f := newFixture(t, nil)
	dks := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	addr := e2e.ServeMutualTLS(t, f.sc)
	encrypt := func(certPEM, keyPEM string) error {
		pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.NewSidecarWithTLS("https://"+addr, &tls.Config{RootCAs: f.env.CAPool, ServerName: f.sc.ServerName(), Certificates: []tls.Certificate{pair}}, client.WithRetry(1, 0, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Do(t.Context(), "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: dks[0].KeyID}, Plaintext: []byte("hi")}, nil)
	}
	if err := encrypt(f.creds.CertPEM, f.creds.KeyPEM); err != nil {
		t.Fatalf("the custodian over mTLS: %v", err)
	}
	var second api.AppCredentials
	f.cust.MustDo(t, "POST", "/v1/apps/self/certificate", nil, &second)
	block, _ := pem.Decode([]byte(f.creds.CertPEM))
	first, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	serial := first.SerialNumber.Text(16)
	f.env.ClientTrusting(f.env.CAPool, []byte(second.CertPEM), []byte(second.KeyPEM)).MustDo(t, "POST", "/v1/apps/self/certificates/revoke", api.RevokeCertificatesRequest{Serial: serial}, nil)
	eventually(t, "the revoked certificate refused at the handshake", func() error {
		if err := encrypt(f.creds.CertPEM, f.creds.KeyPEM); err == nil {
			return fmt.Errorf("the revoked certificate %s was taken", serial)
		}
		return nil
	})
	if err := encrypt(second.CertPEM, second.KeyPEM); err != nil {
		t.Fatalf("the custodian's other certificate: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(f.dataDir, "revoked-certs.json"))
	if err != nil || !strings.Contains(string(b), serial) {
		t.Fatalf("revoked-certs.json = %s, %v; want %s in it", b, err, serial)
	}
}
