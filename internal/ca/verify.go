package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Usage is what a certificate is checked for. The zero value is unset and
// rejected.
type Usage int

// Usages.
const (
	// UsageServer: a TLS server certificate (serverAuth), e.g. the KMS's.
	UsageServer Usage = iota + 1
	// UsageClient: a TLS client certificate (clientAuth): admin,
	// custodian, pipeline and sidecar instance certificates.
	UsageClient
	// UsageWrapping: a sidecar wrapping certificate (see ParseWrapping).
	UsageWrapping
)

// Verify checks that cert was issued by one of this CA's trusted CA
// certificates (ErrForeign otherwise), that it and that CA certificate
// are valid at now (ErrExpired otherwise),
// and that it is a leaf fit for usage (ErrMalformed otherwise; for
// UsageWrapping ParseWrapping must succeed). TLS certificates must name
// their usage explicitly and wrapping certificates are never TLS
// certificates. Revocation is not checked here.
func (c *CA) Verify(cert *x509.Certificate, usage Usage, now time.Time) error {
	var ekus []x509.ExtKeyUsage
	switch usage {
	case UsageServer:
		ekus = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case UsageClient:
		ekus = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case UsageWrapping:
		ekus = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	default:
		return fmt.Errorf("ca: unknown usage %d", usage)
	}
	if cert == nil {
		return fmt.Errorf("%w: no certificate", ErrMalformed)
	}
	if !slices.ContainsFunc(c.roots, func(root *x509.Certificate) bool { return cert.CheckSignatureFrom(root) == nil }) {
		return fmt.Errorf("%w: no trusted CA certificate signed it", ErrForeign)
	}
	if cert.IsCA || slices.ContainsFunc(c.roots, cert.Equal) {
		return fmt.Errorf("%w: a CA certificate is not a leaf", ErrMalformed)
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return fmt.Errorf("%w: valid from %v to %v, not at %v", ErrExpired, cert.NotBefore, cert.NotAfter, now)
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: c.pool, CurrentTime: now, KeyUsages: ekus})
	if err != nil {
		var unknown x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		switch {
		case errors.As(err, &unknown):
			return fmt.Errorf("%w: %w", ErrForeign, err)
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
			return fmt.Errorf("%w: %w", ErrExpired, err)
		}
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch usage {
	case UsageWrapping:
		if _, err := ParseWrapping(cert); err != nil {
			return err
		}
	default:
		if !slices.Contains(cert.ExtKeyUsage, ekus[0]) {
			return fmt.Errorf("%w: the certificate does not name the needed extended key usage", ErrMalformed)
		}
	}
	return nil
}
