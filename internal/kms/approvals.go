package kms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/httpapi"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/store"
)

// Quorum approvals (issue 16 item 2). A tenant's approval policy names
// admins (approvers) and a quorum M. While M > 0, the tenant's sensitive
// actions — export, disable, retiring versions, loosening a key policy,
// rotating the master key, and changing the approval policy itself — run
// only with an approval:
//
//  1. The caller who would run the action (the requester) asks for it with
//     POST /v1/approvals: the action and its exact parameters, which the
//     KMS stores in canonical form with their SHA-256.
//  2. Approvers approve it (POST /v1/approvals/{id}/approve). The requester
//     never approves its own request; when it is an approver itself, its
//     request counts as its approval, so M distinct approvers, the
//     requester among them, always agree.
//  3. Once M approvers of the policy in force agree, and before the
//     request expires (Config.ApprovalTTL, default 24 h), the requester
//     repeats the very call with the header Dcaas-Approval: <id>. The KMS
//     checks the call's canonical parameters against the approved ones and,
//     in the transaction that stores the action's change and its audit
//     record, closes the request with a conditional UPDATE: on any number
//     of replicas, one call runs the action and every other is refused.
//     An export's result therefore goes to the requester only.
//
// Admins are registered while tenants have a quorum: a lone admin
// registering admins under approvers' names before they exist, or extra
// identities, would defeat the quorum, so while any tenant has a quorum,
// POST /v1/admins needs the approval of every such tenant's quorum.
//
// Every step (request, approval, denial, cancellation, execution or its
// refusal) is a call with its own audit record; for the approval.* calls
// the record's key_id is the approval id.

const (
	approvalPrefix = "apr_"
	// maxApprovers bounds a policy's approver list.
	maxApprovers = 64
)

func (k *KMS) approvalRoutes() {
	admin := []api.Role{api.RoleAdmin}
	both := []api.Role{api.RoleAdmin, api.RoleCustodian}
	k.handle("PUT /v1/tenants/{tenant}/approval-policy", api.ApprovalSetApprovalPolicy, admin, 0, k.setApprovalPolicy)
	k.handle("GET /v1/tenants/{tenant}/approval-policy", "tenant.read_approval_policy", admin, 0, k.getApprovalPolicy)
	k.handle("POST /v1/approvals", "approval.request", both, 0, k.requestApproval)
	k.handle("GET /v1/approvals", "approval.list", both, 0, k.listApprovals)
	k.handle("GET /v1/approvals/{id}", "approval.read", both, 0, k.readApproval)
	k.handle("POST /v1/approvals/{id}/approve", "approval.approve", admin, 0, k.approve)
	k.handle("POST /v1/approvals/{id}/deny", "approval.deny", admin, 0, k.deny)
	k.handle("POST /v1/approvals/{id}/cancel", "approval.cancel", both, 0, k.cancelApproval)
	k.handle("PUT /v1/datakeys/{key_id}/policy", api.ApprovalSetKeyPolicy, []api.Role{api.RoleCustodian}, 0, k.setKeyPolicy)
}

// approvalReader is what the approval checks read: the store outside a
// transaction, or the transaction that runs the action.
type approvalReader interface {
	GetApprovalPolicy(ctx context.Context, tenant string) (store.ApprovalPolicy, error)
	ListApprovalPolicies(ctx context.Context) ([]store.ApprovalPolicy, error)
}

// policiesFor returns the policies with a quorum that govern action on
// tenant: the tenant's, or for the KMS-wide actions (admin creation, an
// audit prune) every tenant's. None means no approval is needed.
func policiesFor(ctx context.Context, st approvalReader, action, tenant string) ([]store.ApprovalPolicy, error) {
	if kmsWide(action) {
		all, err := st.ListApprovalPolicies(ctx)
		if err != nil {
			return nil, storeErr(err, "approval policy")
		}
		return slices.DeleteFunc(all, func(p store.ApprovalPolicy) bool { return p.Quorum == 0 }), nil
	}
	p, err := st.GetApprovalPolicy(ctx, tenant)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, storeErr(err, "approval policy")
	case p.Quorum == 0:
		return nil, nil
	}
	return []store.ApprovalPolicy{p}, nil
}

