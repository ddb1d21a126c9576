package api

import "time"

// Status is the body of a sidecar's GET /v1/status.
type Status struct {
	// Enrolled is false while the sidecar waits for an enrollment token
	// (POST /v1/enroll), once its identity certificate has expired
	// unrenewed, and once the KMS revoked it (Revoked is then true too);
	// InstanceID and CustodianDN are then empty, or those of the lapsed or
	// revoked enrollment.
	Enrolled     bool    `json:"enrolled"`
	InstanceID   string  `json:"instance_id"`
	CustodianDN  string  `json:"custodian_dn"`
	Enclave      Enclave `json:"enclave"`
	KMSReachable bool    `json:"kms_reachable"`
	KeysLoaded   int     `json:"keys_loaded"`
	// Revoked is true once the KMS revoked this instance: it serves
	// nothing from then on.
	Revoked bool `json:"revoked,omitempty"`
	// KMSLastContact is when the sidecar last reached the KMS (zero: never
	// since start).
	KMSLastContact *time.Time `json:"kms_last_contact,omitempty"`
	// IdentityNotAfter is when the sidecar's identity certificate expires;
	// the sidecar renews it at about two thirds of its lifetime.
	IdentityNotAfter *time.Time `json:"identity_not_after,omitempty"`
	// PreviousInstanceID is the instance this data dir held before the
	// sidecar restarted without being able to reuse it (a software enclave
	// keeps no key across restarts): its keys died with the old process,
	// so its custodian should revoke it (EnsureEnrolled does).
	PreviousInstanceID string `json:"previous_instance_id,omitempty"`
}

// WrappingCertificate is the body of GET /v1/wrapping-certificate.
type WrappingCertificate struct {
	CertPEM string `json:"cert_pem"`
}

// SidecarEnrollRequest is the body of a sidecar's POST /v1/enroll: the
// one-time token its bound custodian minted for it (a secret).
type SidecarEnrollRequest struct {
	Token string `json:"token"`
}

// ImportKeysRequest is the body of a sidecar's POST /v1/keys/import: the
// KMS's rewrap answer, unchanged.
type ImportKeysRequest = WrappedKeys

// Loaded answers the sidecar's import, load and derive.
type Loaded struct {
	Loaded []string `json:"loaded"`
}

// SidecarLoadRequest is the body of a sidecar's POST /v1/keys/load.
type SidecarLoadRequest struct {
	Grant  string   `json:"grant"`
	EKBs   [][]byte `json:"ekbs,omitempty"`
	KeyIDs []string `json:"key_ids,omitempty"`
}

// LoadedKey is what GET /v1/keys lists for each loaded key version: its
// metadata (never secrets) and lease.
type LoadedKey struct {
	KeyMetadata
	LeaseExpiresAt *time.Time `json:"lease_expires_at,omitempty"`
	// Encryptions is the version's encryption count as this sidecar knows
	// it: the KMS's count when it was loaded plus this sidecar's since.
	Encryptions int64 `json:"encryptions,omitempty"`
}

// LoadedKeys is the body of GET /v1/keys.
type LoadedKeys struct {
	Keys []LoadedKey `json:"keys"`
}

// Evicted answers DELETE /v1/keys/{key_id}.
type Evicted struct {
	Evicted bool `json:"evicted"`
}

// SidecarDeriveRequest is the body of a sidecar's POST /v1/keys/derive.
type SidecarDeriveRequest struct {
	Grant string `json:"grant"`
	Seeds []Seed `json:"seeds"`
}

// SealRequest is the body of a sidecar's POST /v1/keys/seal.
type SealRequest struct {
	KeyIDs []string `json:"key_ids"`
}

// SealedKey is one version of a loaded key sealed under the sidecar's
// local master key. Seal returns one per loaded version, oldest first: the
// newest encrypts, each decrypts its own version's ciphertexts.
type SealedKey struct {
	KeyID     string `json:"key_id"`
	Version   int    `json:"version"`
	SealedKey []byte `json:"sealed_key"`
}

// SealResponse answers POST /v1/keys/seal.
type SealResponse struct {
	Sealed []SealedKey `json:"sealed"`
}
