package client

import (
	"context"
	"net/http"

	"github.com/dcaas/dcaas/api"
)

// ChallengeEK fetches an enrollment nonce together with a credential for
// the TPM whose EK certificate and attestation key req names: the TPM
// recovers its secret with TPM2_ActivateCredential and the sidecar sends
// it with its evidence (api.Attestation.ActivatedCredential). The KMS
// checks the EK certificate's chain to a manufacturer root first.
func (k *KMS) ChallengeEK(ctx context.Context, req api.ChallengeRequest) (*api.Challenge, error) {
	var out api.Challenge
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/enrollment/challenge", req, &out))
}

// Reattest sends a fresh TPM quote of the calling instance (sidecar) over a
// challenge nonce; the KMS records when it verified it and the
// attestation profiles it satisfied, which key policies' release
// conditions check.
func (k *KMS) Reattest(ctx context.Context, req api.ReattestRequest) (*api.Attested, error) {
	var out api.Attested
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/instances/self/attest", req, &out))
}