// kmsWide reports whether action concerns every tenant, so that each
// tenant's quorum governs it.
func kmsWide(action string) bool {
	return action == api.ApprovalCreateAdmin || action == api.ApprovalPruneAudit
}

// quorumMet reports whether the approvers who voted satisfy every policy
// in ps, and otherwise the first policy short of it and its count.
func quorumMet(ps []store.ApprovalPolicy, votes []store.ApprovalVote) (ok bool, short store.ApprovalPolicy, have int) {
	for _, p := range ps {
		n := 0
		for _, v := range votes {
			if slices.Contains(p.Approvers, v.Approver) {
				n++
			}
		}
		if n < p.Quorum {
			return false, p, n
		}
	}
	return true, store.ApprovalPolicy{}, 0
}

// isApprover reports whether dn is an approver of some policy of ps.
func isApprover(ps []store.ApprovalPolicy, dn string) bool {
	for _, p := range ps {
		if slices.Contains(p.Approvers, dn) {
			return true
		}
	}
	return false
}

// actionHash is the SHA-256 of an action with its exact parameters.
func actionHash(action, tenant, keyID string, params []byte) []byte {
	if params == nil {
		params = []byte("null")
	}
	b, _ := json.Marshal([]any{"dcaas/v1 approval", action, tenant, keyID, json.RawMessage(params)})
	h := sha256.Sum256(b)
	return h[:]
}

// canonical encodes an action's parameters: its request as the route
// decoded it, re-encoded (nil for none).
func canonical(params any) ([]byte, error) {
	if params == nil {
		return nil, nil
	}
	return json.Marshal(params)
}

// approvalRequired is the refusal of an action that needs approval.
func approvalRequired(action, tenant string, ps []store.ApprovalPolicy) error {
	who := fmt.Sprintf("tenant %s requires %d approvals", tenant, ps[0].Quorum)
	if kmsWide(action) {
		who = "tenants with a quorum exist, so each of their quorums must approve"
	}
	return api.Errorf(api.CodeApprovalRequired,
		"Action %s needs a quorum's approval: %s. Request it with POST /v1/approvals (dcaas approval request) naming this action and its exact parameters, have the approvers approve it, then repeat this call with the header %s: <approval id>.",
		action, who, api.ApprovalHeader)
}

// approvalUse is an approval presented for the call that runs its action;
// the call's transaction closes it (consume).
type approvalUse struct {
	k        *KMS
	id       string
	action   string
	tenant   string
	executor string
}

// approvalFor decides whether call c may run action (on tenant and keyID,
// with params) now. It returns nil when no quorum governs the action and
// no approval is presented; an approvalUse, which the caller must consume
// in the transaction of its change, when an approval is presented and is
// the requester's, for exactly this action and parameters, approved and
// unexpired; and approval_required (or another refusal) otherwise.
func (k *KMS) approvalFor(ctx context.Context, c *call, action, tenant, keyID string, params any) (*approvalUse, error) {
	id := strings.TrimSpace(c.r.Header.Get(api.ApprovalHeader))
	ps, err := policiesFor(ctx, k.st, action, tenant)
	if err != nil {
		return nil, err
	}
	if id == "" {
		if len(ps) == 0 {
			return nil, nil
		}
		return nil, approvalRequired(action, tenant, ps)
	}
	a, err := k.st.GetApproval(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.Errorf(api.CodeNotFound, "There is no approval %q.", id)
	}
	if err != nil {
		return nil, storeErr(err, "approval")
	}
	raw, err := canonical(params)
	if err != nil {
		return nil, err
	}
	switch {
	case a.Requester != c.caller.DN:
		return nil, api.Errorf(api.CodeForbidden, "Approval %s was requested by %s; only its requester may run it.", id, a.Requester)
	case a.Action != action || a.Tenant != tenant || a.KeyID != keyID || string(a.ParamsHash) != string(actionHash(action, tenant, keyID, raw)):
		return nil, api.Errorf(api.CodeInvalidArgument, "Approval %s is for %s with other parameters; repeat exactly the approved call (GET /v1/approvals/%s shows it) or request a new approval.", id, a.Action, id)
	}
	if err := k.openForExecution(a, ps); err != nil {
		return nil, err
	}
	return &approvalUse{k: k, id: id, action: action, tenant: tenant, executor: c.caller.DN}, nil
}

