package api

import "time"

// Health is the body of GET /healthz and GET /readyz (both servers).
//
// GET /healthz is liveness: it answers 200 with Status "ok" while the
// process serves, and reports the same checks as GET /readyz, with Ready
// saying whether they all pass. GET /readyz is readiness: 200 with Status
// "ok" when every check passes, else 503 with Status "not_ready"; Failed
// names the checks that failed on both.
type Health struct {
	Status string `json:"status"`
	// Ready is true when every check passes (what /readyz answers 200 to).
	Ready bool `json:"ready"`
	// FIPS reports whether the process runs in FIPS 140-3 mode.
	FIPS bool `json:"fips"`
	// Seal names the root-of-trust backend ("file", "pkcs11"); KMS only.
	Seal string `json:"seal,omitempty"`
	// Checks are the readiness checks: on the KMS "store" (the database
	// answers a ping) and "seal" (the root of trust opens the stored audit
	// key); on a sidecar "enrolled" (it holds a live, unrevoked identity).
	Checks []HealthCheck `json:"checks,omitempty"`
	// Failed names the checks that failed, if any.
	Failed []string `json:"failed,omitempty"`
	// Sidecar only: whether the last call to the KMS got an answer. It is
	// reported, not checked: a sidecar serves its loaded keys while the
	// KMS is away.
	KMSReachable *bool `json:"kms_reachable,omitempty"`
	// Sidecar only: the KMS revoked this instance; it serves nothing.
	Revoked bool `json:"revoked,omitempty"`
	// Version is the dcaas build (`dcaas version`).
	Version string `json:"version,omitempty"`
}

// HealthCheck is one readiness check of a Health.
type HealthCheck struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Error says why the check failed (never a secret).
	Error string `json:"error,omitempty"`
	// CheckedAt is when a cached check last ran (the seal check runs at
	// most every 30 seconds); absent for checks made for this request.
	CheckedAt *time.Time `json:"checked_at,omitempty"`
}

// Health statuses.
const (
	HealthOK       = "ok"        // /healthz: serving; /readyz: ready
	HealthNotReady = "not_ready" // /readyz: a check fails (503)
)

// Summarize sets a Health's Status, Ready and Failed from its Checks, for
// /readyz (readyz true) or /healthz (false).
func (h *Health) Summarize(readyz bool) {
	h.Failed = nil
	for _, c := range h.Checks {
		if !c.OK {
			h.Failed = append(h.Failed, c.Name)
		}
	}
	h.Ready = len(h.Failed) == 0
	h.Status = HealthOK
	if readyz && !h.Ready {
		h.Status = HealthNotReady
	}
}

// CreateTenantRequest is the body of POST /v1/tenants.
type CreateTenantRequest struct {
	Name string `json:"name"`
}

// Tenant is the answer to tenant creation.
type Tenant struct {
	Name             string `json:"name"`
	MasterKeyVersion int    `json:"master_key_version"`
}

// RotateMasterKeyResponse is the answer to POST /v1/tenants/{t}/master-key/rotate.
type RotateMasterKeyResponse struct {
	MasterKeyVersion int `json:"master_key_version"`
}

// CreateAppRequest is the body of POST /v1/tenants/{tenant}/apps.
type CreateAppRequest struct {
	Name   string `json:"name"`
	Role   Role   `json:"role"`
	CSRPEM string `json:"csr_pem,omitempty"`
}

// CreateAdminRequest registers another admin (POST /v1/admins): one
// identity per person, for key ceremonies. With CSRPEM the KMS certifies
// that key; without, it makes a key pair and returns the key once.
type CreateAdminRequest struct {
	Name   string `json:"name"`
	CSRPEM string `json:"csr_pem,omitempty"`
}

