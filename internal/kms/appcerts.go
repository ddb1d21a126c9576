package kms

import (
	"context"
	"errors"
	"math/big"
	"strings"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/store"
)

// Client certificates of applications (custodians, pipelines, the admin):
// renewal by the application itself, issuance by an admin, listing and
// revocation. The registry entry of each certificate (store.Certs) is
// what authentication checks on every request, so a revocation refuses
// the certificate from the next request on, on every replica.

func (k *KMS) appCertRoutes() {
	apps := []api.Role{api.RoleAdmin, api.RoleCustodian, api.RolePipeline}
	k.handle("POST /v1/apps/self/certificate", "app.renew_certificate", apps, 0, k.renewOwnCert)
	k.handle("GET /v1/apps/self/certificates", "app.list_certificates", apps, 0, func(ctx context.Context, c *call) (any, error) {
		return k.listAppCerts(ctx, c, true)
	})
	k.handle("POST /v1/apps/self/certificates/revoke", "app.revoke_certificates", apps, 0, func(ctx context.Context, c *call) (any, error) {
		return k.revokeAppCerts(ctx, c, true)
	})
	k.handle("POST /v1/tenants/{tenant}/apps/{app}/certificate", "app.issue_certificate", []api.Role{api.RoleAdmin}, 0, k.issueCertFor)
	k.handle("GET /v1/tenants/{tenant}/apps/{app}/certificates", "app.list_certificates", apps, 0, func(ctx context.Context, c *call) (any, error) {
		return k.listAppCerts(ctx, c, false)
	})
	k.handle("POST /v1/tenants/{tenant}/apps/{app}/certificates/revoke", "app.revoke_certificates", apps, 0, func(ctx context.Context, c *call) (any, error) {
		return k.revokeAppCerts(ctx, c, false)
	})
}

// appTarget returns the application whose certificates a call manages:
// the caller itself (self), or the one the path names, which an admin may
// manage and an application only when it is that one.
func (k *KMS) appTarget(ctx context.Context, c *call, self bool) (store.App, error) {
	tenant, name := c.caller.Tenant, c.caller.Name
	if !self {
		tenant, name = c.r.PathValue("tenant"), c.r.PathValue("app")
		c.tenant = tenant
		if c.caller.Role != api.RoleAdmin && (tenant != c.caller.Tenant || name != c.caller.Name) {
			return store.App{}, api.Errorf(api.CodeForbidden, "An application may manage only its own certificates; an admin manages those of any application.")
		}
	}
	app, err := k.st.GetApp(ctx, tenant, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.App{}, api.Errorf(api.CodeNotFound, "There is no app %q in tenant %q.", name, tenant)
	}
	if err != nil {
		return store.App{}, storeErr(err, "app")
	}
	return app, nil
}

// decodeOptionalInto decodes the body into v unless there is none.
func (c *call) decodeOptionalInto(v any) error {
	if c.r.ContentLength == 0 {
		return nil
	}
	return c.decode(v)
}

// renewOwnCert issues a new certificate to the calling application,
// authenticated by its current one. The current certificate stays valid
// until it expires or is revoked.
func (k *KMS) renewOwnCert(ctx context.Context, c *call) (any, error) {
	return k.newAppCert(ctx, c, true)
}

// issueCertFor issues a new certificate to an existing application (an
// admin's call): for an application whose certificate expired, was
// revoked or was lost.
func (k *KMS) issueCertFor(ctx context.Context, c *call) (any, error) {
	return k.newAppCert(ctx, c, false)
}