// openForExecution refuses an approval that cannot run now.
func (k *KMS) openForExecution(a store.Approval, ps []store.ApprovalPolicy) error {
	switch {
	case a.State == store.ApprovalExecuted:
		return api.Errorf(api.CodeAlreadyUsed, "Approval %s was executed already (%s); an approval runs its action once.", a.ID, a.ClosedAt.Format(time.RFC3339))
	case a.State != store.ApprovalPending:
		return api.Errorf(api.CodeConflict, "Approval %s is %s; request a new one.", a.ID, a.State)
	case !k.now().Before(a.ExpiresAt):
		return api.Errorf(api.CodeExpired, "Approval %s expired at %s; request a new one.", a.ID, a.ExpiresAt.Format(time.RFC3339))
	}
	if ok, short, have := quorumMet(ps, a.Votes); !ok {
		return api.Errorf(api.CodeApprovalRequired, "Approval %s has %d of the %d approvals tenant %s requires; the approvers approve it with POST /v1/approvals/%s/approve (dcaas approval approve).",
			a.ID, have, short.Quorum, short.Tenant, a.ID)
	}
	return nil
}

// consume closes the approval as executed in tx, the transaction of the
// action's change and audit record, and checks the quorum again there: of
// any number of calls presenting one approval, on any replicas, one
// commits its action.
func (u *approvalUse) consume(ctx context.Context, tx store.Tx) error {
	err := tx.CloseApproval(ctx, u.id, store.ApprovalExecuted, u.executor, u.k.now())
	switch {
	case errors.Is(err, store.ErrUsed):
		return api.Errorf(api.CodeAlreadyUsed, "Approval %s is no longer pending: it was executed, denied or cancelled; an approval runs its action once.", u.id)
	case errors.Is(err, store.ErrExpired):
		return api.Errorf(api.CodeExpired, "Approval %s expired; request a new one.", u.id)
	case err != nil:
		return storeErr(err, "approval")
	}
	a, err := tx.GetApproval(ctx, u.id)
	if err != nil {
		return storeErr(err, "approval")
	}
	ps, err := policiesFor(ctx, tx, u.action, u.tenant)
	if err != nil {
		return err
	}
	if ok, short, have := quorumMet(ps, a.Votes); !ok {
		return api.Errorf(api.CodeApprovalRequired, "Approval %s has %d of the %d approvals tenant %s requires.", u.id, have, short.Quorum, short.Tenant)
	}
	return nil
}

// consumeIn is what a handler's commit calls first: consume when an
// approval was presented, nothing otherwise.
func (u *approvalUse) consumeIn(ctx context.Context, tx store.Tx) error {
	if u == nil {
		return nil
	}
	return u.consume(ctx, tx)
}

// decodeParams decodes an approval request's parameters strictly into v,
// as the route would decode its body.
func decodeParams(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return api.Errorf(api.CodeInvalidArgument, "request is required: the body the action's route takes.")
	}
	if err := httpapi.DecodeBytes(raw, v); err != nil {
		return api.Errorf(api.CodeInvalidArgument, "request: %s", string(api.CodeOf(err))+": "+errMessage(err))
	}
	return nil
}