// AppCredentials is the answer to app creation and to certificate
// renewal. KeyPEM is a private key, present only when the KMS generated
// the key pair (no CSR was sent). CAPEM is the trust bundle: every CA
// certificate the KMS trusts (two during a CA rotation).
type AppCredentials struct {
	DN       string    `json:"dn"`
	CertPEM  string    `json:"cert_pem"`
	KeyPEM   string    `json:"key_pem,omitempty"`
	CAPEM    string    `json:"ca_pem"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
}

// Policy is a key policy: who may do what with a key. A key without a
// policy allows its owner every action and nobody else.
type Policy struct {
	Rules []PolicyRule `json:"rules"`
	// Limits, if set, bound each load of the key into a sidecar (like the
	// data-key caches of the AWS Encryption SDK). A sidecar refuses the
	// key with "expired" once a limit is reached; the custodian reloads it.
	Limits *UsageLimits `json:"limits,omitempty"`
	// Release, if set, names what a sidecar must prove before the KMS
	// releases the key to it (rewrap, load, derive, refresh): its enclave
	// kind, an attestation profile its last TPM quote satisfied, and how
	// recent that quote must be. A sidecar that does not meet them is
	// refused with attestation_required.
	Release *ReleaseConditions `json:"release,omitempty"`
}

// ReleaseConditions bound which sidecars may receive a key. Empty fields
// ask nothing.
type ReleaseConditions struct {
	// Enclave is the enclave kind the receiving sidecar must have
	// enrolled with ("tpm"). A sidecar enrolled by token runs the
	// software enclave and never meets "tpm".
	Enclave Enclave `json:"enclave,omitempty"`
	// AttestationProfile names a PCR profile of the KMS's attestation
	// policy that the sidecar's last quote must have satisfied. It
	// implies enclave "tpm".
	AttestationProfile string `json:"attestation_profile,omitempty"`
	// MaxAttestationAgeSeconds bounds the age of the sidecar's last
	// verified quote (at enrollment or a re-attestation). It implies
	// enclave "tpm".
	MaxAttestationAgeSeconds int64 `json:"max_attestation_age_seconds,omitempty"`
}

// UsageLimits bound one load of a key into a sidecar. Zero means no limit.
type UsageLimits struct {
	// MaxLeaseSeconds caps the lease: the load ends this long after it
	// began, whatever renewals say.
	MaxLeaseSeconds int64 `json:"max_lease_seconds,omitempty"`
	// MaxOperations caps the operations that protect new data (encrypt,
	// sign, mac) per load. Decryption and verification are not counted,
	// so data stays readable until the lease ends.
	MaxOperations int64 `json:"max_operations,omitempty"`
	// MaxBytes caps the input bytes of those operations per load.
	MaxBytes int64 `json:"max_bytes,omitempty"`
}

// PolicyRule names principals (RFC 4514 DNs, "*" wildcards allowed) and the
// actions they may perform.
type PolicyRule struct {
	Principals []string `json:"principals"`
	Actions    []Action `json:"actions"`
}

// KeyMetadata describes a data key. Everything in it is bound into the EKB
// as authenticated data. It never holds secret material.
type KeyMetadata struct {
	KeyID      string            `json:"key_id"`
	Version    int               `json:"version"`
	Tenant     string            `json:"tenant"`
	Type       KeyType           `json:"type"`
	Owner      string            `json:"owner"`
	Purpose    string            `json:"purpose,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	ExpiresAt  *time.Time        `json:"expires_at,omitempty"`
	Policy     *Policy           `json:"policy,omitempty"`
	Retained   bool              `json:"retained,omitempty"`
	Exportable bool              `json:"exportable,omitempty"`
	// RotationPeriodSeconds is how long a version stays current before
	// rotation is due (0: no automatic rotation).
	RotationPeriodSeconds int64 `json:"rotation_period_seconds,omitempty"`
	// PublicKeyPEM is the public half of a signing key (never secret).
	PublicKeyPEM string `json:"public_key_pem,omitempty"`
}

