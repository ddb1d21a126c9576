package kms

import (
	"context"
	"crypto/x509/pkix"
	"errors"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/store"
)

// Named admins. A data dir starts with one admin, "admin"; key ceremonies
// (key components entered by different people, M-of-N approvals) need one
// identity per person, so an admin can register more: each is an app with
// no tenant, role admin, and the subject CN=<name>,O=dcaas. The tenant name
// "dcaas" is reserved so that no tenant app ever has an admin's DN.

// adminOrg is the organization of every admin's certificate subject.
const adminOrg = "dcaas"

// adminSubjectOf is the certificate subject of the admin called name.
func adminSubjectOf(name string) pkix.Name {
	return pkix.Name{CommonName: name, Organization: []string{adminOrg}}
}

// adminSubject is the subject of the first admin, made with the data dir.
var adminSubject = adminSubjectOf("admin")

func (k *KMS) adminRoutes() {
	k.handle("POST /v1/admins", "admin.create", []api.Role{api.RoleAdmin}, 0, k.createAdmin)
}

// createAdmin registers another admin and issues its certificate (for the
// key of its CSR, or for a key the KMS makes and returns once), with the
// audit record, in one transaction.
func (k *KMS) createAdmin(ctx context.Context, c *call) (any, error) {
	var req api.CreateAdminRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := checkName("admin", req.Name); err != nil {
		return nil, err
	}
	use, err := k.approvalFor(ctx, c, api.ApprovalCreateAdmin, "", "", req)
	if err != nil {
		return nil, err
	}
	app := store.App{Name: req.Name, Role: string(api.RoleAdmin), DN: adminSubjectOf(req.Name).String(), CreatedAt: k.now()}
	creds, cert, err := k.issueAppCert(app, req.CSRPEM)
	if err != nil {
		return nil, err
	}
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := use.consumeIn(ctx, tx); err != nil {
			return err
		}
		if err := tx.CreateApp(ctx, app); err != nil {
			if errors.Is(err, store.ErrExists) {
				return api.Errorf(api.CodeConflict, "Admin %q already exists.", req.Name)
			}
			return storeErr(err, "admin")
		}
		return registerCert(ctx, tx, cert)
	})
	if err != nil {
		return nil, err
	}
	return creds, nil
}