func errMessage(err error) string {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// requestApproval serves POST /v1/approvals.
func (k *KMS) requestApproval(ctx context.Context, c *call) (any, error) {
	var req api.ApprovalRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	who := c.caller
	admin := who.Role == api.RoleAdmin
	var tenant, keyID string
	var params any
	noBody := func() error {
		if len(req.Request) != 0 && string(req.Request) != "null" && string(req.Request) != "{}" {
			return api.Errorf(api.CodeInvalidArgument, "Action %s takes no request body.", req.Action)
		}
		return nil
	}
	switch req.Action {
	case api.ApprovalExport:
		var r api.ExportRequest
		if err := decodeParams(req.Request, &r); err != nil {
			return nil, err
		}
		e, err := format.ParseEKB(r.EKB)
		if err != nil {
			return nil, api.Errorf(api.CodeInvalidEKB, "The EKB is malformed.")
		}
		if admin || e.Tenant != who.Tenant {
			return nil, api.Errorf(api.CodeForbidden, "Only the key's owner may export it, so only it may request the approval.")
		}
		tenant, keyID, params = e.Tenant, e.KeyID, r
	case api.ApprovalDisable, api.ApprovalMinDecryption, api.ApprovalSetKeyPolicy:
		key, err := k.st.GetKey(ctx, req.KeyID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !admin && (key.Tenant != who.Tenant || key.Owner != who.DN)) {
			return nil, api.Errorf(api.CodeNotFound, "There is no key %q.", req.KeyID)
		}
		if err != nil {
			return nil, storeErr(err, "key")
		}
		tenant, keyID = key.Tenant, key.KeyID
		switch req.Action {
		case api.ApprovalDisable:
			if err := noBody(); err != nil {
				return nil, err
			}
		case api.ApprovalMinDecryption:
			var r api.MinDecryptionVersionRequest
			if err := decodeParams(req.Request, &r); err != nil {
				return nil, err
			}
			params = r
		case api.ApprovalSetKeyPolicy:
			if admin {
				return nil, api.Errorf(api.CodeForbidden, "Only the key's owner may change its policy, so only it may request the approval.")
			}
			var r api.SetKeyPolicyRequest
			if err := decodeParams(req.Request, &r); err != nil {
				return nil, err
			}
			params = r
		}
	case api.ApprovalRotateMasterKey, api.ApprovalSetApprovalPolicy:
		if !admin {
			return nil, api.Errorf(api.CodeForbidden, "Only an admin may run %s, so only an admin may request its approval.", req.Action)
		}
		if _, err := k.st.GetTenant(ctx, req.Tenant); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, api.Errorf(api.CodeNotFound, "There is no tenant %q.", req.Tenant)
			}
			return nil, storeErr(err, "tenant")
		}
		tenant = req.Tenant
		if req.Action == api.ApprovalRotateMasterKey {
			if err := noBody(); err != nil {
				return nil, err
			}
		} else {
			var r api.ApprovalPolicy
			if err := decodeParams(req.Request, &r); err != nil {
				return nil, err
			}
			p, err := k.checkApprovalPolicy(ctx, r)
			if err != nil {
				return nil, err
			}
			params = p
		}
	case api.ApprovalCreateAdmin:
		if !admin {
			return nil, api.Errorf(api.CodeForbidden, "Only an admin may register admins.")
		}
		var r api.CreateAdminRequest
		if err := decodeParams(req.Request, &r); err != nil {
			return nil, err
		}
		if err := checkName("admin", r.Name); err != nil {
			return nil, err
		}
		params = r
	case api.ApprovalPruneAudit:
		if !admin {
			return nil, api.Errorf(api.CodeForbidden, "Only an admin may prune the audit log.")
		}
		var r api.AuditPruneRequest
		if err := decodeParams(req.Request, &r); err != nil {
			return nil, err
		}
		if err := checkPruneRequest(r); err != nil {
			return nil, err
		}
		params = r
	default:
		return nil, api.Errorf(api.CodeInvalidArgument, "Unknown action %q: use %s, %s, %s, %s, %s, %s, %s or %s.", req.Action,
			api.ApprovalExport, api.ApprovalDisable, api.ApprovalMinDecryption, api.ApprovalSetKeyPolicy,
			api.ApprovalRotateMasterKey, api.ApprovalSetApprovalPolicy, api.ApprovalCreateAdmin, api.ApprovalPruneAudit)
	}
	c.tenant = tenant
	ps, err := policiesFor(ctx, k.st, req.Action, tenant)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, api.Errorf(api.CodeInvalidArgument, "Action %s needs no approval now: no quorum governs it. Call it directly.", req.Action)
	}
	raw, err := canonical(params)
	if err != nil {
		return nil, err
	}
	now := k.now()
	a := store.Approval{
		ID: kcrypto.RandomID(approvalPrefix), Tenant: tenant, Action: req.Action, KeyID: keyID,
		Params: raw, ParamsHash: actionHash(req.Action, tenant, keyID, raw), Requester: who.DN,
		CreatedAt: now, ExpiresAt: now.Add(k.cfg.ApprovalTTL),
	}
	c.keyID = a.ID
	var view *api.Approval
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := tx.CreateApproval(ctx, a); err != nil {
			return storeErr(err, "approval")
		}
		// The requester's request is its approval when it is an approver.
		if isApprover(ps, who.DN) {
			if err := tx.AddApprovalVote(ctx, a.ID, who.DN, now); err != nil {
				return storeErr(err, "approval")
			}
		}
		var err error
		view, err = k.approvalView(ctx, tx, a.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return view, nil
}

