package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/dcaas/dcaas/api"
)

// Calls a sidecar instance makes to the KMS with its own identity
// certificate (a KMS client built with NewKMSWithTLS over the enclave-held
// key). The sidecar package makes them; custodians do not need them.

// Enroll registers a new sidecar instance (anonymous, with a one-time
// token or TPM attestation evidence in req) and returns its certificates.
// The token is used up when the KMS answers; the request is retried only
// when it certainly did not reach a server.
func (k *KMS) Enroll(ctx context.Context, req api.EnrollRequest) (*api.Enrollment, error) {
	var out api.Enrollment
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/enrollment", req, &out))
}

// RenewInstance asks for new identity and wrapping certificates for the
// calling instance (sidecar). A revoked instance gets ErrRevoked.
func (k *KMS) RenewInstance(ctx context.Context, req api.RenewInstanceRequest) (*api.Enrollment, error) {
	var out api.Enrollment
	return result(&out, k.t.do(ctx, idempotent, http.MethodPost, "/v1/instances/self/renew", req, &out))
}

// RetireInstance revokes the calling instance (sidecar) at the KMS: for a
// sidecar that stops for good. Its certificates stop working at once.
func (k *KMS) RetireInstance(ctx context.Context) error {
	return k.t.do(ctx, once, http.MethodDelete, "/v1/instances/self", nil, nil)
}

// LoadKeys presents a grant, EKBs and retained key ids for the calling
// instance (sidecar, the grant flow). The grant is used up by this
// request; the KMS answers the very same request (same recipient key)
// again until the grant expires, so a request cut by a dying replica is
// retried, on the next URL, like a read.
func (k *KMS) LoadKeys(ctx context.Context, req api.LoadRequest) (*api.WrappedKeys, error) {
	var out api.WrappedKeys
	return result(&out, k.t.do(ctx, idempotent, http.MethodPost, "/v1/keys/load", &req, &out))
}

// DeriveKeys presents a grant and seeds for the calling instance (sidecar,
// the seed flow). Retried like LoadKeys: the request that used the grant
// is answered again.
func (k *KMS) DeriveKeys(ctx context.Context, req api.DeriveRequest) (*api.WrappedKeys, error) {
	var out api.WrappedKeys
	return result(&out, k.t.do(ctx, idempotent, http.MethodPost, "/v1/keys/derive", req, &out))
}

// RefreshKeys fetches the versions newer than req.Keys of keys already
// released to the calling instance (sidecar): rotation delivery.
func (k *KMS) RefreshKeys(ctx context.Context, req api.RefreshRequest) (*api.WrappedKeys, error) {
	var out api.WrappedKeys
	return result(&out, k.t.do(ctx, idempotent, http.MethodPost, "/v1/keys/refresh", req, &out))
}

// Revocations reads the revocation feed after cursor ("" for a first
// poll) for the calling instance (sidecar): the events of the keys
// released to it and its own revocation.
func (k *KMS) Revocations(ctx context.Context, cursor string) (*api.RevocationFeed, error) {
	return k.PollRevocations(ctx, cursor, -1)
}

// PollRevocations is Revocations that also tells the KMS how many keys
// the calling sidecar holds (keysLoaded; negative: do not say), which
// the fleet view shows with the poll's time.
func (k *KMS) PollRevocations(ctx context.Context, cursor string, keysLoaded int) (*api.RevocationFeed, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("since", cursor)
	}
	if keysLoaded >= 0 {
		q.Set("keys_loaded", strconv.Itoa(keysLoaded))
	}
	path := "/v1/revocations"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out api.RevocationFeed
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, path, nil, &out))
}

// ReportUsage tells the KMS what the calling instance (sidecar) encrypted
// since its last report. The KMS counts only the key versions it released
// to the instance, each at most once per report. A report whose answer
// was lost may be counted twice, which errs on the safe side.
func (k *KMS) ReportUsage(ctx context.Context, report api.UsageReport) (*api.UsageAccepted, error) {
	var out api.UsageAccepted
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/usage", report, &out))
}
