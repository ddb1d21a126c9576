package client

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/dcaas/dcaas/api"
)

// KMS is a client of the dcaas KMS for custodians, pipelines and admins:
// it authenticates with a client certificate issued by the KMS CA (mutual
// TLS) and speaks the REST API of docs/api.md. It is safe for concurrent use.
//
// # Replicas, retries and failover
//
// A KMS client knows one or more base URLs (replicas of one KMS, or one
// load balancer). A call goes to the URL that answered last; when an
// attempt fails in a way worth retrying, the next attempt goes to the next
// URL, and once every URL has been tried the client waits before each
// further attempt: base·2^k capped at a maximum, with jitter (WithRetry;
// by default 4 attempts, 100 ms doubling to at most 2 s). The call's ctx
// bounds the whole, waits included.
//
// Which failures are retried depends on whether the request is
// idempotent. Reads (Health, Challenge, ListInstances, Audit, CA,
// Certificates), Rewrap, ExportKey and the crypto operations change no
// server state; they are retried after any transport error (connection
// reset, EOF, a timeout waiting for the answer) and after 502, 503 and 504
// answers. Everything else — creating tenants, apps, keys, versions,
// tokens, grants and import parameters, importing, rotating, revoking,
// disabling, renewing certificates, CA rotation steps — is retried only
// when it certainly did not reach a server (a dial error: connection
// refused, no route, DNS failure) or when the server answered 503
// unavailable. The KMS answers 503 when it stored nothing: every change
// commits in one transaction with its audit record, so one that cannot be
// audited is not made. (Only a database failing during the commit itself
// leaves the outcome unknown to the KMS too: a retried create may then
// leave an unacknowledged, unused key or token behind.)
// Certificate errors and every other API error (4xx, 500) are returned at
// once.
//
// An error answer is an *Error (see the Err… sentinels); a transport
// failure wraps what net/http reported on the last attempt.
type KMS struct {
	t *transport
}

// NewKMS returns a client of the KMS at baseURLs (e.g.
// "https://kms.internal:8443"; several for replicas). caPEM is the KMS CA
// certificate (nil: the system roots); certPEM and keyPEM are the caller's
// client certificate and private key (both nil: anonymous, enough for
// Health and Challenge). The key is used by the TLS stack only and is not
// kept otherwise.
func NewKMS(baseURLs []string, caPEM, certPEM, keyPEM []byte, opts ...Option) (*KMS, error) {
	urls, err := parseBaseURLs(baseURLs, false)
	if err != nil {
		return nil, err
	}
	cfg, err := tlsConfig(caPEM, certPEM, keyPEM, "")
	if err != nil {
		return nil, err
	}
	return newKMS(urls, cfg, opts), nil
}

// NewKMSWithTLS returns a client of the KMS at baseURLs that connects with
// cfg as it is: for callers whose private key never leaves an HSM, a TPM
// or an enclave (cfg.GetClientCertificate), or whose certificates and
// roots change while the client lives. cfg must verify the server (set
// RootCAs or leave it nil for the system roots); the client keeps it.
func NewKMSWithTLS(baseURLs []string, cfg *tls.Config, opts ...Option) (*KMS, error) {
	urls, err := parseBaseURLs(baseURLs, false)
	if err != nil {
		return nil, err
	}
	if cfg == nil || cfg.InsecureSkipVerify {
		return nil, errors.New("client: NewKMSWithTLS needs a TLS configuration that verifies the server")
	}
	return newKMS(urls, cfg, opts), nil
}

func newKMS(urls []string, cfg *tls.Config, opts []Option) *KMS {
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     cfg,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}
	return &KMS{t: newTransport(urls, tr, opts)}
}

// Close releases idle connections. The client stays usable.
func (k *KMS) Close() error {
	k.t.http.CloseIdleConnections()
	return nil
}

// Health asks GET /healthz of the KMS (the replica that answered last).
func (k *KMS) Health(ctx context.Context) (*api.Health, error) {
	var out api.Health
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, "/healthz", nil, &out))
}

// CreateTenant registers a tenant with its first master key and its HMAC
// key (admin).
func (k *KMS) CreateTenant(ctx context.Context, name string) (*api.Tenant, error) {
	var out api.Tenant
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: name}, &out))
}