// newAppCert issues a certificate to the calling application (self) or to
// the one the path names, from the CSR in the body or a new key.
func (k *KMS) newAppCert(ctx context.Context, c *call, self bool) (any, error) {
	var req api.RenewCertificateRequest
	if err := c.decodeOptionalInto(&req); err != nil {
		return nil, err
	}
	app, err := k.appTarget(ctx, c, self)
	if err != nil {
		return nil, err
	}
	creds, cert, err := k.issueAppCert(app, req.CSRPEM)
	if err != nil {
		return nil, err
	}
	if err := c.commit(ctx, func(tx store.Tx) error { return registerCert(ctx, tx, cert) }); err != nil {
		return nil, err
	}
	if self {
		k.log.Info("application certificate renewed", "tenant", app.Tenant, "app", app.Name, "serial", creds.Serial, "not_after", creds.NotAfter)
	} else {
		k.log.Info("application certificate issued", "tenant", app.Tenant, "app", app.Name, "serial", creds.Serial, "not_after", creds.NotAfter, "by", c.caller.DN)
	}
	return creds, nil
}

func (k *KMS) listAppCerts(ctx context.Context, c *call, self bool) (any, error) {
	app, err := k.appTarget(ctx, c, self)
	if err != nil {
		return nil, err
	}
	list, err := k.st.ListCerts(ctx, store.CertApp, app.Tenant, app.Name)
	if err != nil {
		return nil, storeErr(err, "certificates")
	}
	out := api.AppCertificates{Certificates: make([]api.AppCertificate, 0, len(list))}
	for _, rec := range list {
		out.Certificates = append(out.Certificates, api.AppCertificate{
			Serial: rec.Serial, NotAfter: rec.NotAfter, Revoked: rec.RevokedAt != nil, RevokedAt: rec.RevokedAt,
		})
	}
	return out, nil
}

func (k *KMS) revokeAppCerts(ctx context.Context, c *call, self bool) (any, error) {
	var req api.RevokeCertificatesRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if (req.Serial != "") == req.All {
		return nil, api.Errorf(api.CodeInvalidArgument, "Give exactly one of serial (one certificate) or all (every certificate of the application).")
	}
	var serial string
	if req.Serial != "" {
		var ok bool
		if serial, ok = normalizeSerial(req.Serial); !ok {
			return nil, api.Errorf(api.CodeInvalidArgument, "serial must be a certificate serial number in hexadecimal (colons allowed).")
		}
	}
	app, err := k.appTarget(ctx, c, self)
	if err != nil {
		return nil, err
	}
	now := k.now()
	out := api.RevokedCertificates{Revoked: []string{}}
	if serial != "" {
		rec, err := k.st.GetCert(ctx, serial)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, storeErr(err, "certificate")
		}
		if err != nil || rec.Kind != store.CertApp || rec.Tenant != app.Tenant || rec.Subject != app.Name {
			// One answer for unknown serials and other holders' serials.
			return nil, api.Errorf(api.CodeNotFound, "App %q has no certificate with serial %s.", app.Name, serial)
		}
		out.Revoked = append(out.Revoked, serial)
	} else {
		list, err := k.st.ListCerts(ctx, store.CertApp, app.Tenant, app.Name)
		if err != nil {
			return nil, storeErr(err, "certificates")
		}
		for _, rec := range list {
			if rec.RevokedAt == nil {
				out.Revoked = append(out.Revoked, rec.Serial)
			}
		}
	}
	err = c.commit(ctx, func(tx store.Tx) error {
		for _, serial := range out.Revoked {
			if err := tx.RevokeCert(ctx, serial, now); err != nil {
				return storeErr(err, "certificate")
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	k.log.Info("application certificates revoked", "tenant", app.Tenant, "app", app.Name, "serials", out.Revoked, "by", c.caller.DN)
	return out, nil
}

// maxSerialDigits bounds a serial number in hex (RFC 5280: 20 octets).
const maxSerialDigits = 40

// normalizeSerial turns a serial number in hex, as people copy it (upper
// or lower case, colon-separated octets as openssl prints them, leading
// zeros, a 0x prefix), into the registry's form (ca.SerialString).
func normalizeSerial(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "0x")
	s = strings.ReplaceAll(s, ":", "")
	if s == "" || len(s) > maxSerialDigits {
		return "", false
	}
	for _, ch := range []byte(s) {
		if !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f') {
			return "", false
		}
	}
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return "", false
	}
	return n.Text(16), true
}