// approvalView reads an approval and renders it with its derived state.
func (k *KMS) approvalView(ctx context.Context, st interface {
	approvalReader
	GetApproval(ctx context.Context, id string) (store.Approval, error)
}, id string) (*api.Approval, error) {
	a, err := st.GetApproval(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.Errorf(api.CodeNotFound, "There is no approval %q.", id)
	}
	if err != nil {
		return nil, storeErr(err, "approval")
	}
	ps, err := policiesFor(ctx, st, a.Action, a.Tenant)
	if err != nil {
		return nil, err
	}
	return k.render(a, ps), nil
}

func (k *KMS) render(a store.Approval, ps []store.ApprovalPolicy) *api.Approval {
	v := &api.Approval{
		ID: a.ID, Action: a.Action, Tenant: a.Tenant, KeyID: a.KeyID, Request: a.Params,
		Hash: hex.EncodeToString(a.ParamsHash), Requester: a.Requester, State: a.State,
		Approvals: make([]api.ApprovalVote, 0, len(a.Votes)),
		CreatedAt: a.CreatedAt.UTC(), ExpiresAt: a.ExpiresAt.UTC(), ClosedAt: a.ClosedAt, ClosedBy: a.ClosedBy,
	}
	for _, p := range ps {
		v.Quorum = max(v.Quorum, p.Quorum)
	}
	for _, x := range a.Votes {
		v.Approvals = append(v.Approvals, api.ApprovalVote{Approver: x.Approver, At: x.At.UTC()})
	}
	if a.State == store.ApprovalPending {
		if !k.now().Before(a.ExpiresAt) {
			v.State = api.ApprovalExpired
		} else if ok, _, _ := quorumMet(ps, a.Votes); ok {
			v.State = api.ApprovalApproved
		}
	}
	return v
}

// visibleApproval loads the approval named in the path for a caller who
// may see it: any admin, or the custodian that requested it.
func (k *KMS) visibleApproval(ctx context.Context, c *call) (store.Approval, error) {
	id := c.r.PathValue("id")
	c.keyID = id
	a, err := k.st.GetApproval(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && c.caller.Role != api.RoleAdmin && a.Requester != c.caller.DN) {
		return a, api.Errorf(api.CodeNotFound, "There is no approval %q.", id)
	}
	if err != nil {
		return a, storeErr(err, "approval")
	}
	c.tenant = a.Tenant
	return a, nil
}

// readApproval serves GET /v1/approvals/{id}.
func (k *KMS) readApproval(ctx context.Context, c *call) (any, error) {
	a, err := k.visibleApproval(ctx, c)
	if err != nil {
		return nil, err
	}
	ps, err := policiesFor(ctx, k.st, a.Action, a.Tenant)
	if err != nil {
		return nil, err
	}
	return k.render(a, ps), nil
}