// RotateMasterKey makes a new master key version of tenant current and
// returns its number (admin). EKBs under older versions still open.
func (k *KMS) RotateMasterKey(ctx context.Context, tenant string) (int, error) {
	var out api.RotateMasterKeyResponse
	err := k.t.do(ctx, once, http.MethodPost, "/v1/tenants/"+pathEscape(tenant)+"/master-key/rotate", nil, &out)
	return out.MasterKeyVersion, err
}

// CreateApp registers a custodian or pipeline of tenant and issues its
// certificate (admin). Without req.CSRPEM the KMS generates the key pair
// and the answer's KeyPEM holds the private key: a secret the caller must
// store with care (file mode 0600) and not log.
func (k *KMS) CreateApp(ctx context.Context, tenant string, req api.CreateAppRequest) (*api.AppCredentials, error) {
	var out api.AppCredentials
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/tenants/"+pathEscape(tenant)+"/apps", req, &out))
}

// CreateAdmin registers another admin (admin): one identity per person
// for key ceremonies. Send a CSR to keep the private key where it was made.
func (k *KMS) CreateAdmin(ctx context.Context, req api.CreateAdminRequest) (*api.AppCredentials, error) {
	var out api.AppCredentials
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/admins", req, &out))
}

// CreateDataKey has the KMS generate a data key and returns its EKB
// (custodian). Store the EKB (EKBStore); it is the key.
func (k *KMS) CreateDataKey(ctx context.Context, req api.CreateDataKeyRequest) (*api.DataKey, error) {
	var out api.DataKey
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/datakeys", req, &out))
}

// NewKeyVersion makes a new version of the key whose current-version EKB
// is ekb (custodian, the key's owner).
func (k *KMS) NewKeyVersion(ctx context.Context, keyID string, ekb []byte) (*api.DataKey, error) {
	var out api.DataKey
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/datakeys/"+pathEscape(keyID)+"/versions", api.NewVersionRequest{EKB: ekb}, &out))
}

// DisableKey disables a key everywhere (its owner, or an admin): the KMS
// releases it no more and sidecars evict it at their next poll.
func (k *KMS) DisableKey(ctx context.Context, keyID string) error {
	return k.t.do(ctx, once, http.MethodDelete, "/v1/datakeys/"+pathEscape(keyID), nil, nil)
}

// CreateEnrollmentToken mints a one-time sidecar enrollment token (secret
// zero). A custodian mints for itself (req.CustodianDN empty); a pipeline
// or admin names the custodian. The token is secret: hand it to the one
// sidecar it is for.
func (k *KMS) CreateEnrollmentToken(ctx context.Context, req api.CreateTokenRequest) (*api.EnrollmentToken, error) {
	var out api.EnrollmentToken
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/enrollment/tokens", req, &out))
}

// Challenge fetches a fresh enrollment nonce (for TPM attestation).
func (k *KMS) Challenge(ctx context.Context) (*api.Challenge, error) {
	var out api.Challenge
	return result(&out, k.t.do(ctx, idempotent, http.MethodPost, "/v1/enrollment/challenge", nil, &out))
}

// ListInstances lists enrolled sidecars: all of them for an admin, a
// custodian's own otherwise.
func (k *KMS) ListInstances(ctx context.Context) ([]api.Instance, error) {
	var out api.Instances
	err := k.t.do(ctx, idempotent, http.MethodGet, "/v1/instances", nil, &out)
	return out.Instances, err
}

// RevokeInstance revokes a sidecar instance and its certificates (admin,
// or the bound custodian). The sidecar stops serving at its next poll.
func (k *KMS) RevokeInstance(ctx context.Context, instanceID string) error {
	return k.t.do(ctx, once, http.MethodDelete, "/v1/instances/"+pathEscape(instanceID), nil, nil)
}

// RevokePlatform revokes every live instance enrolled with the TPM
// attestation key akFingerprint (admin) and returns their ids.
func (k *KMS) RevokePlatform(ctx context.Context, akFingerprint string) ([]string, error) {
	var out api.RevokedInstances
	if err := k.t.do(ctx, once, http.MethodPost, "/v1/instances/revoke-platform", &api.RevokePlatformRequest{AKFingerprint: akFingerprint}, &out); err != nil {
		return nil, err
	}
	return out.Revoked, nil
}

