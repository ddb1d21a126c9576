package kms

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync/atomic"
	"time"

	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
)

// serverCerts holds the KMS's TLS server certificate. The TLS config reads
// it at every handshake (GetCertificate), so a renewal takes effect for
// the next connection without a restart; connections already open keep
// the certificate they were made with.
type serverCerts struct {
	hosts []string
	cur   atomic.Pointer[serverCert]
}

// serverCert is one issued server certificate with its in-memory key,
// which never touches the disk.
type serverCert struct {
	pair    *tls.Certificate
	issuer  *x509.Certificate // the CA certificate that signed it
	renewAt time.Time
}

// renewAtFraction is when, as a fraction of its life from issuance, a
// server certificate is renewed: at two thirds, a third of its life is
// left to retry a renewal that fails.
const renewAtFraction = 2.0 / 3.0

// renewalTime is when a certificate issued at issued and expiring at
// notAfter is due for renewal. The certificate's NotBefore is backdated
// for clock skew, so the issue time is what counts.
func renewalTime(issued, notAfter time.Time) time.Time {
	return issued.Add(time.Duration(float64(notAfter.Sub(issued)) * renewAtFraction))
}

// serverTLS issues this process's first TLS server certificate for hosts
// and returns the server TLS config: the certificate comes from
// GetCertificate (so it can be renewed in place); client certificates are
// requested, not required, and verified per request.
func (k *KMS) serverTLS(ctx context.Context, hosts []string) (*tls.Config, error) {
	k.server.hosts = hosts
	if err := k.renewServerCert(ctx); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := k.server.cur.Load(); c != nil {
				return c.pair, nil
			}
			return nil, errors.New("kms: no TLS server certificate")
		},
	}, nil
}

// renewServerCert issues a server certificate from the CA in force, with
// a fresh key, registers it and puts it in place.
func (k *KMS) renewServerCert(ctx context.Context) error {
	authority := k.authority()
	key, err := kcrypto.GenerateIdentityKey()
	if err != nil {
		return err
	}
	issued := k.now()
	der, cert, err := authority.IssueServer(key.Public(), k.server.hosts, k.cfg.ServerCertTTL)
	if err != nil {
		return err
	}
	entry := certEntry(cert, store.CertServer, "", cert.Subject.CommonName)
	err = k.storeRecorded(ctx, audit.Event{Action: "server.issue_certificate"}, func(tx store.Tx) error {
		return registerCert(ctx, tx, entry)
	})
	if err != nil {
		return err
	}
	prev := k.server.cur.Swap(&serverCert{
		pair:    &tls.Certificate{Certificate: [][]byte{der, authority.Cert().Raw}, PrivateKey: key, Leaf: cert},
		issuer:  authority.Cert(),
		renewAt: renewalTime(issued, cert.NotAfter),
	})
	k.mx.certExpiry.WithLabelValues(expiryServer).Set(float64(cert.NotAfter.Unix()))
	if prev != nil {
		k.log.Info("TLS server certificate renewed", "serial", ca.SerialString(cert), "not_after", cert.NotAfter,
			"previous_serial", ca.SerialString(prev.pair.Leaf), "issuer_serial", ca.SerialString(authority.Cert()))
	}
	return nil
}

// serverCertDue reports whether the server certificate must be renewed at
// now: it reached its renewal time, or another CA issues now (after a CA
// rotation's activate or retire step).
func (k *KMS) serverCertDue(now time.Time) bool {
	c := k.server.cur.Load()
	return c != nil && (!now.Before(c.renewAt) || !c.issuer.Equal(k.authority().Cert()))
}

// checkCerts is one round of the certificate loop: pick up CA rotation
// steps other replicas stored, and renew the server certificate when it
// is due. A failure is logged and retried at the next round, while the
// current certificate keeps serving.
func (k *KMS) checkCerts(ctx context.Context) {
	if _, err := k.refreshCA(ctx); err != nil && ctx.Err() == nil {
		k.log.Warn("reading the CA state from the store failed", "err", err)
	}
	if err := k.reloadAuditKey(ctx); err != nil && ctx.Err() == nil {
		k.log.Warn("reading the audit key from the store failed; signing with the one held", "err", err)
	}
	if !k.serverCertDue(k.now()) {
		return
	}
	if err := k.renewServerCert(ctx); err != nil && ctx.Err() == nil {
		k.log.Warn("renewing the TLS server certificate failed; the current one keeps serving", "err", err)
	}
}

// startCertLoop runs checkCerts every CertCheckInterval (or on each of
// Config.CertTicks) until the returned function is called.
func (k *KMS) startCertLoop() (stop func()) {
	return every(k.cfg.CertCheckInterval, k.cfg.CertTicks, k.checkCerts)
}

// ServerCertificate returns the TLS server certificate the KMS presents
// now. It is shared: do not modify it.
func (k *KMS) ServerCertificate() *x509.Certificate {
	if c := k.server.cur.Load(); c != nil {
		return c.pair.Leaf
	}
	return nil
}
