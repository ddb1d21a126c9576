package client

import (
	"context"
	"net/http"

	"github.com/dcaas/dcaas/api"
)

// SealStatus reads whether the KMS is sealed and how far unsealing has got
// (GET /v1/sys/seal-status). Anyone may call it. With several --kms
// replicas it reads the first that answers: each replica has its own.
func (k *KMS) SealStatus(ctx context.Context) (*api.SealStatus, error) {
	var out api.SealStatus
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, "/v1/sys/seal-status", nil, &out))
}

// Unseal posts one unseal key share (the text of a share file) to a sealed
// KMS (admin). The answer says the progress, or sealed false once the
// threshold of shares opened the root key. Give the client one replica:
// each unseals on its own.
func (k *KMS) Unseal(ctx context.Context, share string) (*api.SealStatus, error) {
	var out api.SealStatus
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/sys/unseal", api.UnsealRequest{Share: share}, &out))
}
