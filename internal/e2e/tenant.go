package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
)

// Tenant is a tenant made through an endpoint's admin API, with a
// custodian ("payments-api") and a pipeline ("deployer"), and SDK clients
// that authenticate as each. The credentials hold private keys: secrets
// the tests keep in memory only.
type Tenant struct {
	Name string
	// Info is the answer to the tenant's creation.
	Info *api.Tenant
	// CustodianCreds and PipelineCreds are the apps' credentials, with
	// the private keys the KMS generated.
	CustodianCreds, PipelineCreds *api.AppCredentials
	// Custodian and Pipeline are SDK clients of the endpoint's URLs.
	Custodian, Pipeline *client.KMS

	ep Endpoint
}

// NewTenant creates tenant name, its custodian and its pipeline through
// ep's admin API; opts adjust the SDK clients of the apps. It fails t on
// any error.
func NewTenant(t testing.TB, ep Endpoint, name string, opts ...client.Option) *Tenant {
	t.Helper()
	ctx := t.Context()
	admin := ep.Admin(t)
	tn := &Tenant{Name: name, ep: ep}
	var err error
	if tn.Info, err = admin.CreateTenant(ctx, name); err != nil {
		t.Fatalf("CreateTenant(%s) through %v: %v", name, ep, err)
	}
	tn.CustodianCreds, tn.Custodian = tn.App(t, "payments-api", api.RoleCustodian, opts...)
	tn.PipelineCreds, tn.Pipeline = tn.App(t, "deployer", api.RolePipeline, opts...)
	return tn
}

// App registers another app of the tenant through the admin API and
// returns its credentials and an SDK client that authenticates as it.
func (tn *Tenant) App(t testing.TB, name string, role api.Role, opts ...client.Option) (*api.AppCredentials, *client.KMS) {
	t.Helper()
	creds, err := tn.ep.Admin(t).CreateApp(t.Context(), tn.Name, api.CreateAppRequest{Name: name, Role: role})
	if err != nil {
		t.Fatalf("CreateApp(%s, %s %s) through %v: %v", tn.Name, role, name, tn.ep, err)
	}
	return creds, tn.ep.Client(t, []byte(creds.CertPEM), []byte(creds.KeyPEM), opts...)
}

// Endpoint is the endpoint the tenant was made through.
func (tn *Tenant) Endpoint() Endpoint { return tn.ep }

// Token has the pipeline mint a one-time enrollment token for the
// custodian and returns it (secret).
func (tn *Tenant) Token(t testing.TB) string {
	t.Helper()
	tok, err := tn.Pipeline.CreateEnrollmentToken(t.Context(), api.CreateTokenRequest{CustodianDN: tn.CustodianCreds.DN})
	if err != nil {
		t.Fatalf("CreateEnrollmentToken for %s: %v", tn.CustodianCreds.DN, err)
	}
	return tok.Token
}

// DataKeys has the custodian create n data keys like req, from a few
// goroutines, and returns them in creation-request order.
func (tn *Tenant) DataKeys(t testing.TB, n int, req api.CreateDataKeyRequest) []*api.DataKey {
	t.Helper()
	const workers = 4
	out := make([]*api.DataKey, n)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for g := range workers {
		wg.Go(func() {
			for i := g; i < n; i += workers {
				dk, err := tn.Custodian.CreateDataKey(ctx, req)
				if err != nil {
					errs[g] = fmt.Errorf("CreateDataKey %d of %d (%s): %w", i, n, req.Type, err)
					cancel()
					return
				}
				out[i] = dk
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

// StartSidecar enrolls a `dcaas sidecar serve` process for the custodian
// with a fresh token, against the endpoint's first URL, and waits until
// it serves. cfg's KMSURL, CAPEM and Token are filled in when empty (no
// Token with cfg.Waiting: then EnrollSidecar enrolls it).
func (tn *Tenant) StartSidecar(t testing.TB, cfg SidecarConfig) *Sidecar {
	t.Helper()
	if cfg.KMSURL == "" {
		cfg.KMSURL = tn.ep.URLs[0]
	}
	if cfg.CAPEM == nil {
		cfg.CAPEM = tn.ep.CAPEM
	}
	if cfg.Token == "" && !cfg.Waiting {
		cfg.Token = tn.Token(t)
	}
	return StartSidecar(t, cfg)
}

// EnrollSidecar enrolls a sidecar that waits for a token (started with
// Waiting, or restarted) with `dcaas sidecar enroll` as the tenant's
// custodian (Sidecar.Enroll), and returns what the command printed.
func (tn *Tenant) EnrollSidecar(t testing.TB, s *Sidecar) string {
	t.Helper()
	return s.Enroll(t, tn.ep, []byte(tn.CustodianCreds.CertPEM), []byte(tn.CustodianCreds.KeyPEM))
}
