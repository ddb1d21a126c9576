package tpm

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// TestIdentityKeyTLS uses the identity key as both the server's and the
// client's certificate key in real mutual-TLS handshakes.
func TestIdentityKeyTLS(t *testing.T) {
	e := openEnclave(t, "")
	key, err := e.IdentityKey(t.Context())
	if err != nil {
		t.Fatalf("IdentityKey() = %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sidecar"},
		DNSNames:              []string{"sidecar.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("CreateCertificate(signed by the TPM) = %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignatureFrom(leaf); err != nil {
		t.Fatalf("certificate signature: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}

	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			server := &tls.Config{
				Certificates: []tls.Certificate{cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    pool,
				MinVersion:   version,
				MaxVersion:   version,
			}
			client := &tls.Config{
				Certificates: []tls.Certificate{cert},
				RootCAs:      pool,
				ServerName:   "sidecar.test",
				MinVersion:   version,
				MaxVersion:   version,
			}
			c1, c2 := net.Pipe()
			defer c1.Close()
			defer c2.Close()
			errc := make(chan error, 1)
			go func() {
				s := tls.Server(c2, server)
				errc <- s.HandshakeContext(t.Context())
			}()
			c := tls.Client(c1, client)
			if err := c.HandshakeContext(t.Context()); err != nil {
				t.Fatalf("client handshake: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("server handshake: %v", err)
			}
			if got := c.ConnectionState().Version; got != version {
				t.Errorf("negotiated %s, want %s", tls.VersionName(got), tls.VersionName(version))
			}
		})
	}
}
