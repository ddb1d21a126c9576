package store

import "context"

// Listing is what an admin's console reads to show the whole registry:
// every tenant, a tenant's apps and keys, and the keys released to a
// sidecar instance. Each list is complete (no paging): a tenant holds
// apps and keys by the thousand, not by the million.
type Listing interface {
	// ListTenants returns every tenant, by name (bytewise).
	ListTenants(ctx context.Context) ([]Tenant, error)
	// ListApps returns the apps of tenant, by name (bytewise); "" lists
	// the admins. An unknown tenant has none.
	ListApps(ctx context.Context, tenant string) ([]App, error)
	// ListKeys returns the data keys of tenant, disabled ones included,
	// by key id (bytewise). An unknown tenant has none.
	ListKeys(ctx context.Context, tenant string) ([]Key, error)
	// ReleasedKeys returns, for each key ever released to the instance,
	// the highest version released (ReleasedVersions for every key). An
	// unknown instance has none.
	ReleasedKeys(ctx context.Context, instanceID string) (map[string]int, error)
}