// RevokeManufacturer revokes every live instance whose TPM attestation key
// the manufacturer named (as the attestation policy named it) vouched for
// at enrollment (admin), and returns their ids: a manufacturer no longer
// trusted.
func (k *KMS) RevokeManufacturer(ctx context.Context, manufacturer string) ([]string, error) {
	var out api.RevokedInstances
	if err := k.t.do(ctx, once, http.MethodPost, "/v1/instances/revoke-platform", &api.RevokePlatformRequest{Manufacturer: manufacturer}, &out); err != nil {
		return nil, err
	}
	return out.Revoked, nil
}

// CreateGrant mints a single-use grant for one sidecar instance to load
// exactly the EKBs, retained key ids or seeds of req (custodian). The
// grant, and req.Seeds, are secret.
func (k *KMS) CreateGrant(ctx context.Context, req api.GrantRequest) (*api.Grant, error) {
	var out api.Grant
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/grants", &req, &out))
}

// Rewrap re-encrypts the DEKs of ekbs to the sidecar that wrappingCertPEM
// names (custodian; the sidecar must be bound to the caller and every key
// policy must allow it). Hand the result to Sidecar.Import before its
// ExpiresAt. All or nothing; the KMS takes at most 10,000 EKBs per call
// by default (LoadByRewrap batches).
func (k *KMS) Rewrap(ctx context.Context, wrappingCertPEM string, ekbs [][]byte) (*api.WrappedKeys, error) {
	var out api.WrappedKeys
	return result(&out, k.t.do(ctx, idempotent, http.MethodPost, "/v1/keys/rewrap", &api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: wrappingCertPEM}, &out))
}

// ImportParameters fetches the tenant's import public keys and a
// single-use import token (custodian), for bringing key material made
// elsewhere: wrap it to one of the keys and call ImportKey.
func (k *KMS) ImportParameters(ctx context.Context, tenant string) (*api.ImportParameters, error) {
	var out api.ImportParameters
	return result(&out, k.t.do(ctx, once, http.MethodGet, "/v1/tenants/"+pathEscape(tenant)+"/import-parameters", nil, &out))
}

// ImportKey turns wrapped outside material into a data key and returns its
// EKB, as CreateDataKey does (custodian). The import token is used up.
func (k *KMS) ImportKey(ctx context.Context, req api.ImportKeyRequest) (*api.DataKey, error) {
	var out api.DataKey
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/datakeys/import", req, &out))
}

// ExportKey returns the material of an exportable key wrapped to an
// outside public key (custodian, the key's owner).
func (k *KMS) ExportKey(ctx context.Context, req api.ExportRequest) ([]byte, error) {
	var out api.ExportResponse
	err := k.t.do(ctx, idempotent, http.MethodPost, "/v1/datakeys/export", req, &out)
	return out.WrappedMaterial, err
}

// ExportKeyBlock returns an exportable key as a TR-31 / ANSI X9.143 key
// block (ASCII) under the key-block protection key req.KBPKID (custodian,
// the key's owner); req.Wrapping is set to tr31. Import a partner's block
// with ImportKey and wrapping tr31.
func (k *KMS) ExportKeyBlock(ctx context.Context, req api.ExportRequest) (string, error) {
	req.Wrapping = api.WrappingTR31
	var out api.ExportResponse
	err := k.t.do(ctx, idempotent, http.MethodPost, "/v1/datakeys/export", req, &out)
	return out.KeyBlock, err
}

// Audit reads one page of the audit log after record number after
// (admin); pass the page's Next to read on. Reading is audited too, so a
// reader that follows Next always finds the records of its own earlier
// reads: stop at a page that holds nothing but "audit.read" records.
func (k *KMS) Audit(ctx context.Context, after int64) (*api.AuditPage, error) {
	var out api.AuditPage
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, "/v1/audit?after="+strconv.FormatInt(after, 10), nil, &out))
}

// AuditKey reads the public key that verifies the audit log's signatures
// (anyone may call it). Compare its KeyID with the one kept from setup:
// a verifier should pin the key, not fetch it anew each time.
func (k *KMS) AuditKey(ctx context.Context) (*api.AuditKey, error) {
	var out api.AuditKey
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, "/v1/audit/key", nil, &out))
}

