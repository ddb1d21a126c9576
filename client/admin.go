package client

import (
	"context"
	"net/http"

	"github.com/dcaas/dcaas/api"
)

// Reads of the whole registry for an admin (what `dcaas console` shows),
// and the admin's key lifecycle calls. All are reads except
// RetireKeyVersions, and reads are retried like every idempotent call.

// ListTenants lists every tenant with its current master key version
// (admin), by name.
func (k *KMS) ListTenants(ctx context.Context) ([]api.TenantInfo, error) {
	var out api.Tenants
	err := k.t.do(ctx, idempotent, http.MethodGet, "/v1/tenants", nil, &out)
	return out.Tenants, err
}

// ListApps lists the custodians and pipelines of tenant (admin), by name.
func (k *KMS) ListApps(ctx context.Context, tenant string) ([]api.AppInfo, error) {
	var out api.Apps
	err := k.t.do(ctx, idempotent, http.MethodGet, "/v1/tenants/"+pathEscape(tenant)+"/apps", nil, &out)
	return out.Apps, err
}

// ListDataKeys lists the registry view of every data key of tenant,
// disabled ones included, by key id, with each key's current metadata
// (policy, purpose, labels, expiry) as its EKB binds it (admin).
func (k *KMS) ListDataKeys(ctx context.Context, tenant string) (*api.DataKeys, error) {
	var out api.DataKeys
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, "/v1/tenants/"+pathEscape(tenant)+"/datakeys", nil, &out))
}

// DataKey reads the registry view of one key: versions, usage, state (its
// owner, or an admin).
func (k *KMS) DataKey(ctx context.Context, keyID string) (*api.DataKeyInfo, error) {
	var out api.DataKeyInfo
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, "/v1/datakeys/"+pathEscape(keyID), nil, &out))
}

// RetireKeyVersions retires every version of a key below version: they
// no longer decrypt or release anywhere (its owner, or an admin).
// Retired versions stay retired.
func (k *KMS) RetireKeyVersions(ctx context.Context, keyID string, version int) (*api.DataKeyInfo, error) {
	var out api.DataKeyInfo
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/datakeys/"+pathEscape(keyID)+"/min-decryption-version",
		api.MinDecryptionVersionRequest{Version: version}, &out))
}

// RotateDataKey makes the next version of a key the KMS retains, from the
// EKB it holds (its owner, or an admin). A key whose EKB only its
// custodian holds is rotated by that custodian with NewKeyVersion.
func (k *KMS) RotateDataKey(ctx context.Context, keyID string) (*api.DataKey, error) {
	var out api.DataKey
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/datakeys/"+pathEscape(keyID)+"/rotate", nil, &out))
}

// Fleet lists the sidecar instances of tenant with their certificate
// expiry and how many keys the KMS released to each (admin).
func (k *KMS) Fleet(ctx context.Context, tenant string) ([]api.FleetInstance, error) {
	var out api.Fleet
	err := k.t.do(ctx, idempotent, http.MethodGet, "/v1/tenants/"+pathEscape(tenant)+"/instances", nil, &out)
	return out.Instances, err
}

// Metrics reads GET /metrics of the KMS that answered last (admin): the
// Prometheus text exposition format, as it came. The caller owns the
// returned slice.
func (k *KMS) Metrics(ctx context.Context) ([]byte, error) {
	var out []byte
	err := k.t.do(ctx, idempotent, http.MethodGet, "/metrics", nil, &out)
	return out, err
}
