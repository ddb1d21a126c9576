package client

import (
	"context"
	"encoding/hex"
	"net/http"

	"github.com/dcaas/dcaas/api"
)

// StartComponents starts entering a key in components (split knowledge):
// a custodian for a key it will own, an admin for a named tenant and owner.
// Admins then each enter one component with AddComponent.
func (k *KMS) StartComponents(ctx context.Context, req api.StartComponentsRequest) (*api.ComponentCeremony, error) {
	var out api.ComponentCeremony
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/key-components", req, &out))
}

// AddComponent enters one component of ceremony id (admin; one component
// per admin) with its key check value, which the KMS checks before it
// accepts it. component is secret and stays the caller's (wipe it after);
// the request's hex copy of it is a Go string, which cannot be wiped and is
// left to the garbage collector. The last component makes the key: the
// answer's State is api.CeremonyComplete.
func (k *KMS) AddComponent(ctx context.Context, id string, component []byte, kcv string) (*api.ComponentCeremony, error) {
	var out api.ComponentCeremony
	req := api.AddComponentRequest{Component: hex.EncodeToString(component), KCV: kcv}
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/key-components/"+pathEscape(id), req, &out))
}

// Components reads a ceremony's progress (an admin, or the key's owner);
// once complete, its owner finds the key, with its EKB, in DataKey.
func (k *KMS) Components(ctx context.Context, id string) (*api.ComponentCeremony, error) {
	var out api.ComponentCeremony
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, "/v1/key-components/"+pathEscape(id), nil, &out))
}

// Export is ExportKey with the whole answer: the wrapped material and the
// exported version's key check value.
func (k *KMS) Export(ctx context.Context, req api.ExportRequest) (*api.ExportResponse, error) {
	var out api.ExportResponse
	return result(&out, k.t.do(ctx, idempotent, http.MethodPost, "/v1/datakeys/export", req, &out))
}