// AuditCheckpoint reads the latest signed checkpoint of the audit log
// (admin), to keep outside the KMS for dcaas audit verify.
func (k *KMS) AuditCheckpoint(ctx context.Context) (*api.AuditCheckpoint, error) {
	var out api.AuditCheckpoint
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, "/v1/audit/checkpoint", nil, &out))
}

// NewAuditCheckpoint makes the KMS sign a checkpoint of the audit log's
// head now (admin) and returns it.
func (k *KMS) NewAuditCheckpoint(ctx context.Context) (*api.AuditCheckpoint, error) {
	var out api.AuditCheckpoint
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/audit/checkpoints", nil, &out))
}

// RotateAuditKey makes the KMS sign the audit log with a new key from now
// on (admin): the log records the new key, signed by the current one, so
// verifiers keep the first key they pinned. Not retried.
func (k *KMS) RotateAuditKey(ctx context.Context) (*api.AuditKey, error) {
	var out api.AuditKey
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/audit/key/rotate", nil, &out))
}

// RetireAuditKeys retires the audit keys rotated away from (admin), once
// every replica has had the time to switch: they sign nothing that
// verifies after it. Not retried.
func (k *KMS) RetireAuditKeys(ctx context.Context) (*api.AuditKey, error) {
	var out api.AuditKey
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/audit/key/retire", nil, &out))
}

// AuditStart reads the signed record the audit log starts after (admin):
// Seq 0 until a prune; records 1 to Seq were pruned (archived elsewhere).
func (k *KMS) AuditStart(ctx context.Context) (*api.AuditStart, error) {
	var out api.AuditStart
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, "/v1/audit/start", nil, &out))
}

// PruneAudit deletes the audit log's records up to req.Through, the last
// record of an archive that holds them (admin; with WithApproval while a
// tenant has a quorum), and returns the log's new start. Not retried: a
// second call is refused, the log starting after that record already.
func (k *KMS) PruneAudit(ctx context.Context, req api.AuditPruneRequest) (*api.AuditStart, error) {
	var out api.AuditStart
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/audit/prune", req, &out))
}

// Central operations: the KMS performs them itself with the key named by
// key.EKB or a retained key.KeyID (custodian). Every call pays a round trip
// and an EKB open; a sidecar is the fast path.

// Encrypt seals plaintext with aad under key's current version.
func (k *KMS) Encrypt(ctx context.Context, key api.KeyRef, plaintext, aad []byte) (*api.EncryptResponse, error) {
	return encrypt(ctx, k.t, key, plaintext, aad)
}

// Decrypt opens a dcaas ciphertext; key may be empty for a retained key
// (the ciphertext names it) and must carry the EKB otherwise. A wrong key,
// AAD or a modified ciphertext is ErrDecryptFailed.
func (k *KMS) Decrypt(ctx context.Context, key api.KeyRef, ciphertext, aad []byte) ([]byte, error) {
	return decrypt(ctx, k.t, key, ciphertext, aad)
}

// Sign signs message with a signing key.
func (k *KMS) Sign(ctx context.Context, key api.KeyRef, message []byte) (*api.SignResponse, error) {
	return sign(ctx, k.t, key, message)
}

// Verify checks a signature; keyVersion 0 means the current version.
func (k *KMS) Verify(ctx context.Context, key api.KeyRef, message, signature []byte, keyVersion int) (bool, error) {
	return verify(ctx, k.t, key, message, signature, keyVersion)
}

// MAC computes an HMAC tag of message.
func (k *KMS) MAC(ctx context.Context, key api.KeyRef, message []byte) (*api.MACResponse, error) {
	return mac(ctx, k.t, key, message)
}

// VerifyMAC checks an HMAC tag; keyVersion 0 means the current version.
func (k *KMS) VerifyMAC(ctx context.Context, key api.KeyRef, message, tag []byte, keyVersion int) (bool, error) {
	return verifyMAC(ctx, k.t, key, message, tag, keyVersion)
}

// Batch runs several operations in one request; results come back in
// order, each with its own error (see BatchError).
func (k *KMS) Batch(ctx context.Context, ops []api.BatchItem) ([]api.BatchResult, error) {
	return batch(ctx, k.t, ops)
}