// CreateDataKeyRequest is the body of POST /v1/datakeys.
type CreateDataKeyRequest struct {
	Type      KeyType           `json:"type"`
	Policy    *Policy           `json:"policy,omitempty"`
	ExpiresAt *time.Time        `json:"expires_at,omitempty"`
	Purpose   string            `json:"purpose,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Retain    bool              `json:"retain,omitempty"`
	// Exportable lets the owner export the key wrapped to an outside
	// public key (POST /v1/datakeys/export). It is bound into the EKB.
	Exportable bool `json:"exportable,omitempty"`
	// RotationPeriodSeconds makes rotation due this long after each
	// version is created (0: never; otherwise at least one hour). It is
	// bound into the EKB. The KMS rotates retained keys itself when they
	// are next used; for other keys it reports rotation_due and warns.
	RotationPeriodSeconds int64 `json:"rotation_period_seconds,omitempty"`
}

// DataKey is the answer to data-key creation and to a new version.
type DataKey struct {
	KeyID        string      `json:"key_id"`
	Version      int         `json:"version"`
	EKB          []byte      `json:"ekb"`
	Metadata     KeyMetadata `json:"metadata"`
	PublicKeyPEM string      `json:"public_key_pem,omitempty"`
	// KCV is the version's key check value, six upper-case hex digits,
	// for the key types that have one (docs/api.md, "Key check values");
	// empty otherwise.
	KCV string `json:"kcv,omitempty"`
}

// NewVersionRequest is the body of POST /v1/datakeys/{key_id}/versions.
type NewVersionRequest struct {
	EKB []byte `json:"ekb"`
}

// CreateTokenRequest is the body of POST /v1/enrollment/tokens.
type CreateTokenRequest struct {
	CustodianDN string `json:"custodian_dn,omitempty"`
	TTLSeconds  int    `json:"ttl_seconds,omitempty"`
}

// EnrollmentToken is a one-time "secret zero". Token is secret.
type EnrollmentToken struct {
	Token       string    `json:"token"`
	ExpiresAt   time.Time `json:"expires_at"`
	CustodianDN string    `json:"custodian_dn"`
}

// Challenge is a fresh enrollment nonce.
type Challenge struct {
	Nonce     []byte    `json:"nonce"`
	ExpiresAt time.Time `json:"expires_at"`
	// CredentialBlob and EncryptedSecret (TPM2_MakeCredential's
	// TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET contents) answer a
	// ChallengeRequest with an EK certificate.
	CredentialBlob  []byte `json:"credential_blob,omitempty"`
	EncryptedSecret []byte `json:"encrypted_secret,omitempty"`
}

// PublicKey is an HPKE public key: the KEM and its RFC 9180 serialization.
type PublicKey struct {
	KEM       KEM    `json:"kem"`
	PublicKey []byte `json:"public_key"`
}

// EnrollRequest is the body of POST /v1/enrollment.
type EnrollRequest struct {
	CSRPEM            string       `json:"csr_pem"`
	WrappingPublicKey PublicKey    `json:"wrapping_public_key"`
	Token             string       `json:"token,omitempty"`
	Attestation       *Attestation `json:"attestation,omitempty"`
}

// Attestation is TPM evidence: a quote over the challenge nonce and the CSR
// key digest, signed by an attestation key.
type Attestation struct {
	Nonce     []byte         `json:"nonce"`
	AKPublic  []byte         `json:"ak_public"`
	Quote     []byte         `json:"quote"`
	Signature []byte         `json:"signature"`
	PCRs      map[int][]byte `json:"pcrs,omitempty"`
	// ActivatedCredential is the secret the TPM recovered with
	// TPM2_ActivateCredential from the challenge's credential (a
	// challenge asked with an EK certificate): it proves the AK is
	// resident in the TPM whose EK certificate was checked.
	ActivatedCredential []byte `json:"activated_credential,omitempty"`
}

// ChallengeRequest is the optional body of POST /v1/enrollment/challenge.
// A sidecar whose attestation key is not on the KMS's allow-list sends its
// TPM's EK certificate and its AK; the KMS checks the certificate's chain
// to a manufacturer root and answers with a credential only that TPM can
// activate, and only if the AK is resident in it.
type ChallengeRequest struct {
	EKCert   []byte `json:"ek_cert,omitempty"`   // DER X.509 EK certificate
	AKPublic []byte `json:"ak_public,omitempty"` // the AK's TPMT_PUBLIC
}

// ReattestRequest is the body of POST /v1/instances/self/attest: a fresh
// quote over a challenge nonce (POST /v1/enrollment/challenge), bound to
// the identity key of the calling certificate and the instance's transport
// key, by the attestation key the instance enrolled with.
type ReattestRequest struct {
	Attestation *Attestation `json:"attestation"`
}

// Attested is the answer to a re-attestation.
type Attested struct {
	AttestedAt          time.Time `json:"attested_at"`
	AttestationProfiles []string  `json:"attestation_profiles"`
}

// Enrollment is the answer to a successful enrollment.
type Enrollment struct {
	InstanceID      string `json:"instance_id"`
	CertPEM         string `json:"cert_pem"`
	WrappingCertPEM string `json:"wrapping_cert_pem"`
	// CAPEM is the trust bundle: every CA certificate the KMS trusts (two
	// during a CA rotation), the issuing one first.
	CAPEM       string `json:"ca_pem"`
	CustodianDN string `json:"custodian_dn"`
}

// Instance is one enrolled sidecar.
type Instance struct {
	InstanceID  string    `json:"instance_id"`
	CustodianDN string    `json:"custodian_dn"`
	Enclave     Enclave   `json:"enclave"`
	EnrolledAt  time.Time `json:"enrolled_at"`
	Revoked     bool      `json:"revoked"`
	// AttestedAt is when the instance's last TPM quote was verified, and
	// AttestationProfiles the attestation profiles it satisfied (TPM
	// instances only).
	AttestedAt          *time.Time `json:"attested_at,omitempty"`
	AttestationProfiles []string   `json:"attestation_profiles,omitempty"`
	// AKFingerprint is the TPM attestation key the instance enrolled with
	// (hex SHA-256 of its TPMT_PUBLIC; attested instances only): the
	// platform, as the attestation policy names it.
	AKFingerprint string `json:"ak_fingerprint,omitempty"`
	// Manufacturer is the TPM manufacturer of the attestation policy whose
	// EK certificate vouched for that key at enrollment (empty when the
	// policy's allow-list did, and for token-enrolled instances).
	Manufacturer string `json:"manufacturer,omitempty"`
}

// Instances is the answer to GET /v1/instances.
type Instances struct {
	Instances []Instance `json:"instances"`
}

// Revoked is the answer to a revocation.
type Revoked struct {
	Revoked bool `json:"revoked"`
}

// RevokePlatformRequest is the body of POST /v1/instances/revoke-platform:
// revoke every live instance enrolled with a TPM attestation key (a
// platform taken out of service, or no longer trusted), or every one a
// TPM manufacturer vouched for (a manufacturer no longer trusted). It
// names exactly one of the two.
type RevokePlatformRequest struct {
	// AKFingerprint is the attestation key's fingerprint: hex SHA-256 of
	// its TPMT_PUBLIC, as the attestation policy's ak_fingerprint and GET
	// /v1/instances give it.
	AKFingerprint string `json:"ak_fingerprint,omitempty"`
	// Manufacturer is a manufacturer's name as the attestation policy
	// named it when its EK certificates vouched for the instances'
	// attestation keys (GET /v1/instances gives it); it need not be in
	// the policy any more.
	Manufacturer string `json:"manufacturer,omitempty"`
}

// RevokedInstances is the answer to POST /v1/instances/revoke-platform:
// the instances revoked by the call (those revoked before are not listed).
type RevokedInstances struct {
	Revoked []string `json:"revoked"`
}

// RewrapRequest is the body of POST /v1/keys/rewrap.
type RewrapRequest struct {
	EKBs            [][]byte `json:"ekbs"`
	WrappingCertPEM string   `json:"wrapping_cert_pem"`
}

// WrappedKey describes one key of a WrappedKeys answer. In an answer of
// format 2 (the default) only KeyID and Version are set, for the
// custodian's information: the key itself travels in WrappedKeys.Batch. In
// a legacy answer of format 1, Wrapped holds the key sealed to the sidecar
// (HPKE) and Metadata and Encryptions are bound to it.
type WrappedKey struct {
	KeyID    string      `json:"key_id"`
	Version  int         `json:"version"`
	Wrapped  []byte      `json:"wrapped,omitempty"`
	Metadata KeyMetadata `json:"metadata,omitzero"`
	// Encryptions is how many encryptions the KMS knows this version has
	// made (central path and sidecar reports); the sidecar counts on from
	// it toward the version's safe limit.
	Encryptions int64 `json:"encryptions,omitempty"`
}

// WrappedKeys is the answer to rewrap, load and derive, and the body of a
// sidecar's import: pass it on unchanged.
type WrappedKeys struct {
	// Batch is every key sealed to the sidecar in one wrapped-key batch
	// (format version 2, docs/formats.md): the recipient, the issue time,
	// the expiry, each key's exact metadata and encryption count are all
	// authenticated. The sidecar trusts nothing else in the answer.
	Batch []byte `json:"batch,omitempty"`
	// ExpiresAt is when the sidecar stops accepting Batch (the issue time
	// plus the KMS's wrap TTL): a saved answer cannot be replayed later.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Keys lists the keys in Batch, for information, or in a legacy
	// format-1 answer holds the wrapped keys themselves.
	Keys []WrappedKey `json:"keys"`
	// Warnings are sentences for the custodian about the released keys,
	// e.g. that a key's rotation is due.
	Warnings []string `json:"warnings,omitempty"`
}

// AuditRecord is one entry of the hash-chained audit log. It never holds a
// secret. Signature is the KMS audit key's Ed25519 signature of the record
// (docs/formats.md §4). The KMS signs the last record of each transaction,
// which covers the records before it through the chain; the others, and
// records written before the KMS had an audit key, have none.
type AuditRecord struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Caller    string    `json:"caller"`
	Role      string    `json:"role,omitempty"`
	Action    string    `json:"action"`
	Tenant    string    `json:"tenant,omitempty"`
	KeyID     string    `json:"key_id,omitempty"`
	Outcome   string    `json:"outcome"`
	Code      string    `json:"code,omitempty"`
	PrevHash  []byte    `json:"prev_hash"`
	Hash      []byte    `json:"hash"`
	Signature []byte    `json:"signature,omitempty"`
}

// AuditPage is the answer to GET /v1/audit.
type AuditPage struct {
	Records []AuditRecord `json:"records"`
	Next    int64         `json:"next"`
}

// AuditKey is the answer to GET /v1/audit/key: the public key that
// verifies the audit log's signatures (Ed25519, PEM "PUBLIC KEY") and its
// id ("ed25519:" and 16 hex digits).
type AuditKey struct {
	KeyID        string `json:"key_id"`
	PublicKeyPEM string `json:"public_key_pem"`
	// CurrentKeyID is the id of the key the KMS signs with now: KeyID's
	// until the key is rotated (POST /v1/audit/key/rotate). Verifiers
	// need only KeyID's key: the log itself carries the keys it was
	// rotated to.
	CurrentKeyID string `json:"current_key_id,omitempty"`
}

// AuditCheckpoint is the audit key's signature over the audit log's head
// at Time: the log held Seq records, the last with Hash (Seq 0: empty,
// Hash 32 zero bytes). Kept outside the database, it lets a verifier
// detect records removed from the end of the log up to Seq (dcaas audit
// verify --expect-checkpoint). docs/formats.md §4 has the signed bytes.
type AuditCheckpoint struct {
	Seq       int64     `json:"seq"`
	Hash      []byte    `json:"hash"`
	Time      time.Time `json:"time"`
	Signature []byte    `json:"signature"`
	KeyID     string    `json:"key_id"`
}

// AuditPruneRequest is the body of POST /v1/audit/prune: delete the audit
// log's records up to and including Through, a signed record whose hash
// is Hash (the last record of an archive that holds them: dcaas audit
// archive), older than the KMS's audit retention. The log then starts
// after record Through.
type AuditPruneRequest struct {
	Through int64  `json:"through"`
	Hash    []byte `json:"hash"`
}

// AuditStart is the answer to GET /v1/audit/start and POST
// /v1/audit/prune: the signed record the audit log starts after. Records 1
// to Seq were pruned (archived elsewhere); record Seq+1 is chained to
// Hash, and Signature is the audit key's record signature of record Seq
// (docs/formats.md §4). Seq 0 (no hash, no signature): nothing was pruned.
type AuditStart struct {
	Seq       int64  `json:"seq"`
	Hash      []byte `json:"hash,omitempty"`
	Signature []byte `json:"signature,omitempty"`
	// Keys are the records at or below Seq that changed the audit key
	// (rotations, retirements), oldest first: what a verifier holding the
	// log's first key needs to know which keys sign after the start.
	Keys  []AuditRecord `json:"keys,omitempty"`
	KeyID string        `json:"key_id"`
}

// GrantRequest is the body of POST /v1/grants: a single-use authorization
// for one sidecar instance to load exactly these EKBs, retained keys or
// seeds. Seeds are secret.
type GrantRequest struct {
	InstanceID string   `json:"instance_id"`
	EKBs       [][]byte `json:"ekbs,omitempty"`
	KeyIDs     []string `json:"key_ids,omitempty"`
	Seeds      [][]byte `json:"seeds,omitempty"`
	TTLSeconds int      `json:"ttl_seconds,omitempty"`
}

// Grant is an authorization grant. Grant is secret until used.
type Grant struct {
	Grant     string    `json:"grant"`
	ExpiresAt time.Time `json:"expires_at"`
}

// LoadRequest is the body of the KMS's POST /v1/keys/load (caller: the
// sidecar the grant names). Recipient is a fresh ephemeral HPKE key.
type LoadRequest struct {
	Grant     string    `json:"grant"`
	EKBs      [][]byte  `json:"ekbs,omitempty"`
	KeyIDs    []string  `json:"key_ids,omitempty"`
	Recipient PublicKey `json:"recipient"`
}

// Seed names a key to derive: the seed (secret) and the key type.
type Seed struct {
	Seed []byte  `json:"seed"`
	Type KeyType `json:"type"`
	// KDF is the seed derivation version; empty means SeedKDFv2.
	KDF SeedKDF `json:"kdf,omitempty"`
	// Policy is the derived key's policy (nil: its custodian only). SeedKDF
	// v2 binds it into the key: another policy derives another key. v1
	// takes none.
	Policy *Policy `json:"policy,omitempty"`
}

// DeriveRequest is the body of the KMS's POST /v1/keys/derive.
type DeriveRequest struct {
	Grant     string    `json:"grant"`
	Seeds     []Seed    `json:"seeds"`
	Recipient PublicKey `json:"recipient"`
}

// RevocationFeed is the answer to GET /v1/revocations: what concerns the
// calling sidecar instance after the cursor — the keys released to it and
// its own revocation, nothing of other keys or instances — and the cursor
// to ask from next.
type RevocationFeed struct {
	Cursor    string   `json:"cursor"`
	Instances []string `json:"instances"`
	Keys      []string `json:"keys"`
	// KeyVersions are keys whose min_decryption_version was raised: the
	// sidecar evicts their versions below it.
	KeyVersions []KeyVersionFloor `json:"key_versions,omitempty"`
	// Rotated are new versions of keys (manual, periodic or usage-triggered
	// rotation): a sidecar that holds the key fetches the new version with
	// POST /v1/keys/refresh and encrypts with it from then on.
	Rotated []KeyVersionRef `json:"rotated,omitempty"`
	// RevokedCertificates are the serials (lower-case hex) of the bound
	// custodian's client certificates that were revoked and have not
	// expired: the whole list at every poll, not events. The sidecar's
	// mutual-TLS listener refuses them.
	RevokedCertificates []string `json:"revoked_certificates,omitempty"`
}

// KeyVersionRef names one version of a key.
type KeyVersionRef struct {
	KeyID   string `json:"key_id"`
	Version int    `json:"version"`
}

// RenewInstanceRequest is the body of POST /v1/instances/self/renew: a
// sidecar, authenticated by its current identity certificate, asks for new
// identity and wrapping certificates. The CSR proves possession of the
// identity key; the wrapping key must be of the instance's KEM.
type RenewInstanceRequest struct {
	CSRPEM            string    `json:"csr_pem"`
	WrappingPublicKey PublicKey `json:"wrapping_public_key"`
}

// RefreshRequest is the body of POST /v1/keys/refresh: a sidecar asks for
// the versions of keys it already holds that are newer than the ones it
// has (rotation delivery), sealed to Recipient.
type RefreshRequest struct {
	Keys      []KeyVersionRef `json:"keys"`
	Recipient PublicKey       `json:"recipient"`
}

// KeyVersionFloor is a key's minimum decryption version: versions below
// it are retired.
type KeyVersionFloor struct {
	KeyID                string `json:"key_id"`
	MinDecryptionVersion int    `json:"min_decryption_version"`
}

// MinDecryptionVersionRequest is the body of POST
// /v1/datakeys/{key_id}/min-decryption-version: retire every version below
// Version (1 ≤ Version ≤ the current version; it never goes down).
type MinDecryptionVersionRequest struct {
	Version int `json:"version"`
}

// DataKeyInfo is the KMS's registry view of a data key (GET
// /v1/datakeys/{key_id}); it never holds key material.
type DataKeyInfo struct {
	KeyID                 string    `json:"key_id"`
	Type                  KeyType   `json:"type"`
	Owner                 string    `json:"owner"`
	Retained              bool      `json:"retained"`
	CreatedAt             time.Time `json:"created_at"`
	CurrentVersion        int       `json:"current_version"`
	MinDecryptionVersion  int       `json:"min_decryption_version"`
	RotationPeriodSeconds int64     `json:"rotation_period_seconds,omitempty"`
	// RotationDue is true when the current version is older than the
	// rotation period, or has made three quarters of its safe number of
	// encryptions (EncryptionLimit).
	RotationDue bool `json:"rotation_due"`
	Disabled    bool `json:"disabled"`
	// EncryptionLimit is the safe number of encryptions per version
	// (AES-GCM keys only; 0 for other types).
	EncryptionLimit int64                `json:"encryption_limit,omitempty"`
	Versions        []DataKeyVersionInfo `json:"versions"`
}

// DataKeyVersionInfo is one version in DataKeyInfo.
type DataKeyVersionInfo struct {
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	// Encryptions and Bytes count what the version encrypted, on the
	// central path and as sidecars reported it.
	Encryptions int64 `json:"encryptions"`
	Bytes       int64 `json:"bytes"`
	Retired     bool  `json:"retired"`
	// KCV is the version's key check value (see DataKey.KCV).
	KCV string `json:"kcv,omitempty"`
}

// UsageReport is the body of POST /v1/usage: a sidecar's encryption
// counts since its last report.
type UsageReport struct {
	Counts []UsageCount `json:"counts"`
}

// UsageCount is what one key version encrypted.
type UsageCount struct {
	KeyID       string `json:"key_id"`
	Version     int    `json:"version"`
	Encryptions int64  `json:"encryptions"`
	Bytes       int64  `json:"bytes"`
}

// UsageAccepted answers POST /v1/usage: how many counts were added. Only
// counts for AES-GCM key versions released to the reporting instance are;
// others (seed-derived keys, keys it was not given) are skipped alike.
type UsageAccepted struct {
	Accepted int `json:"accepted"`
}

// Disabled answers DELETE /v1/datakeys/{key_id}.
type Disabled struct {
	Disabled bool `json:"disabled"`
}

// ImportParameters is the answer to GET /v1/tenants/{tenant}/import-parameters:
// the tenant's import public keys and a single-use import token.
type ImportParameters struct {
	RSAPublicKeyPEM string    `json:"rsa_public_key_pem"`
	HPKEPublicKey   PublicKey `json:"hpke_public_key"`
	ImportToken     string    `json:"import_token"`
	ExpiresAt       time.Time `json:"expires_at"`
}

// Wrapping names how key material is wrapped for import or export.
type Wrapping string

// Wrapping schemes.
const (
	WrappingRSAAES Wrapping = "rsa-aes-key-wrap-sha256"
	WrappingHPKE   Wrapping = "hpke"
	// WrappingTR31 is a TR-31 / ANSI X9.143 key block of version D under a
	// key-block protection key (an aes-256-kbpk key named by kbpk_id).
	WrappingTR31 Wrapping = "tr31"
)

// ImportKeyRequest is the body of POST /v1/datakeys/import: material the
// custodian generated elsewhere, wrapped to the tenant's import key.
type ImportKeyRequest struct {
	ImportToken     string            `json:"import_token"`
	Wrapping        Wrapping          `json:"wrapping"`
	WrappedMaterial []byte            `json:"wrapped_material"`
	Type            KeyType           `json:"type"`
	Policy          *Policy           `json:"policy,omitempty"`
	Exportable      bool              `json:"exportable,omitempty"`
	ExpiresAt       *time.Time        `json:"expires_at,omitempty"`
	Purpose         string            `json:"purpose,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Retain          bool              `json:"retain,omitempty"`
	// For wrapping "tr31": the key block (ASCII, instead of import_token
	// and wrapped_material) and the key-block protection key it is under.
	// type may be left out: the block's key usage decides it.
	KeyBlock string `json:"key_block,omitempty"`
	KBPKID   string `json:"kbpk_id,omitempty"`
}

