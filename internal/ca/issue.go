package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// maxCSRSize bounds the PEM a caller may send.
const maxCSRSize = 64 << 10

// IssueServer issues a TLS server certificate for pub (serverAuth) naming
// hosts: IP SANs for IP addresses, DNS SANs otherwise; "localhost" is
// always added. It returns the DER and the parsed certificate, valid for
// ttl (never past the CA's own expiry).
func (c *CA) IssueServer(pub crypto.PublicKey, hosts []string, ttl time.Duration) ([]byte, *x509.Certificate, error) {
	if err := checkPublicKey(pub); err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range append(slices.Clone(hosts), "localhost") {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
			continue
		}
		name := strings.ToLower(h)
		if !validDNSName(name) {
			return nil, nil, fmt.Errorf("%w: host %q is neither an IP address nor a DNS name", ErrInvalidInput, h)
		}
		if !slices.Contains(tmpl.DNSNames, name) {
			tmpl.DNSNames = append(tmpl.DNSNames, name)
		}
	}
	tmpl.Subject = pkix.Name{CommonName: "localhost"}
	if len(hosts) > 0 {
		tmpl.Subject.CommonName = strings.ToLower(hosts[0])
	}
	return c.issue(tmpl, pub, ttl)
}

// validDNSName accepts lower-case host names: dot-separated labels of
// 1..63 letters, digits and inner hyphens, 253 bytes at most.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// IssueClient issues a TLS client certificate (clientAuth) for pub with
// the given subject: admin, custodian and pipeline certificates, whose
// subject is CN=<app>,O=<tenant>. The subject needs a common name and must
// normalize (see NormalizeDN).
func (c *CA) IssueClient(pub crypto.PublicKey, subject pkix.Name, ttl time.Duration) ([]byte, *x509.Certificate, error) {
	if err := checkSubject(subject); err != nil {
		return nil, nil, err
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:     subject,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return c.issue(tmpl, pub, ttl)
}

// ParseCSR decodes one PEM "CERTIFICATE REQUEST" block, parses it, checks
// its signature (proof of possession) and its key type. Every failure
// wraps ErrInvalidCSR.
func ParseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	if len(csrPEM) > maxCSRSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidCSR, maxCSRSize)
	}
	block, rest := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: no PEM CERTIFICATE REQUEST block", ErrInvalidCSR)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("%w: data after the PEM block", ErrInvalidCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCSR, err)
	}
	return csr, nil
}

// IssueFromCSR issues a client certificate (as IssueClient) for the key of
// a PEM CSR after checking it (ParseCSR). The CSR's requested subject and
// extensions are ignored: the certificate carries subject and nothing the
// requester chose.
func (c *CA) IssueFromCSR(csrPEM []byte, subject pkix.Name, ttl time.Duration) ([]byte, *x509.Certificate, error) {
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return nil, nil, err
	}
	return c.IssueClient(csr.PublicKey, subject, ttl)
}

// checkPublicKey accepts the identity keys dcaas certifies: ECDSA P-256,
// P-384 or P-521, Ed25519, and RSA of 2048 to 8192 bits.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return nil
		}
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n >= 2048 && n <= 8192 {
			return nil
		}
	}
	return fmt.Errorf("%w: unsupported public key %T (want ECDSA P-256/384/521, Ed25519 or RSA 2048..8192)", ErrInvalidInput, pub)
}

// issue signs tmpl for pub with a fresh serial and a validity of ttl from
// now, clipped to the CA's, and returns the DER and parsed certificate.
func (c *CA) issue(tmpl *x509.Certificate, pub crypto.PublicKey, ttl time.Duration) ([]byte, *x509.Certificate, error) {
	if ttl <= 0 {
		return nil, nil, fmt.Errorf("%w: ttl %v is not positive", ErrInvalidInput, ttl)
	}
	now := c.now()
	if now.Before(c.cert.NotBefore) || now.After(c.cert.NotAfter) {
		return nil, nil, fmt.Errorf("%w: the CA certificate is not valid at %v", ErrExpired, now)
	}
	tmpl.SerialNumber = newSerial()
	tmpl.NotBefore = maxTime(now.Add(-backdate), c.cert.NotBefore)
	tmpl.NotAfter = minTime(now.Add(ttl), c.cert.NotAfter)
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: signing: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: parsing what was signed: %w", err)
	}
	return der, cert, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
