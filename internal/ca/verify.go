package ca

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
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
	memo := verifiedKey{sha256.Sum256(cert.Raw), usage}
	if w, ok := c.verified.get(memo); ok && !now.Before(w.from) && !now.After(w.to) {
		return nil
	}
	i := slices.IndexFunc(c.roots, func(root *x509.Certificate) bool { return cert.CheckSignatureFrom(root) == nil })
	if i < 0 {
		return fmt.Errorf("%w: no trusted CA certificate signed it", ErrForeign)
	}
	if err := c.verify(cert, usage, ekus, now); err != nil {
		return err
	}
	root := c.roots[i]
	c.verified.put(memo, window{from: maxTime(cert.NotBefore, root.NotBefore), to: minTime(cert.NotAfter, root.NotAfter)})
	return nil
}

// verify is Verify's checks after the signature's.
func (c *CA) verify(cert *x509.Certificate, usage Usage, ekus []x509.ExtKeyUsage, now time.Time) error {
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

// Verifying a certificate costs two signature verifications; the KMS
// verifies the client certificate of every request. A CA remembers the
// certificates it verified (by the SHA-256 of their bytes, and usage)
// with the time window in which they and the CA certificate that signed
// them are valid: within it, the same bytes verify again without
// signature checks; outside it, the whole check runs (and says why it
// fails). Nothing else the checks look at can change, since a CA's
// trusted certificates are fixed when it is made (a CA rotation makes a
// new CA). Revocation is never remembered: callers check it each time.

// maxVerified bounds the memo; when full it starts over.
const maxVerified = 8192

type verifiedKey struct {
	sum   [sha256.Size]byte
	usage Usage
}

type window struct{ from, to time.Time }

type verifiedMemo struct {
	mu sync.RWMutex
	m  map[verifiedKey]window
}

func (v *verifiedMemo) get(k verifiedKey) (window, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	w, ok := v.m[k]
	return w, ok
}

func (v *verifiedMemo) put(k verifiedKey, w window) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= maxVerified {
		v.m = make(map[verifiedKey]window)
	}
	v.m[k] = w
}