// ExportRequest is the body of POST /v1/datakeys/export: the owner asks
// for an exportable key wrapped to an outside public key (an RSA public key
// PEM for rsa-aes-key-wrap-sha256, an HPKE public key for hpke).
type ExportRequest struct {
	EKB          []byte     `json:"ekb"`
	Wrapping     Wrapping   `json:"wrapping"`
	PublicKeyPEM string     `json:"public_key_pem,omitempty"`
	PublicKey    *PublicKey `json:"public_key,omitempty"`
	// For wrapping "tr31": the key-block protection key to wrap under, and
	// optionally the exportability the block gives the partner ("E", the
	// default, "S" or "N"; never more than the key allows).
	KBPKID            string `json:"kbpk_id,omitempty"`
	TR31Exportability string `json:"tr31_exportability,omitempty"`
}

// ExportResponse carries the wrapped material, or for tr31 the key block.
type ExportResponse struct {
	WrappedMaterial []byte `json:"wrapped_material,omitempty"`
	KeyBlock        string `json:"key_block,omitempty"`
	// KCV is the exported version's key check value (see DataKey.KCV),
	// to check the unwrapped material against.
	KCV string `json:"kcv,omitempty"`
}

// SeedKDF names a seed derivation version (docs/formats.md §7).
type SeedKDF string

// Seed derivation versions.
const (
	// SeedKDFv2 derives under the custodian's own seed key and binds the
	// key type and policy: two custodians never derive the same key from
	// the same seed. The default.
	SeedKDFv2 SeedKDF = "v2"
	// SeedKDFv1 derives under the tenant HMAC key, as before v2: every
	// custodian of the tenant gets the same key from the same seed. Only
	// for data made under it.
	SeedKDFv1 SeedKDF = "v1"
)
