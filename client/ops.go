package client

import (
	"context"
	"net/http"

	"github.com/dcaas/dcaas/api"
)

// The operations API, the same on the KMS (central path) and on a sidecar.
// Every operation is idempotent for retrying: it changes no server state.

func encrypt(ctx context.Context, t *transport, key api.KeyRef, plaintext, aad []byte) (*api.EncryptResponse, error) {
	var out api.EncryptResponse
	err := t.do(ctx, idempotent, http.MethodPost, "/v1/crypto/encrypt", &api.EncryptRequest{KeyRef: key, Plaintext: plaintext, AAD: aad}, &out)
	return result(&out, err)
}

func decrypt(ctx context.Context, t *transport, key api.KeyRef, ciphertext, aad []byte) ([]byte, error) {
	var out api.DecryptResponse
	err := t.do(ctx, idempotent, http.MethodPost, "/v1/crypto/decrypt", api.DecryptRequest{KeyRef: key, Ciphertext: ciphertext, AAD: aad}, &out)
	return out.Plaintext, err
}

func sign(ctx context.Context, t *transport, key api.KeyRef, message []byte) (*api.SignResponse, error) {
	var out api.SignResponse
	err := t.do(ctx, idempotent, http.MethodPost, "/v1/crypto/sign", api.SignRequest{KeyRef: key, Message: message}, &out)
	return result(&out, err)
}

func verify(ctx context.Context, t *transport, key api.KeyRef, message, signature []byte, version int) (bool, error) {
	var out api.ValidResponse
	err := t.do(ctx, idempotent, http.MethodPost, "/v1/crypto/verify", api.VerifyRequest{KeyRef: key, Message: message, Signature: signature, KeyVersion: version}, &out)
	return out.Valid, err
}

func mac(ctx context.Context, t *transport, key api.KeyRef, message []byte) (*api.MACResponse, error) {
	var out api.MACResponse
	err := t.do(ctx, idempotent, http.MethodPost, "/v1/crypto/mac", api.MACRequest{KeyRef: key, Message: message}, &out)
	return result(&out, err)
}

func verifyMAC(ctx context.Context, t *transport, key api.KeyRef, message, tag []byte, version int) (bool, error) {
	var out api.ValidResponse
	err := t.do(ctx, idempotent, http.MethodPost, "/v1/crypto/mac/verify", api.MACVerifyRequest{KeyRef: key, Message: message, MAC: tag, KeyVersion: version}, &out)
	return out.Valid, err
}

func batch(ctx context.Context, t *transport, ops []api.BatchItem) ([]api.BatchResult, error) {
	var out api.BatchResponse
	err := t.do(ctx, idempotent, http.MethodPost, "/v1/crypto/batch", &api.BatchRequest{Ops: ops}, &out)
	return out.Results, err
}

// result returns v, or nil when err is set, so that no caller reads a
// half-filled answer.
func result[T any](v *T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}