// listApprovals serves GET /v1/approvals[?tenant=T&limit=N]: an admin
// sees every tenant's (or T's), a custodian its own requests.
func (k *KMS) listApprovals(ctx context.Context, c *call) (any, error) {
	q := c.r.URL.Query()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return nil, api.Errorf(api.CodeInvalidArgument, "limit must be between 1 and 1000.")
		}
		limit = n
	}
	tenant, requester := "*", ""
	if t := q.Get("tenant"); t != "" {
		tenant = t
	}
	if c.caller.Role != api.RoleAdmin {
		tenant, requester = c.caller.Tenant, c.caller.DN
	}
	as, err := k.st.ListApprovals(ctx, tenant, requester, limit)
	if err != nil {
		return nil, storeErr(err, "approval")
	}
	out := api.ApprovalList{Approvals: []api.Approval{}}
	for _, a := range as {
		full, err := k.st.GetApproval(ctx, a.ID)
		if err != nil {
			return nil, storeErr(err, "approval")
		}
		ps, err := policiesFor(ctx, k.st, a.Action, a.Tenant)
		if err != nil {
			return nil, err
		}
		out.Approvals = append(out.Approvals, *k.render(full, ps))
	}
	return out, nil
}

// approverOf checks that the calling admin may vote on a: it is an
// approver of a policy that governs it, and not its requester.
func (k *KMS) approverOf(ctx context.Context, c *call, a store.Approval) error {
	if a.Requester == c.caller.DN {
		return api.Errorf(api.CodeForbidden, "You requested approval %s: a requester does not approve (or deny) its own request; when you are an approver, your request already counts as your approval.", a.ID)
	}
	ps, err := policiesFor(ctx, k.st, a.Action, a.Tenant)
	if err != nil {
		return err
	}
	if !isApprover(ps, c.caller.DN) {
		return api.Errorf(api.CodeForbidden, "%s is not an approver of the policy that governs approval %s.", c.caller.DN, a.ID)
	}
	return nil
}

// voteErr maps the errors of AddApprovalVote and CloseApproval.
func voteErr(err error, id string) error {
	switch {
	case errors.Is(err, store.ErrUsed):
		return api.Errorf(api.CodeConflict, "Approval %s is no longer pending: it was executed, denied or cancelled.", id)
	case errors.Is(err, store.ErrExpired):
		return api.Errorf(api.CodeExpired, "Approval %s has expired; request a new one.", id)
	case errors.Is(err, store.ErrExists):
		return api.Errorf(api.CodeConflict, "You approved %s already; each approver counts once.", id)
	}
	return storeErr(err, "approval")
}

