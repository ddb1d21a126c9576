package api

import "time"

// Listing: what an admin (the web console, `dcaas console`) reads to see
// the whole registry. Every list is complete; none of it is secret.

// Tenants is the answer to GET /v1/tenants.
type Tenants struct {
	Tenants []TenantInfo `json:"tenants"`
}

// TenantInfo is one tenant of a Tenants answer.
type TenantInfo struct {
	Name string `json:"name"`
	// MasterKeyVersion is the current master key version: new EKBs use
	// it, and versions 1 to it all still open older EKBs.
	MasterKeyVersion int       `json:"master_key_version"`
	CreatedAt        time.Time `json:"created_at"`
}

// Apps is the answer to GET /v1/tenants/{tenant}/apps.
type Apps struct {
	Apps []AppInfo `json:"apps"`
}

// AppInfo is one application of an Apps answer.
type AppInfo struct {
	Tenant    string    `json:"tenant"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	DN        string    `json:"dn"`
	CreatedAt time.Time `json:"created_at"`
}

// DataKeys is the answer to GET /v1/tenants/{tenant}/datakeys: the
// registry view of each of the tenant's keys, as GET
// /v1/datakeys/{key_id} gives it, by key id.
type DataKeys struct {
	Keys []DataKeyInfo `json:"keys"`
	// Metadata is the current version's metadata of each key, by key
	// id, as its EKB binds it: policy, purpose, labels, expiry,
	// exportable. A key whose stored EKB does not parse is absent.
	Metadata map[string]KeyMetadata `json:"metadata"`
}

// Fleet is the answer to GET /v1/tenants/{tenant}/instances.
type Fleet struct {
	Instances []FleetInstance `json:"instances"`
}

// FleetInstance is one sidecar instance of a Fleet answer: Instance with
// what the KMS knows of its certificates and keys.
type FleetInstance struct {
	InstanceID  string     `json:"instance_id"`
	Tenant      string     `json:"tenant"`
	CustodianDN string     `json:"custodian_dn"`
	Enclave     Enclave    `json:"enclave"`
	EnrolledAt  time.Time  `json:"enrolled_at"`
	Revoked     bool       `json:"revoked"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	// CertNotAfter is when the instance's current identity certificate
	// expires (absent if the KMS has no record of it).
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
	// KeysReleased is how many keys the KMS ever released to the
	// instance (rewrap, grant, seed derivation, refresh); KeysLoaded below
	// is what the sidecar says it still holds.
	KeysReleased int `json:"keys_released"`
	// LastPollAt is when the sidecar last polled the revocation feed
	// (absent: never since it was enrolled), and KeysLoaded how many keys
	// it said it held then (absent: it did not say).
	LastPollAt *time.Time `json:"last_poll_at,omitempty"`
	KeysLoaded *int       `json:"keys_loaded,omitempty"`
}
