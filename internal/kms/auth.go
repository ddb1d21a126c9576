package kms

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/ca"
	"github.com/dcaas/dcaas/internal/store"
)

var errNoCert = api.Errorf(api.CodeUnauthenticated, "This endpoint needs a client certificate issued by the KMS CA.")

// authenticate turns the TLS client certificate into a caller. The TLS
// server only requests certificates, so verification happens here: the
// chain must lead to the KMS CA, the certificate must be valid now, known
// to the CA registry and not revoked. Every failure is a 401 or 403 with
// a JSON body, never a TLS alert.
func (k *KMS) authenticate(ctx context.Context, r *http.Request) (*caller, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, errNoCert
	}
	leaf := r.TLS.PeerCertificates[0]
	if err := k.authority().Verify(leaf, ca.UsageClient, k.now()); err != nil {
		switch {
		case errors.Is(err, ca.ErrExpired):
			return nil, api.Errorf(api.CodeUnauthenticated, "The client certificate has expired or is not yet valid.")
		case errors.Is(err, ca.ErrForeign):
			return nil, api.Errorf(api.CodeUnauthenticated, "The client certificate was not issued by this KMS's CA.")
		default:
			return nil, api.Errorf(api.CodeUnauthenticated, "The client certificate is not acceptable.")
		}
	}
	serial := ca.SerialString(leaf)
	if who, ok := k.reads.identity(serial); ok {
		return who, nil
	}
	gen := k.reads.gen.Load()
	rec, app, err := k.st.GetCertIdentity(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.Errorf(api.CodeUnauthenticated, "The client certificate is unknown to this KMS.")
	}
	if err != nil {
		return nil, storeErr(err, "certificate")
	}
	if rec.RevokedAt != nil {
		return nil, api.Errorf(api.CodeRevoked, "The client certificate has been revoked.")
	}
	switch rec.Kind {
	case store.CertApp:
		if app == nil {
			return nil, api.Errorf(api.CodeUnauthenticated, "The application of this certificate no longer exists.")
		}
		who := &caller{DN: app.DN, Role: api.Role(app.Role), Tenant: app.Tenant, Name: app.Name}
		k.reads.putIdentity(serial, who, gen)
		return who, nil
	case store.CertInstance:
		in, err := k.st.GetInstance(ctx, rec.Subject)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, api.Errorf(api.CodeUnauthenticated, "The sidecar instance of this certificate is unknown.")
			}
			return nil, storeErr(err, "instance")
		}
		if in.RevokedAt != nil {
			return nil, api.Errorf(api.CodeRevoked, "Sidecar instance %s has been revoked.", in.ID)
		}
		return &caller{DN: leaf.Subject.String(), Role: api.RoleSidecar, Tenant: in.Tenant, Name: in.ID, Instance: &in}, nil
	}
	return nil, api.Errorf(api.CodeUnauthenticated, "This certificate cannot be used as a client identity.")
}

// storeErr turns a store error into an API error. what names the thing
// looked up ("tenant", "key") for not-found messages.
func storeErr(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return api.Errorf(api.CodeNotFound, "The %s does not exist.", what)
	case errors.Is(err, store.ErrExists):
		return api.Errorf(api.CodeConflict, "The %s already exists.", what)
	case errors.Is(err, store.ErrConflict):
		return api.Errorf(api.CodeConflict, "The %s was changed concurrently or is not the current version; retry with the current one.", what)
	case errors.Is(err, store.ErrUnavailable):
		return &wrapped{api.Errorf(api.CodeUnavailable, "The KMS database is unavailable (disk full, read-only or unreachable); retry later."), err}
	}
	return fmt.Errorf("kms: %s: %w", what, err)
}

// wrapped is an API error that keeps its cause for logs.
type wrapped struct {
	apiErr *api.Error
	cause  error
}

func (w *wrapped) Error() string   { return w.apiErr.Error() + ": " + w.cause.Error() }
func (w *wrapped) Unwrap() []error { return []error{w.apiErr, w.cause} }
