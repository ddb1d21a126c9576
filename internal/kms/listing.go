package kms

import (
	"context"
	"errors"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/store"
)

// Listing routes: the whole registry, for an admin (the web console,
// `dcaas console`, reads its pages from them). Reads only; each is
// audited like every other call.

func (k *KMS) listingRoutes() {
	admin := []api.Role{api.RoleAdmin}
	k.handle("GET /v1/tenants", "tenant.list", admin, 0, k.listTenants)
	k.handle("GET /v1/tenants/{tenant}/apps", "app.list", admin, 0, k.listApps)
	k.handle("GET /v1/tenants/{tenant}/datakeys", "datakey.list", admin, 0, k.listDataKeys)
	k.handle("GET /v1/tenants/{tenant}/instances", "instance.list", admin, 0, k.listFleet)
}

func (k *KMS) listTenants(ctx context.Context, c *call) (any, error) {
	list, err := k.st.ListTenants(ctx)
	if err != nil {
		return nil, storeErr(err, "tenants")
	}
	out := api.Tenants{Tenants: make([]api.TenantInfo, 0, len(list))}
	for _, t := range list {
		out.Tenants = append(out.Tenants, api.TenantInfo{Name: t.Name, MasterKeyVersion: t.MasterKeyVersion, CreatedAt: t.CreatedAt.UTC()})
	}
	return out, nil
}

// pathTenant returns the tenant the path names, which must exist.
func (k *KMS) pathTenant(ctx context.Context, c *call) (string, error) {
	name := c.r.PathValue("tenant")
	c.tenant = name
	_, err := k.st.GetTenant(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return "", api.Errorf(api.CodeNotFound, "There is no tenant %q.", name)
	}
	if err != nil {
		return "", storeErr(err, "tenant")
	}
	return name, nil
}

func (k *KMS) listApps(ctx context.Context, c *call) (any, error) {
	tenant, err := k.pathTenant(ctx, c)
	if err != nil {
		return nil, err
	}
	list, err := k.st.ListApps(ctx, tenant)
	if err != nil {
		return nil, storeErr(err, "apps")
	}
	out := api.Apps{Apps: make([]api.AppInfo, 0, len(list))}
	for _, a := range list {
		out.Apps = append(out.Apps, api.AppInfo{Tenant: a.Tenant, Name: a.Name, Role: api.Role(a.Role), DN: a.DN, CreatedAt: a.CreatedAt.UTC()})
	}
	return out, nil
}

func (k *KMS) listDataKeys(ctx context.Context, c *call) (any, error) {
	tenant, err := k.pathTenant(ctx, c)
	if err != nil {
		return nil, err
	}
	list, err := k.st.ListKeys(ctx, tenant)
	if err != nil {
		return nil, storeErr(err, "keys")
	}
	out := api.DataKeys{Keys: make([]api.DataKeyInfo, 0, len(list)), Metadata: map[string]api.KeyMetadata{}}
	for _, key := range list {
		info, err := k.keyInfo(ctx, k.st, key)
		if err != nil {
			return nil, err
		}
		out.Keys = append(out.Keys, *info)
		v, err := k.st.GetKeyVersion(ctx, key.KeyID, key.CurrentVersion)
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue
		case err != nil:
			return nil, storeErr(err, "key version")
		}
		if md, ok := ekbMetadata(v.EKB, key); ok {
			out.Metadata[key.KeyID] = md
		}
	}
	return out, nil
}

// ekbMetadata reads the metadata an EKB of key binds (its header is
// plaintext; nothing is opened). ok is false when the EKB does not parse
// or is not key's.
func ekbMetadata(raw []byte, key store.Key) (api.KeyMetadata, bool) {
	var md api.KeyMetadata
	e, err := format.ParseEKB(raw)
	if err != nil || e.KeyID != key.KeyID || e.Tenant != key.Tenant {
		return md, false
	}
	if !decodeMetadata(e.Metadata, &md) || md.KeyID != key.KeyID {
		return md, false
	}
	return md, true
}

func (k *KMS) listFleet(ctx context.Context, c *call) (any, error) {
	tenant, err := k.pathTenant(ctx, c)
	if err != nil {
		return nil, err
	}
	list, err := k.st.ListInstances(ctx, tenant, "")
	if err != nil {
		return nil, storeErr(err, "instances")
	}
	// One read for every instance's certificate and releases, however
	// large the fleet.
	details, err := k.st.FleetDetails(ctx, tenant)
	if err != nil {
		return nil, storeErr(err, "instances")
	}
	out := api.Fleet{Instances: make([]api.FleetInstance, 0, len(list))}
	for _, in := range list {
		fi := api.FleetInstance{
			InstanceID: in.ID, Tenant: in.Tenant, CustodianDN: in.CustodianDN, Enclave: api.Enclave(in.Enclave),
			EnrolledAt: in.EnrolledAt.UTC(), Revoked: in.RevokedAt != nil, RevokedAt: utcPtr(in.RevokedAt),
		}
		d := details[in.ID]
		if !d.CertNotAfter.IsZero() {
			fi.CertNotAfter = utcPtr(&d.CertNotAfter)
		}
		fi.KeysReleased = d.KeysReleased
		fi.LastPollAt, fi.KeysLoaded = utcPtr(in.LastPollAt), in.KeysLoaded
		if n, ok := k.polls.get(in.ID); ok && (in.LastPollAt == nil || n.at.After(*in.LastPollAt)) {
			// A quiet poll this replica has not stored yet (polls.go).
			fi.LastPollAt = utcPtr(&n.at)
			if n.loaded >= 0 {
				fi.KeysLoaded = &n.loaded
			}
		}
		out.Instances = append(out.Instances, fi)
	}
	return out, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
