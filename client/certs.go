package client

import (
	"context"
	"errors"
	"net/http"

	"github.com/dcaas/dcaas/api"
)

// Certificates of applications and the KMS CA. An application's
// certificate (custodian, pipeline, admin) lives for the KMS's
// --app-cert-ttl (default 365 days): renew it before it expires with
// RenewCertificate, then build a new KMS client with the new certificate
// and key. The KMS refuses a revoked certificate from the next request on.

// RenewCertificate asks for a new client certificate for the caller, which
// the current one authenticates (admin, custodian, pipeline). With csrPEM
// the KMS certifies that CSR's key; with "" it generates the key pair and
// the answer's KeyPEM holds the private key: a secret to store with care
// (file mode 0600) and never log. CAPEM in the answer is the KMS's trust
// bundle. The current certificate stays valid until it expires or is
// revoked (RevokeCertificates).
func (k *KMS) RenewCertificate(ctx context.Context, csrPEM string) (*api.AppCredentials, error) {
	var out api.AppCredentials
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/apps/self/certificate", api.RenewCertificateRequest{CSRPEM: csrPEM}, &out))
}

// IssueAppCertificate issues a new client certificate to an existing
// application of tenant (admin): for one whose certificate expired, was
// revoked or was lost. csrPEM and the answer are as for RenewCertificate.
func (k *KMS) IssueAppCertificate(ctx context.Context, tenant, app, csrPEM string) (*api.AppCredentials, error) {
	var out api.AppCredentials
	path := "/v1/tenants/" + pathEscape(tenant) + "/apps/" + pathEscape(app) + "/certificate"
	return result(&out, k.t.do(ctx, once, http.MethodPost, path, api.RenewCertificateRequest{CSRPEM: csrPEM}, &out))
}

// ErrAppNamedHalfway is returned when only one of tenant and app is given
// to a certificate call: give both (an application) or neither (the caller).
var ErrAppNamedHalfway = errors.New("client: name both the tenant and the app, or neither for the caller's own certificates")

// certsPath is the certificates collection of tenant's app, or the
// caller's own when both are empty.
func certsPath(tenant, app string) (string, error) {
	switch {
	case tenant == "" && app == "":
		return "/v1/apps/self/certificates", nil
	case tenant == "" || app == "":
		return "", ErrAppNamedHalfway
	}
	return "/v1/tenants/" + pathEscape(tenant) + "/apps/" + pathEscape(app) + "/certificates", nil
}

// Certificates lists every certificate the KMS issued to tenant's app
// (an admin, or that app), or to the caller when tenant and app are both
// empty; expired and revoked ones included, soonest expiry first.
func (k *KMS) Certificates(ctx context.Context, tenant, app string) ([]api.AppCertificate, error) {
	path, err := certsPath(tenant, app)
	if err != nil {
		return nil, err
	}
	var out api.AppCertificates
	err = k.t.do(ctx, idempotent, http.MethodGet, path, nil, &out)
	return out.Certificates, err
}

// RevokeCertificates revokes one certificate (req.Serial, in hex as
// openssl or SerialString print it) or every one (req.All) of tenant's app
// (an admin, or that app), or of the caller when tenant and app are both
// empty, and returns the serials revoked. All includes the certificate
// this client uses: its next call is refused.
func (k *KMS) RevokeCertificates(ctx context.Context, tenant, app string, req api.RevokeCertificatesRequest) ([]string, error) {
	path, err := certsPath(tenant, app)
	if err != nil {
		return nil, err
	}
	var out api.RevokedCertificates
	err = k.t.do(ctx, once, http.MethodPost, path+"/revoke", req, &out)
	return out.Revoked, err
}

// CA reads the KMS's trust bundle: every CA certificate it trusts, which
// one issues, and where a CA rotation stands. Anyone may call it.
func (k *KMS) CA(ctx context.Context) (*api.CATrust, error) {
	var out api.CATrust
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, "/v1/ca", nil, &out))
}

// PrepareCA starts a CA rotation (admin): a new CA joins the trust bundle;
// the current one still issues. Hand the bundle (CATrust.BundlePEM) to
// every peer of the KMS before ActivateCA.
func (k *KMS) PrepareCA(ctx context.Context) (*api.CATrust, error) { return k.caStep(ctx, "prepare") }

// ActivateCA makes the prepared CA issue (admin); the previous CA stays
// trusted until RetireCA.
func (k *KMS) ActivateCA(ctx context.Context) (*api.CATrust, error) { return k.caStep(ctx, "activate") }

// RetireCA removes the previous CA from the trust bundle (admin):
// certificates that chain only to it are refused from then on. The
// caller's own certificate must be from the new CA.
func (k *KMS) RetireCA(ctx context.Context) (*api.CATrust, error) { return k.caStep(ctx, "retire") }

func (k *KMS) caStep(ctx context.Context, step string) (*api.CATrust, error) {
	var out api.CATrust
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/ca/"+step, nil, &out))
}
