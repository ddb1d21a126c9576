package ops

import (
	"context"
	"errors"

	"github.com/dcaas/dcaas/api"
)

// Batch runs every op in order and returns one result per op; a failing op
// carries its error and does not stop the others.
func (e *Engine) Batch(ctx context.Context, req *api.BatchRequest) (*api.BatchResponse, error) {
	if len(req.Ops) == 0 {
		return nil, api.Errorf(api.CodeInvalidArgument, "ops must hold at least one operation.")
	}
	if len(req.Ops) > MaxBatch {
		return nil, api.Errorf(api.CodeTooLarge, "At most %d operations per batch.", MaxBatch)
	}
	out := &api.BatchResponse{Results: make([]api.BatchResult, len(req.Ops))}
	for i := range req.Ops {
		r, err := e.one(ctx, &req.Ops[i])
		if err != nil {
			r = api.BatchResult{Error: batchErr(err)}
		}
		out.Results[i] = r
	}
	return out, nil
}

// batchErr keeps API errors and hides anything else.
func batchErr(err error) *api.Error {
	var e *api.Error
	if errors.As(err, &e) {
		return e
	}
	return &api.Error{Code: api.CodeInternal, Message: "The operation hit an internal error."}
}

func boolp(b bool) *bool { return &b }

func (e *Engine) one(ctx context.Context, it *api.BatchItem) (api.BatchResult, error) {
	ref := api.KeyRef{KeyID: it.KeyID, SealedKey: it.SealedKey, EKB: it.EKB}
	switch it.Op {
	case api.OpEncrypt:
		r, err := e.Encrypt(ctx, &api.EncryptRequest{KeyRef: ref, Plaintext: it.Plaintext, AAD: it.AAD})
		if err != nil {
			return api.BatchResult{}, err
		}
		return api.BatchResult{Ciphertext: r.Ciphertext, KeyID: r.KeyID, KeyVersion: r.KeyVersion, Warning: r.Warning}, nil
	case api.OpDecrypt:
		r, err := e.Decrypt(ctx, &api.DecryptRequest{KeyRef: ref, Ciphertext: it.Ciphertext, AAD: it.AAD})
		if err != nil {
			return api.BatchResult{}, err
		}
		return api.BatchResult{Plaintext: r.Plaintext}, nil
	case api.OpSign:
		r, err := e.Sign(ctx, &api.SignRequest{KeyRef: ref, Message: it.Message})
		if err != nil {
			return api.BatchResult{}, err
		}
		return api.BatchResult{Signature: r.Signature, KeyVersion: r.KeyVersion, Warning: r.Warning}, nil
	case api.OpVerify:
		r, err := e.Verify(ctx, &api.VerifyRequest{KeyRef: ref, Message: it.Message, Signature: it.Signature, KeyVersion: it.KeyVersion})
		if err != nil {
			return api.BatchResult{}, err
		}
		return api.BatchResult{Valid: boolp(r.Valid)}, nil
	case api.OpMAC:
		r, err := e.MAC(ctx, &api.MACRequest{KeyRef: ref, Message: it.Message})
		if err != nil {
			return api.BatchResult{}, err
		}
		return api.BatchResult{MAC: r.MAC, KeyVersion: r.KeyVersion, Warning: r.Warning}, nil
	case api.OpMACVerify:
		r, err := e.MACVerify(ctx, &api.MACVerifyRequest{KeyRef: ref, Message: it.Message, MAC: it.MAC, KeyVersion: it.KeyVersion})
		if err != nil {
			return api.BatchResult{}, err
		}
		return api.BatchResult{Valid: boolp(r.Valid)}, nil
	case api.OpHash:
		r, err := e.Hash(ctx, &api.HashRequest{Algorithm: it.Algorithm, Message: it.Message})
		if err != nil {
			return api.BatchResult{}, err
		}
		return api.BatchResult{Digest: r.Digest}, nil
	case api.OpRandom:
		r, err := e.Random(ctx, &api.RandomRequest{Bytes: it.Bytes})
		if err != nil {
			return api.BatchResult{}, err
		}
		return api.BatchResult{Random: r.Random}, nil
	case api.OpTranslate:
		r, err := e.Translate(ctx, &api.TranslateRequest{Ciphertext: it.Ciphertext, AAD: it.AAD, ToKeyID: it.ToKeyID, ToAAD: it.ToAAD})
		if err != nil {
			return api.BatchResult{}, err
		}
		return api.BatchResult{Ciphertext: r.Ciphertext, KeyID: r.KeyID, KeyVersion: r.KeyVersion, Warning: r.Warning}, nil
	case "":
		return api.BatchResult{}, api.Errorf(api.CodeInvalidArgument, "Each batch item needs an op.")
	}
	return api.BatchResult{}, api.Errorf(api.CodeInvalidArgument, "Unknown op %q.", it.Op)
}

// Route is one operation endpoint, independent of the server that mounts
// it: Serve decodes the request with decode and runs the operation.
type Route struct {
	Pattern string // e.g. "POST /v1/crypto/encrypt"
	Name    string // for audit and metrics, e.g. "crypto.encrypt"
	Batch   bool   // takes the larger batch body limit
	Serve   func(ctx context.Context, decode func(any) error) (any, error)
}

func route[Req, Resp any](pattern, name string, batch bool, f func(context.Context, *Req) (Resp, error)) Route {
	return Route{Pattern: pattern, Name: name, Batch: batch, Serve: func(ctx context.Context, decode func(any) error) (any, error) {
		var req Req
		if err := decode(&req); err != nil {
			return nil, err
		}
		return f(ctx, &req)
	}}
}

// Routes lists the operation endpoints of docs/api.md, for a server to mount
// behind its own authentication.
func (e *Engine) Routes() []Route {
	return []Route{
		route("POST /v1/crypto/encrypt", "crypto.encrypt", false, e.Encrypt),
		route("POST /v1/crypto/decrypt", "crypto.decrypt", false, e.Decrypt),
		route("POST /v1/crypto/sign", "crypto.sign", false, e.Sign),
		route("POST /v1/crypto/verify", "crypto.verify", false, e.Verify),
		route("POST /v1/crypto/mac", "crypto.mac", false, e.MAC),
		route("POST /v1/crypto/mac/verify", "crypto.mac_verify", false, e.MACVerify),
		route("POST /v1/crypto/hash", "crypto.hash", false, e.Hash),
		route("POST /v1/crypto/random", "crypto.random", false, e.Random),
		route("POST /v1/crypto/translate", "crypto.translate", false, e.Translate),
		route("POST /v1/crypto/batch", "crypto.batch", true, e.Batch),
	}
}
