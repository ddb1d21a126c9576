package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/dcaas/dcaas/api"
)

// Quorum approvals (issue 16): when a tenant requires M of N named admins
// to approve its sensitive actions, the requester asks for an approval
// (RequestApproval), approvers approve it (Approve), and the requester
// repeats the call with the approval's id in its context (WithApproval):
//
//	a, _ := kms.RequestApproval(ctx, api.ApprovalRequest{Action: api.ApprovalDisable, KeyID: id})
//	// … two approvers call Approve(ctx, a.ID) …
//	err := kms.DisableKey(client.WithApproval(ctx, a.ID), id)

type approvalKey struct{}

const approvalHeader = api.ApprovalHeader

// WithApproval returns a context whose KMS calls carry the approved
// request id (the Dcaas-Approval header). Use it for the one call the
// approval is for: it runs once.
func WithApproval(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, approvalKey{}, id)
}

func approvalOf(ctx context.Context) string {
	id, _ := ctx.Value(approvalKey{}).(string)
	return id
}

// RequestApproval asks the tenant's quorum to approve one action with its
// exact parameters (ApprovalRequest.Request: the route's body). Use
// NewApprovalRequest to fill it from a request value.
func (k *KMS) RequestApproval(ctx context.Context, req api.ApprovalRequest) (*api.Approval, error) {
	var out api.Approval
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/approvals", req, &out))
}

// NewApprovalRequest builds an ApprovalRequest for action with body (the
// route's request value, or nil) encoded as the route takes it.
func NewApprovalRequest(action, tenant, keyID string, body any) (api.ApprovalRequest, error) {
	r := api.ApprovalRequest{Action: action, Tenant: tenant, KeyID: keyID}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return r, err
		}
		r.Request = b
	}
	return r, nil
}

// Approval reads one approval request.
func (k *KMS) Approval(ctx context.Context, id string) (*api.Approval, error) {
	var out api.Approval
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, "/v1/approvals/"+pathEscape(id), nil, &out))
}

// Approvals lists approval requests, newest first: an admin's of every
// tenant (or tenant's), a custodian's own. limit 0 means the KMS's default.
func (k *KMS) Approvals(ctx context.Context, tenant string, limit int) ([]api.Approval, error) {
	q := url.Values{}
	if tenant != "" {
		q.Set("tenant", tenant)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/approvals"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out api.ApprovalList
	err := k.t.do(ctx, idempotent, http.MethodGet, path, nil, &out)
	return out.Approvals, err
}

// Approve approves a request as one of its approvers (admin).
func (k *KMS) Approve(ctx context.Context, id string) (*api.Approval, error) {
	var out api.Approval
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/approvals/"+pathEscape(id)+"/approve", nil, &out))
}

// Deny ends a pending request as one of its approvers (admin).
func (k *KMS) Deny(ctx context.Context, id string) (*api.Approval, error) {
	var out api.Approval
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/approvals/"+pathEscape(id)+"/deny", nil, &out))
}

// CancelApproval withdraws the caller's own pending request.
func (k *KMS) CancelApproval(ctx context.Context, id string) (*api.Approval, error) {
	var out api.Approval
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/approvals/"+pathEscape(id)+"/cancel", nil, &out))
}

// ApprovalPolicy reads a tenant's approval policy (admin).
func (k *KMS) ApprovalPolicy(ctx context.Context, tenant string) (*api.ApprovalPolicy, error) {
	var out api.ApprovalPolicy
	return result(&out, k.t.do(ctx, idempotent, http.MethodGet, "/v1/tenants/"+pathEscape(tenant)+"/approval-policy", nil, &out))
}

// SetApprovalPolicy sets a tenant's quorum (admin); once a quorum is set,
// changing it needs an approval (WithApproval).
func (k *KMS) SetApprovalPolicy(ctx context.Context, tenant string, quorum int, approvers []string) (*api.ApprovalPolicy, error) {
	var out api.ApprovalPolicy
	req := api.ApprovalPolicy{Quorum: quorum, Approvers: approvers}
	if req.Approvers == nil {
		req.Approvers = []string{}
	}
	return result(&out, k.t.do(ctx, once, http.MethodPut, "/v1/tenants/"+pathEscape(tenant)+"/approval-policy", req, &out))
}

// SetKeyPolicy returns an EKB of the same key version under policy
// (custodian, the owner); a loosening needs the tenant's quorum when it
// has one (WithApproval).
func (k *KMS) SetKeyPolicy(ctx context.Context, keyID string, ekb []byte, policy *api.Policy) (*api.DataKey, error) {
	var out api.DataKey
	return result(&out, k.t.do(ctx, once, http.MethodPut, "/v1/datakeys/"+pathEscape(keyID)+"/policy", api.SetKeyPolicyRequest{EKB: ekb, Policy: policy}, &out))
}

// SetMinDecryptionVersion retires every version of a key below version
// (its owner, or an admin); under a quorum it needs an approval
// (WithApproval).
func (k *KMS) SetMinDecryptionVersion(ctx context.Context, keyID string, version int) (*api.DataKeyInfo, error) {
	var out api.DataKeyInfo
	return result(&out, k.t.do(ctx, once, http.MethodPost, "/v1/datakeys/"+pathEscape(keyID)+"/min-decryption-version", api.MinDecryptionVersionRequest{Version: version}, &out))
}

// RunApproval runs the action of an approved request a, exactly as it
// was approved (its route, path and canonical body), with its id: the
// requester's one execution. It returns the route's answer (an export's
// wrapped material, a new admin's credentials, …) as JSON.
func (k *KMS) RunApproval(ctx context.Context, a *api.Approval) (json.RawMessage, error) {
	var method, path string
	switch a.Action {
	case api.ApprovalExport:
		method, path = http.MethodPost, "/v1/datakeys/export"
	case api.ApprovalDisable:
		method, path = http.MethodDelete, "/v1/datakeys/"+pathEscape(a.KeyID)
	case api.ApprovalMinDecryption:
		method, path = http.MethodPost, "/v1/datakeys/"+pathEscape(a.KeyID)+"/min-decryption-version"
	case api.ApprovalSetKeyPolicy:
		method, path = http.MethodPut, "/v1/datakeys/"+pathEscape(a.KeyID)+"/policy"
	case api.ApprovalRotateMasterKey:
		method, path = http.MethodPost, "/v1/tenants/"+pathEscape(a.Tenant)+"/master-key/rotate"
	case api.ApprovalSetApprovalPolicy:
		method, path = http.MethodPut, "/v1/tenants/"+pathEscape(a.Tenant)+"/approval-policy"
	case api.ApprovalCreateAdmin:
		method, path = http.MethodPost, "/v1/admins"
	case api.ApprovalPruneAudit:
		method, path = http.MethodPost, "/v1/audit/prune"
	default:
		return nil, &Error{Code: api.CodeInvalidArgument, Message: "client: unknown approval action " + strconv.Quote(a.Action)}
	}
	var in any
	if len(a.Request) > 0 && string(a.Request) != "null" {
		in = a.Request
	}
	var out json.RawMessage
	err := k.t.do(WithApproval(ctx, a.ID), once, method, path, in, &out)
	return out, err
}
