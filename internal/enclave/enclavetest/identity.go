package enclavetest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

func testIdentityKey(t *testing.T, fresh opener) {
	e := fresh(t)
	signer, err := e.IdentityKey(t.Context())
	if err != nil {
		t.Fatalf("IdentityKey() = %v", err)
	}
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("IdentityKey().Public() = %T, want an ECDSA P-256 key", signer.Public())
	}

	t.Run("Stable", func(t *testing.T) {
		again, err := e.IdentityKey(t.Context())
		if err != nil {
			t.Fatalf("IdentityKey() again = %v", err)
		}
		if !pub.Equal(again.Public()) {
			t.Error("IdentityKey() returned a different key the second time")
		}
	})

	t.Run("Sign", func(t *testing.T) {
		digest := sha256.Sum256([]byte("enclavetest"))
		sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("Sign() = %v", err)
		}
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			t.Error("signature does not verify")
		}
	})

	t.Run("CSR", func(t *testing.T) {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: "enclavetest sidecar"},
		}, signer)
		if err != nil {
			t.Fatalf("CreateCertificateRequest() = %v", err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("ParseCertificateRequest() = %v", err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Errorf("CSR CheckSignature() = %v", err)
		}
		if !pub.Equal(csr.PublicKey) {
			t.Error("CSR carries another public key")
		}
	})

	for _, tc := range []struct {
		name    string
		version uint16
	}{
		{"TLS1.2", tls.VersionTLS12},
		{"TLS1.3", tls.VersionTLS13},
	} {
		t.Run(tc.name+"ClientCert", func(t *testing.T) {
			testTLSClientCert(t, signer, tc.version)
		})
	}
}

// testTLSClientCert runs a real handshake over net.Pipe in which signer is
// the client's certificate key, so it signs CertificateVerify.
func testTLSClientCert(t *testing.T, signer crypto.Signer, version uint16) {
	serverCert, serverPool := selfSigned(t, "enclavetest server", nil)
	clientCert, _ := selfSigned(t, "enclavetest client", signer)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()

	server := tls.Server(sc, &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAnyClientCert,
		MinVersion:   version,
		MaxVersion:   version,
	})
	client := tls.Client(cc, &tls.Config{
		Certificates: []tls.Certificate{clientCert},
		RootCAs:      serverPool,
		ServerName:   "enclavetest",
		MinVersion:   version,
		MaxVersion:   version,
	})
	done := make(chan error, 1)
	go func() { done <- server.HandshakeContext(ctx) }()
	if err := client.HandshakeContext(ctx); err != nil {
		t.Fatalf("client Handshake() = %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server Handshake() = %v", err)
	}
	state := server.ConnectionState()
	if state.Version != version {
		t.Errorf("negotiated version %x, want %x", state.Version, version)
	}
	if len(state.PeerCertificates) == 0 || !signer.Public().(*ecdsa.PublicKey).Equal(state.PeerCertificates[0].PublicKey) {
		t.Error("server did not see the identity key as the client certificate")
	}
}

// selfSigned returns a self-signed certificate for key (a fresh P-256 key
// if nil) and a pool trusting it.
func selfSigned(t *testing.T, name string, key crypto.Signer) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{"enclavetest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("CreateCertificate(%s) = %v", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
