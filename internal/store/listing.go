package store

import (
	"context"
	"time"
)

// Listing is what an admin's console reads to show the whole registry:
// every tenant, a tenant's apps and keys, and what its fleet of sidecar
// instances was released. Each list is complete (no paging): a tenant holds
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
	// FleetDetails returns, for each instance of tenant, by id, how many
	// distinct keys were ever released to it and when its current
	// certificate expires (zero when that certificate is not stored), in
	// one read however large the fleet. An unknown tenant has none.
	FleetDetails(ctx context.Context, tenant string) (map[string]FleetDetail, error)
}

// FleetDetail is what the fleet listing shows of an instance beyond the
// instance itself.
type FleetDetail struct {
	KeysReleased int
	CertNotAfter time.Time
}
