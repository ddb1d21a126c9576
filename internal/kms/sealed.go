package kms

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/httpapi"
	"github.com/dcaas/dcaas/internal/store"
)

// Dual control of the root key (issue 16): a data dir whose root key is
// split into unseal key shares (`dcaas seal init`) starts sealed, served
// by internal/datadir's Sealed gate until enough shares are posted; then
// the gate opens the KMS and hands it every request. The KMS itself
// answers the two /v1/sys routes once it is open, so clients see one API
// whether it is sealed or not.

// ActionUnseal is the audit action of a successful unseal, appended by
// the KMS the shares opened, naming the admin whose share completed it.
const ActionUnseal = "sys.unseal"

// SetShareSet records that the root key is split into shares (the set id,
// threshold and count), for GET /v1/sys/seal-status once unsealed.
func (k *KMS) SetShareSet(s api.SealStatus) {
	s.Sealed, s.Progress, s.Posted = false, 0, nil
	k.shareSeal.Store(&s)
}

// SealStatus is what GET /v1/sys/seal-status answers on an open KMS:
// never sealed, with the share set when the root key is split.
func (k *KMS) SealStatus() api.SealStatus {
	if s := k.shareSeal.Load(); s != nil {
		return *s
	}
	return api.SealStatus{}
}

func (k *KMS) sysRoutes() {
	// Read-only and unauthenticated, like /healthz: it reveals no secret,
	// and custodians check it before and while posting shares.
	k.router.HandleFunc("GET /v1/sys/seal-status", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, k.SealStatus())
	})
	// An open KMS has nothing to unseal: a late custodian's share is
	// not needed, and the answer says the KMS is unsealed.
	k.handle("POST /v1/sys/unseal", ActionUnseal+"_late", []api.Role{api.RoleAdmin}, 0, func(_ context.Context, _ *call) (any, error) {
		return k.SealStatus(), nil
	})
}

// AuthenticateAdmin checks, for a KMS that is still sealed, that r comes
// with a client certificate of an admin: issued by one of roots (the CA
// bundle of DIR/ca.pem, readable without the root key), valid now, known
// to the store's certificate registry, not revoked, and of an app with
// the admin role. It returns the admin's DN. Errors are API errors (401
// or 403), as authenticate's.
func AuthenticateAdmin(ctx context.Context, st store.Store, roots *x509.CertPool, r *http.Request, now time.Time) (string, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", errNoCert
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return "", api.Errorf(api.CodeUnauthenticated, "The client certificate has expired or is not yet valid.")
		}
		return "", api.Errorf(api.CodeUnauthenticated, "The client certificate was not issued by this KMS's CA.")
	}
	rec, app, err := st.GetCertIdentity(ctx, ca.SerialString(leaf))
	if errors.Is(err, store.ErrNotFound) {
		return "", api.Errorf(api.CodeUnauthenticated, "The client certificate is unknown to this KMS.")
	}
	if err != nil {
		return "", storeErr(err, "certificate")
	}
	if rec.RevokedAt != nil {
		return "", api.Errorf(api.CodeRevoked, "The client certificate has been revoked.")
	}
	if rec.Kind != store.CertApp {
		return "", api.Errorf(api.CodeForbidden, "Only an admin may post unseal key shares.")
	}
	if app == nil {
		return "", api.Errorf(api.CodeUnauthenticated, "The application of this certificate no longer exists.")
	}
	if api.Role(app.Role) != api.RoleAdmin {
		return "", api.Errorf(api.CodeForbidden, "Only an admin may post unseal key shares; this certificate is of a %s.", app.Role)
	}
	return app.DN, nil
}

// RecordUnseal appends the audit record of an unseal: who posted the
// share that completed it (dn), at what time the KMS opened, and the share
// set (in the record's key field).
func (k *KMS) RecordUnseal(ctx context.Context, dn, shareSet string) error {
	r, err := k.audit.Append(context.WithoutCancel(ctx), k.db, audit.Event{
		Caller: dn, Role: string(api.RoleAdmin), Action: ActionUnseal, KeyID: shareSet, Outcome: "ok",
	})
	if err == nil {
		k.audit.Stored(r.Seq)
	}
	return err
}

// IssueUnsealCert issues a TLS server certificate (for hosts, lifetime
// Config.ServerCertTTL, registered and audited like the KMS's own) with a
// fresh key, and returns both in PEM: the certificate chain and the
// PKCS#8 key, which the caller writes into the data dir for the next
// sealed start (the CA key is sealed then, so the sealed listener's
// certificate must exist beforehand). The caller wipes keyPEM.
func (k *KMS) IssueUnsealCert(ctx context.Context, hosts []string) (certPEM, keyPEM []byte, err error) {
	authority := k.authority()
	key, err := kcrypto.GenerateIdentityKey()
	if err != nil {
		return nil, nil, err
	}
	der, cert, err := authority.IssueServer(key.Public(), hosts, k.cfg.ServerCertTTL)
	if err != nil {
		return nil, nil, err
	}
	entry := certEntry(cert, store.CertServer, "", cert.Subject.CommonName)
	err = k.storeRecorded(ctx, audit.Event{Action: "server.issue_certificate"}, func(tx store.Tx) error {
		return registerCert(ctx, tx, entry)
	})
	if err != nil {
		return nil, nil, err
	}
	kp, err := kcrypto.MarshalPrivateKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: authority.Cert().Raw})...)
	return certPEM, kp, nil
}
