package kms

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
)

// appSubject is the certificate subject of a tenant app: CN=<app>,O=<tenant>.
func appSubject(tenant, name string) pkix.Name {
	return pkix.Name{CommonName: name, Organization: []string{tenant}}
}

// subjectOf is the certificate subject of a stored app (or the admin).
func subjectOf(app store.App) pkix.Name {
	if app.Tenant == "" && app.Role == string(api.RoleAdmin) {
		return adminSubjectOf(app.Name)
	}
	return appSubject(app.Tenant, app.Name)
}

func (k *KMS) createApp(ctx context.Context, c *call) (any, error) {
	tenant := c.r.PathValue("tenant")
	c.tenant = tenant
	var req api.CreateAppRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := checkName("app", req.Name); err != nil {
		return nil, err
	}
	if req.Role != api.RoleCustodian && req.Role != api.RolePipeline {
		return nil, api.Errorf(api.CodeInvalidArgument, "The role must be %q or %q.", api.RoleCustodian, api.RolePipeline)
	}
	if _, err := k.st.GetTenant(ctx, tenant); err != nil {
		return nil, storeErr(err, "tenant")
	}
	app := store.App{Tenant: tenant, Name: req.Name, Role: string(req.Role), DN: appSubject(tenant, req.Name).String(), CreatedAt: k.now()}
	creds, cert, err := k.issueAppCert(app, req.CSRPEM)
	if err != nil {
		return nil, err
	}
	// A custodian gets its own seed key (SeedKDF v2) at registration.
	var seedKey []byte
	if req.Role == api.RoleCustodian {
		if seedKey, err = k.newSeedKeyRecord(ctx, tenant, app.DN); err != nil {
			return nil, err
		}
	}
	// The app and its certificate are registered together, with the
	// record: never an app whose credentials were lost, nor a registered
	// certificate of an app that does not exist.
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := tx.CreateApp(ctx, app); err != nil {
			if errors.Is(err, store.ErrExists) {
				return api.Errorf(api.CodeConflict, "App %q already exists in tenant %q.", req.Name, tenant)
			}
			return storeErr(err, "app")
		}
		if seedKey != nil {
			if _, err := storeSeedKey(ctx, tx, tenant, app.DN, seedKey); err != nil {
				return err
			}
		}
		return registerCert(ctx, tx, cert)
	})
	if err != nil {
		return nil, err
	}
	return creds, nil
}

// issueAppCert issues a client certificate for app: for the key of
// csrPEM, or, without one, for a key the KMS generates and returns in
// KeyPEM (a secret the caller must hand over and forget). It returns the
// registry entry to store with it (registerCert).
func (k *KMS) issueAppCert(app store.App, csrPEM string) (*api.AppCredentials, store.Cert, error) {
	authority := k.authority()
	subject := subjectOf(app)
	var (
		der    []byte
		cert   *x509.Certificate
		keyPEM []byte
		err    error
	)
	if csrPEM != "" {
		der, cert, err = authority.IssueFromCSR([]byte(csrPEM), subject, k.cfg.AppCertTTL)
	} else {
		key, gerr := kcrypto.GenerateIdentityKey()
		if gerr != nil {
			return nil, store.Cert{}, gerr
		}
		if keyPEM, err = kcrypto.MarshalPrivateKeyPEM(key); err != nil {
			return nil, store.Cert{}, err
		}
		defer secret.Zero(keyPEM)
		der, cert, err = authority.IssueClient(key.Public(), subject, k.cfg.AppCertTTL)
	}
	if err != nil {
		if errors.Is(err, ca.ErrInvalidCSR) {
			return nil, store.Cert{}, api.Errorf(api.CodeInvalidCSR, "The CSR is malformed, its signature does not verify, or its key is not ECDSA P-256/P-384/P-521, Ed25519 or RSA of 2048 to 8192 bits.")
		}
		return nil, store.Cert{}, err
	}
	return &api.AppCredentials{
		DN: app.DN, CertPEM: pemCert(der), KeyPEM: string(keyPEM), CAPEM: authority.BundlePEM(),
		Serial: ca.SerialString(cert), NotAfter: cert.NotAfter,
	}, certEntry(cert, store.CertApp, app.Tenant, app.Name), nil
}

// certEntry is the CA registry entry of an issued certificate.
func certEntry(cert *x509.Certificate, kind, tenant, subject string) store.Cert {
	return store.Cert{Serial: ca.SerialString(cert), Kind: kind, Tenant: tenant, Subject: subject, NotAfter: cert.NotAfter}
}

// registerCert records an issued certificate in the CA registry.
func registerCert(ctx context.Context, st store.Certs, c store.Cert) error {
	if err := st.PutCert(ctx, c); err != nil {
		return storeErr(err, "certificate")
	}
	return nil
}

// IssueAdmin issues an admin client certificate for pub and registers it,
// with the admin app and an audit record, in one transaction; used when a
// data dir is initialized.
func (k *KMS) IssueAdmin(ctx context.Context, pub crypto.PublicKey) ([]byte, error) {
	app := store.App{Name: "admin", Role: string(api.RoleAdmin), DN: adminSubject.String(), CreatedAt: k.now()}
	der, cert, err := k.authority().IssueClient(pub, adminSubject, k.cfg.AppCertTTL)
	if err != nil {
		return nil, err
	}
	err = k.storeRecorded(ctx, audit.Event{Action: "app.issue_certificate"}, func(tx store.Tx) error {
		if err := tx.CreateApp(ctx, app); err != nil && !errors.Is(err, store.ErrExists) {
			return storeErr(err, "admin")
		}
		return registerCert(ctx, tx, certEntry(cert, store.CertApp, "", "admin"))
	})
	if err != nil {
		return nil, err
	}
	return der, nil
}