// approve serves POST /v1/approvals/{id}/approve.
func (k *KMS) approve(ctx context.Context, c *call) (any, error) {
	if err := c.decodeOptional(); err != nil {
		return nil, err
	}
	a, err := k.visibleApproval(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := k.approverOf(ctx, c, a); err != nil {
		return nil, err
	}
	return k.changeApproval(ctx, c, a.ID, func(tx store.Tx) error {
		return tx.AddApprovalVote(ctx, a.ID, c.caller.DN, k.now())
	})
}

// changeApproval applies change to approval id with the call's audit
// record, and answers the approval as it then stands.
func (k *KMS) changeApproval(ctx context.Context, c *call, id string, change func(tx store.Tx) error) (any, error) {
	var view *api.Approval
	err := c.commit(ctx, func(tx store.Tx) error {
		if err := change(tx); err != nil {
			return voteErr(err, id)
		}
		var err error
		view, err = k.approvalView(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return view, nil
}

// deny serves POST /v1/approvals/{id}/deny: one approver ends the request.
func (k *KMS) deny(ctx context.Context, c *call) (any, error) {
	return k.close(ctx, c, store.ApprovalDenied)
}

// cancelApproval serves POST /v1/approvals/{id}/cancel: the requester
// withdraws its request.
func (k *KMS) cancelApproval(ctx context.Context, c *call) (any, error) {
	return k.close(ctx, c, store.ApprovalCancelled)
}

func (k *KMS) close(ctx context.Context, c *call, state string) (any, error) {
	if err := c.decodeOptional(); err != nil {
		return nil, err
	}
	a, err := k.visibleApproval(ctx, c)
	if err != nil {
		return nil, err
	}
	if state == store.ApprovalDenied {
		if err := k.approverOf(ctx, c, a); err != nil {
			return nil, err
		}
	} else if a.Requester != c.caller.DN {
		return nil, api.Errorf(api.CodeForbidden, "Only the requester, %s, may cancel approval %s; an approver denies it instead.", a.Requester, a.ID)
	}
	return k.changeApproval(ctx, c, a.ID, func(tx store.Tx) error {
		return tx.CloseApproval(ctx, a.ID, state, c.caller.DN, k.now())
	})
}

// checkApprovalPolicy validates a requested approval policy and returns
// its canonical form: approvers are registered admins (normalized DNs,
// sorted, each once, at most maxApprovers), and the quorum is between 1
// and their number, or 0 with no approvers (no approval needed).
func (k *KMS) checkApprovalPolicy(ctx context.Context, r api.ApprovalPolicy) (api.ApprovalPolicy, error) {
	out := api.ApprovalPolicy{Quorum: r.Quorum, Approvers: []string{}}
	if len(r.Approvers) > maxApprovers {
		return out, api.Errorf(api.CodeInvalidArgument, "An approval policy names at most %d approvers.", maxApprovers)
	}
	for _, s := range r.Approvers {
		dn, err := policy.NormalizeDN(s)
		if err != nil {
			return out, api.Errorf(api.CodeInvalidArgument, "Approver %q is not a distinguished name: %v", s, err)
		}
		if slices.Contains(out.Approvers, dn) {
			return out, api.Errorf(api.CodeInvalidArgument, "Approver %s is named twice.", dn)
		}
		app, err := k.st.GetAppByDN(ctx, dn)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (app.Role != string(api.RoleAdmin) || app.Tenant != "")) {
			return out, api.Errorf(api.CodeInvalidArgument, "Approver %s is not a registered admin: register it first (POST /v1/admins).", dn)
		}
		if err != nil {
			return out, storeErr(err, "admin")
		}
		out.Approvers = append(out.Approvers, dn)
	}
	slices.Sort(out.Approvers)
	switch {
	case r.Quorum == 0 && len(out.Approvers) != 0:
		return out, api.Errorf(api.CodeInvalidArgument, "A quorum of 0 turns approvals off and takes no approvers.")
	case r.Quorum < 0 || r.Quorum > len(out.Approvers) && r.Quorum != 0:
		return out, api.Errorf(api.CodeInvalidArgument, "quorum must be between 1 and the number of approvers (%d), or 0 to need no approvals.", len(out.Approvers))
	}
	return out, nil
}

// setApprovalPolicy serves PUT /v1/tenants/{tenant}/approval-policy. Once
// the tenant has a quorum, changing or removing it needs that quorum's
// approval too.
func (k *KMS) setApprovalPolicy(ctx context.Context, c *call) (any, error) {
	name := c.r.PathValue("tenant")
	c.tenant = name
	var req api.ApprovalPolicy
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if req.Tenant != "" && req.Tenant != name || req.Version != 0 || req.UpdatedAt != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "Send only quorum and approvers; the tenant is the path's.")
	}
	if _, err := k.st.GetTenant(ctx, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, api.Errorf(api.CodeNotFound, "There is no tenant %q.", name)
		}
		return nil, storeErr(err, "tenant")
	}
	p, err := k.checkApprovalPolicy(ctx, req)
	if err != nil {
		return nil, err
	}
	cur, err := k.st.GetApprovalPolicy(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, storeErr(err, "approval policy")
	}
	use, err := k.approvalFor(ctx, c, api.ApprovalSetApprovalPolicy, name, "", p)
	if err != nil {
		return nil, err
	}
	now := k.now()
	next := store.ApprovalPolicy{Tenant: name, Quorum: p.Quorum, Approvers: p.Approvers, Version: cur.Version + 1, UpdatedAt: now}
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := use.consumeIn(ctx, tx); err != nil {
			return err
		}
		if err := tx.PutApprovalPolicy(ctx, next); err != nil {
			return storeErr(err, "approval policy")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return policyView(next), nil
}

func policyView(p store.ApprovalPolicy) api.ApprovalPolicy {
	v := api.ApprovalPolicy{Tenant: p.Tenant, Quorum: p.Quorum, Approvers: p.Approvers, Version: p.Version}
	if v.Approvers == nil {
		v.Approvers = []string{}
	}
	if p.Version > 0 {
		t := p.UpdatedAt.UTC()
		v.UpdatedAt = &t
	}
	return v
}

// getApprovalPolicy serves GET /v1/tenants/{tenant}/approval-policy.
func (k *KMS) getApprovalPolicy(ctx context.Context, c *call) (any, error) {
	name := c.r.PathValue("tenant")
	c.tenant = name
	if _, err := k.st.GetTenant(ctx, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, api.Errorf(api.CodeNotFound, "There is no tenant %q.", name)
		}
		return nil, storeErr(err, "tenant")
	}
	p, err := k.st.GetApprovalPolicy(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return policyView(store.ApprovalPolicy{Tenant: name}), nil
	}
	if err != nil {
		return nil, storeErr(err, "approval policy")
	}
	return policyView(p), nil
}

