// Package ca is the KMS certificate authority: an ECDSA P-256 CA (Generate,
// New) that issues server, client (admin, custodian, pipeline), sidecar
// instance and wrapping certificates, parses the dcaas fields back out of
// them (ParseInstance, ParseWrapping) and checks that a certificate chains
// to it (CA.Verify). Revocation is the caller's business: it checks the
// serial (SerialString) against the store.
//
// A CA issues with one certificate and may trust others besides it (the
// trust bundle, BundlePEM): during a CA rotation the next CA is trusted
// before it issues, and the previous one stays trusted after the next one
// took over, until it is retired. A CA value never changes; a rotation
// builds a new one (New with the other roots).
//
// dcaas's own certificate fields live under the OID arc 2.25.952285655
// (see ext.go).
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/dcaas/dcaas/internal/policy"
)

// Errors (test with errors.Is). The first four say why a certificate or CSR
// is refused; ErrInvalidInput is a bad argument to an issue function.
var (
	ErrInvalidCSR   = errors.New("ca: invalid certificate signing request")
	ErrForeign      = errors.New("ca: certificate not issued by this CA")
	ErrExpired      = errors.New("ca: certificate expired or not yet valid")
	ErrMalformed    = errors.New("ca: malformed certificate")
	ErrInvalidInput = errors.New("ca: invalid issuance request")
)

// backdate is how far before "now" certificates start, to absorb clock
// skew between the KMS and its peers.
const backdate = time.Minute

// CA issues and verifies certificates. Set Now before first use; the CA is
// then safe for concurrent use.
type CA struct {
	// Now is the clock of the issue functions; nil means time.Now.
	Now func() time.Time

	cert   *x509.Certificate   // the issuing CA certificate
	key    crypto.Signer       // its key
	roots  []*x509.Certificate // every trusted CA certificate, cert first
	pool   *x509.CertPool      // roots
	pem    string              // cert
	bundle string              // roots

	verified verifiedMemo // certificates Verify passed (verify.go)
}

// Generate makes a self-signed CA certificate named commonName, valid from
// now (backdated by a minute) for validity, with a fresh ECDSA P-256 key,
// path length 0 and a random 128-bit serial. The caller owns key, a
// secret: it seals it and drops it.
func Generate(commonName string, now time.Time, validity time.Duration) (certDER []byte, key *ecdsa.PrivateKey, err error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("%w: validity %v is not positive", ErrInvalidInput, validity)
	}
	subject := pkix.Name{CommonName: commonName}
	if err := checkSubject(subject); err != nil {
		return nil, nil, err
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               subject,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	return certDER, key, nil
}

// New returns the CA of certDER, signing with key, which must hold the
// certificate's private key (an in-memory key, or an HSM's signer). The CA
// also trusts the CA certificates alsoTrusted (DER), e.g. the next CA of a
// rotation before it issues, or the previous one until it is retired; each
// must be a CA certificate, none twice.
func New(certDER []byte, key crypto.Signer, alsoTrusted ...[]byte) (*CA, error) {
	cert, err := parseCACert(certDER)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: the key does not belong to the CA certificate", ErrInvalidInput)
	}
	c := &CA{cert: cert, key: key, roots: []*x509.Certificate{cert}, pool: x509.NewCertPool()}
	for _, der := range alsoTrusted {
		other, err := parseCACert(der)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(c.roots, other.Equal) {
			return nil, fmt.Errorf("%w: CA certificate %s is trusted twice", ErrInvalidInput, SerialString(other))
		}
		c.roots = append(c.roots, other)
	}
	var bundle strings.Builder
	for _, r := range c.roots {
		c.pool.AddCert(r)
		bundle.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Raw}))
	}
	c.pem = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}))
	c.bundle = bundle.String()
	return c, nil
}

// parseCACert parses a CA certificate: one that may sign certificates.
func parseCACert(der []byte) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: not a CA certificate", ErrMalformed)
	}
	return cert, nil
}

// Cert is the issuing CA certificate. It is shared: do not modify it.
func (c *CA) Cert() *x509.Certificate { return c.cert }

// CertPEM is the issuing CA certificate in PEM form.
func (c *CA) CertPEM() string { return c.pem }

// Roots returns every trusted CA certificate, the issuing one first. The
// slice is the caller's; the certificates are shared: do not modify them.
func (c *CA) Roots() []*x509.Certificate { return slices.Clone(c.roots) }

// BundlePEM is the trust bundle: every trusted CA certificate in PEM form,
// the issuing one first. Peers of the KMS trust exactly this.
func (c *CA) BundlePEM() string { return c.bundle }

// Pool returns a new pool holding every trusted CA certificate, for TLS
// configurations; the caller owns it.
func (c *CA) Pool() *x509.CertPool { return c.pool.Clone() }

func (c *CA) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// SerialString is cert's serial number in lower-case hex without leading
// zeros: the key of the store's certificate registry.
func SerialString(cert *x509.Certificate) string {
	return cert.SerialNumber.Text(16)
}

// NormalizeDN returns name in canonical RFC 4514 form (policy.NormalizeDN
// of name.String()): the form the store and key policies use. Errors wrap
// policy.ErrInvalidDN.
func NormalizeDN(name pkix.Name) (string, error) {
	return policy.NormalizeDN(name.String())
}

// newSerial returns a random, positive 128-bit serial number.
func newSerial() *big.Int {
	var b [16]byte
	for {
		rand.Read(b[:])
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n
		}
	}
}

// checkSubject requires a common name and a subject whose string form
// normalizes, so that every certificate issued has a usable DN.
func checkSubject(name pkix.Name) error {
	if name.CommonName == "" {
		return fmt.Errorf("%w: the subject has no common name", ErrInvalidInput)
	}
	if _, err := NormalizeDN(name); err != nil {
		return fmt.Errorf("%w: subject %q: %w", ErrInvalidInput, name.String(), err)
	}
	return nil
}
