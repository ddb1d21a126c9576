package api

import (
	"encoding/json"
	"time"
)

// Quorum approvals (issue 16 item 2): a tenant can require M of N named
// admins to approve its sensitive actions. See docs/api.md, "Approvals".

// ApprovalHeader carries the id of an approved request on the call that
// executes it (the same route, body and path as the request named).
const ApprovalHeader = "Dcaas-Approval"

// Actions that need approval when the tenant has a quorum (Approval.Action).
const (
	ApprovalExport            = "datakey.export"                 // POST /v1/datakeys/export
	ApprovalDisable           = "datakey.disable"                // DELETE /v1/datakeys/{key_id}
	ApprovalMinDecryption     = "datakey.min_decryption_version" // POST /v1/datakeys/{key_id}/min-decryption-version
	ApprovalSetKeyPolicy      = "datakey.set_policy"             // PUT /v1/datakeys/{key_id}/policy, when it loosens
	ApprovalRotateMasterKey   = "tenant.rotate_master_key"       // POST /v1/tenants/{tenant}/master-key/rotate
	ApprovalSetApprovalPolicy = "tenant.set_approval_policy"     // PUT /v1/tenants/{tenant}/approval-policy, once a quorum is set
	ApprovalCreateAdmin       = "admin.create"                   // POST /v1/admins, while any tenant has a quorum
	ApprovalPruneAudit        = "audit.prune"                    // POST /v1/audit/prune, while any tenant has a quorum
)

// ApprovalPolicy is a tenant's approval setting (PUT and GET
// /v1/tenants/{tenant}/approval-policy): Quorum distinct admins among
// Approvers (admin DNs, "CN=<name>,O=dcaas") must approve each sensitive
// action. Quorum 0 (and no approvers) means none is needed.
type ApprovalPolicy struct {
	Tenant    string     `json:"tenant,omitempty"`
	Quorum    int        `json:"quorum"`
	Approvers []string   `json:"approvers"`
	Version   int        `json:"version,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

// ApprovalRequest is the body of POST /v1/approvals: the action and its
// exact parameters, as the route that runs it takes them. Tenant is the
// path's {tenant} (tenant actions), KeyID the path's {key_id} (disable,
// min-decryption-version, policy), Request the body (export,
// min-decryption-version, policy, approval policy, admin creation).
type ApprovalRequest struct {
	Action  string          `json:"action"`
	Tenant  string          `json:"tenant,omitempty"`
	KeyID   string          `json:"key_id,omitempty"`
	Request json.RawMessage `json:"request,omitempty"`
}

// Approval states.
const (
	ApprovalPending   = "pending"   // waiting for approvals
	ApprovalApproved  = "approved"  // the quorum is met: the requester may execute it once
	ApprovalExecuted  = "executed"  // the requester ran it (once)
	ApprovalDenied    = "denied"    // an approver denied it
	ApprovalCancelled = "cancelled" // the requester withdrew it
	ApprovalExpired   = "expired"   // not executed before expires_at
)

// Approval is one approval request (GET /v1/approvals/{id}).
type Approval struct {
	ID        string          `json:"id"`
	Action    string          `json:"action"`
	Tenant    string          `json:"tenant,omitempty"`
	KeyID     string          `json:"key_id,omitempty"`
	Request   json.RawMessage `json:"request,omitempty"` // canonical parameters
	Hash      string          `json:"hash"`              // SHA-256 of the canonical action, hex
	Requester string          `json:"requester"`
	State     string          `json:"state"`
	// Quorum is how many approvals the action needs now; Approvals lists
	// those given (the requester's own counts when it is an approver).
	Quorum    int            `json:"quorum"`
	Approvals []ApprovalVote `json:"approvals"`
	CreatedAt time.Time      `json:"created_at"`
	ExpiresAt time.Time      `json:"expires_at"`
	ClosedAt  *time.Time     `json:"closed_at,omitempty"`
	ClosedBy  string         `json:"closed_by,omitempty"`
}

// ApprovalVote is one approver's approval.
type ApprovalVote struct {
	Approver string    `json:"approver"`
	At       time.Time `json:"at"`
}

// ApprovalList is the answer of GET /v1/approvals.
type ApprovalList struct {
	Approvals []Approval `json:"approvals"`
}

// SetKeyPolicyRequest is the body of PUT /v1/datakeys/{key_id}/policy: an
// EKB of the key and the policy its replacement EKB carries (null: the
// owner-only default). The answer is a DataKey with the new EKB.
type SetKeyPolicyRequest struct {
	EKB    []byte  `json:"ekb"`
	Policy *Policy `json:"policy"`
}