// setKeyPolicy serves PUT /v1/datakeys/{key_id}/policy: the owner gets an
// EKB of the same version and material under a new policy. A change that
// loosens the policy (policy.Loosens) needs the tenant's quorum; one that
// does not, none. The EKB presented keeps its policy (an EKB is
// self-contained): to stop a holder of the old EKB, rotate the key and
// retire the old version.
func (k *KMS) setKeyPolicy(ctx context.Context, c *call) (any, error) {
	keyID := c.r.PathValue("key_id")
	c.keyID = keyID
	var req api.SetKeyPolicyRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if len(req.EKB) == 0 {
		return nil, api.Errorf(api.CodeInvalidArgument, "ekb is required: an EKB of the key.")
	}
	pol, err := policy.Normalize(req.Policy)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "%v", err)
	}
	o, key, err := k.openOwnEKB(ctx, c, keyID, req.EKB, "change its policy")
	if err != nil {
		return nil, err
	}
	defer o.material.Wipe()
	switch {
	case key.Retained:
		return nil, api.Errorf(api.CodeInvalidArgument, "Key %s is retained: the KMS keeps its EKBs, and changing the policy of a retained key is not offered; create a new key with the policy instead.", keyID)
	case o.md.Version < key.MinDecryptionVersion:
		return nil, retired(key, o.md.Version)
	}
	var use *approvalUse
	if policy.Loosens(o.md.Policy, pol, o.md.Owner) {
		if use, err = k.approvalFor(ctx, c, api.ApprovalSetKeyPolicy, key.Tenant, keyID, req); err != nil {
			return nil, err
		}
	}
	t, err := k.st.GetTenant(ctx, key.Tenant)
	if err != nil {
		return nil, storeErr(err, "tenant")
	}
	md := o.md
	md.Policy = pol
	ekb, err := k.sealEKB(ctx, t.Name, t.MasterKeyVersion, &md, o.material)
	if err != nil {
		return nil, err
	}
	if err := c.commit(ctx, func(tx store.Tx) error { return use.consumeIn(ctx, tx) }); err != nil {
		return nil, err
	}
	return &api.DataKey{KeyID: md.KeyID, Version: md.Version, EKB: ekb, Metadata: md, PublicKeyPEM: md.PublicKeyPEM}, nil
}
