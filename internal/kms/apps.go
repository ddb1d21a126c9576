package kms

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
)

// appSubject is the certificate subject of a tenant app: CN=<app>,O=<tenant>.
func appSubject(tenant, name string) pkix.Name {
	return pkix.Name{CommonName: name, Organization: []string{tenant}}
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
	subject := appSubject(tenant, req.Name)
	dn := subject.String()
	// Validate the CSR before anything is written.
	var keyPEM []byte
	issue := func() ([]byte, *x509.Certificate, error) {
		return k.ca.IssueFromCSR([]byte(req.CSRPEM), subject, k.cfg.AppCertTTL)
	}
	if req.CSRPEM == "" {
		key, err := kcrypto.GenerateIdentityKey()
		if err != nil {
			return nil, err
		}
		if keyPEM, err = kcrypto.MarshalPrivateKeyPEM(key); err != nil {
			return nil, err
		}
		issue = func() ([]byte, *x509.Certificate, error) {
			return k.ca.IssueClient(key.Public(), subject, k.cfg.AppCertTTL)
		}
	}
	der, cert, err := issue()
	if err != nil {
		if errors.Is(err, ca.ErrInvalidCSR) {
			return nil, api.Errorf(api.CodeInvalidCSR, "The CSR is malformed or its signature does not verify.")
		}
		return nil, err
	}
	// The certificate is registered first: if creating the app then
	// fails, an unused registry entry remains (it authenticates nobody,
	// since authentication also needs the app), never an app whose
	// credentials were lost.
	if err := k.registerCert(ctx, cert, store.CertApp, tenant, req.Name); err != nil {
		return nil, err
	}
	app := store.App{Tenant: tenant, Name: req.Name, Role: string(req.Role), DN: dn, CreatedAt: k.now()}
	if err := k.st.CreateApp(ctx, app); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, api.Errorf(api.CodeConflict, "App %q already exists in tenant %q.", req.Name, tenant)
		}
		return nil, storeErr(err, "app")
	}
	return api.AppCredentials{DN: dn, CertPEM: pemCert(der), KeyPEM: string(keyPEM), CAPEM: k.ca.CertPEM()}, nil
}

// registerCert records an issued certificate in the CA registry.
func (k *KMS) registerCert(ctx context.Context, cert *x509.Certificate, kind, tenant, subject string) error {
	err := k.st.PutCert(ctx, store.Cert{Serial: ca.SerialString(cert), Kind: kind, Tenant: tenant, Subject: subject, NotAfter: cert.NotAfter})
	if err != nil {
		return storeErr(err, "certificate")
	}
	return nil
}

// IssueAdmin issues an admin client certificate for pub and registers it;
// used when a data dir is initialized.
func (k *KMS) IssueAdmin(ctx context.Context, pub crypto.PublicKey) ([]byte, error) {
	subject := pkix.Name{CommonName: "admin", Organization: []string{"dcaas"}}
	app := store.App{Name: "admin", Role: string(api.RoleAdmin), DN: subject.String(), CreatedAt: k.now()}
	if err := k.st.CreateApp(ctx, app); err != nil && !errors.Is(err, store.ErrExists) {
		return nil, storeErr(err, "admin")
	}
	der, cert, err := k.ca.IssueClient(pub, subject, k.cfg.AppCertTTL)
	if err != nil {
		return nil, err
	}
	if err := k.registerCert(ctx, cert, store.CertApp, "", "admin"); err != nil {
		return nil, err
	}
	return der, nil
}
