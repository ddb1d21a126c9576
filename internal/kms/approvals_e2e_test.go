package kms_test

import (
	"bytes"
	"crypto/hpke"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// doApproved is kmstest.Client.Do with the approval header set to id.
func doApproved(c *kmstest.Client, id, method, path string, in, out any) error {
	with := *c
	with.Approval = id
	return with.Do(method, path, in, out)
}

// quorumWorld is a KMS with tenant acme under a quorum of 2 among the
// admins alice, bob and carol; dave is an admin who is no approver, cust
// a custodian of acme.
type quorumWorld struct {
	env                     *kmstest.Env
	clock                   *kmstest.Clock
	alice, bob, carol, dave *kmstest.Client
	cust                    *kmstest.Client
	custDN                  string
}

func newQuorumWorld(t *testing.T) *quorumWorld {
	t.Helper()
	clock := kmstest.NewClock()
	env := kmstest.Start(t, func(o *kms.Options) {
		o.Now = clock.Now
		o.Config.ApprovalTTL = time.Hour
	})
	w := &quorumWorld{env: env, clock: clock}
	env.Tenant(t, "acme")
	w.alice, _ = env.NewAdmin(t, "alice")
	w.bob, _ = env.NewAdmin(t, "bob")
	w.carol, _ = env.NewAdmin(t, "carol")
	w.dave, _ = env.NewAdmin(t, "dave")
	var creds api.AppCredentials
	w.cust, creds = env.App(t, "acme", "payments-api", api.RoleCustodian)
	w.custDN = creds.DN
	var p api.ApprovalPolicy
	env.Admin.MustDo(t, "PUT", "/v1/tenants/acme/approval-policy", api.ApprovalPolicy{
		Quorum: 2, Approvers: []string{"CN=alice,O=dcaas", "cn=bob, o=dcaas", "CN=carol,O=dcaas"}}, &p)
	if p.Quorum != 2 || p.Version != 1 || !slices.Equal(p.Approvers, []string{"CN=alice,O=dcaas", "CN=bob,O=dcaas", "CN=carol,O=dcaas"}) {
		t.Fatalf("approval policy = %+v", p)
	}
	return w
}

// request asks for an approval as c and returns it.
func (w *quorumWorld) request(t *testing.T, c *kmstest.Client, req api.ApprovalRequest) api.Approval {
	t.Helper()
	var a api.Approval
	c.MustDo(t, "POST", "/v1/approvals", req, &a)
	if a.ID == "" || a.Action != req.Action || len(a.Hash) != 64 {
		t.Fatalf("approval answer %+v", a)
	}
	return a
}

func raw(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestQuorumApprovals: with a quorum of 2, no admin (nor the custodian)
// alone can run any sensitive action; once two distinct approvers agree,
// the requester runs it exactly once.
func TestQuorumApprovals(t *testing.T) {
	w := newQuorumWorld(t)
	mk := func(req api.CreateDataKeyRequest) api.DataKey { return w.cust.DataKey(t, req) }
	exp := mk(api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Exportable: true})
	pol := mk(api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	two := mk(api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	w.cust.MustDo(t, "POST", "/v1/datakeys/"+two.KeyID+"/versions", api.NewVersionRequest{EKB: two.EKB}, nil)
	dis := mk(api.CreateDataKeyRequest{Type: api.KeyAES256GCM})

	hk, _ := kcrypto.GenerateKEMKey(kcrypto.DefaultKEM())
	pub, _ := kcrypto.MarshalKEMPublicKey(hk.PublicKey())
	exportReq := api.ExportRequest{EKB: exp.EKB, Wrapping: api.WrappingHPKE, PublicKey: &pub}
	kbpk := mk(api.CreateDataKeyRequest{Type: api.KeyAES256KBPK})
	exp31 := mk(api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Exportable: true})
	tr31Req := api.ExportRequest{EKB: exp31.EKB, Wrapping: api.WrappingTR31, KBPKID: kbpk.KeyID}
	looser := &api.Policy{Rules: []api.PolicyRule{{Principals: []string{w.custDN, "CN=reporting,OU=acme,O=dcaas"}, Actions: []api.Action{api.ActionDecrypt}}}}
	policyReq := api.SetKeyPolicyRequest{EKB: pol.EKB, Policy: looser}

	tests := []struct {
		name      string
		requester *kmstest.Client
		approvers []*kmstest.Client // beyond the requester's own approval
		method    string
		path      string
		body      any
		approval  api.ApprovalRequest
		check     func(t *testing.T, out []byte)
	}{
		{"export", w.cust, []*kmstest.Client{w.alice, w.bob}, "POST", "/v1/datakeys/export", exportReq,
			api.ApprovalRequest{Action: api.ApprovalExport, Request: raw(t, exportReq)},
			func(t *testing.T, out []byte) {
				var r api.ExportResponse
				json.Unmarshal(out, &r)
				info := append([]byte("dcaas/v1 export\x00"), []byte(`["acme","`+exp.KeyID+`",1]`)...)
				if pt, err := hpke.Open(hk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, r.WrappedMaterial); err != nil || len(pt) != 32 {
					t.Fatalf("the approved export does not open: %v", err)
				}
			}},
		{"export as a TR-31 key block", w.cust, []*kmstest.Client{w.alice, w.bob}, "POST", "/v1/datakeys/export", tr31Req,
			api.ApprovalRequest{Action: api.ApprovalExport, Request: raw(t, tr31Req)},
			func(t *testing.T, out []byte) {
				var r api.ExportResponse
				json.Unmarshal(out, &r)
				if !strings.HasPrefix(r.KeyBlock, "D") || len(r.KCV) != 6 || r.KCV != exp31.KCV {
					t.Fatalf("the approved TR-31 export: block %q, kcv %q (the key's %q)", r.KeyBlock, r.KCV, exp31.KCV)
				}
			}},
		{"loosen a key policy", w.cust, []*kmstest.Client{w.bob, w.carol}, "PUT", "/v1/datakeys/" + pol.KeyID + "/policy", policyReq,
			api.ApprovalRequest{Action: api.ApprovalSetKeyPolicy, KeyID: pol.KeyID, Request: raw(t, policyReq)},
			func(t *testing.T, out []byte) {
				var dk api.DataKey
				json.Unmarshal(out, &dk)
				if dk.Metadata.Policy == nil || len(dk.Metadata.Policy.Rules[0].Principals) != 2 || dk.Version != 1 || bytes.Equal(dk.EKB, pol.EKB) {
					t.Fatalf("new EKB's metadata %+v", dk.Metadata)
				}
			}},
		{"retire a version", w.alice, []*kmstest.Client{w.bob}, "POST", "/v1/datakeys/" + two.KeyID + "/min-decryption-version", api.MinDecryptionVersionRequest{Version: 2},
			api.ApprovalRequest{Action: api.ApprovalMinDecryption, KeyID: two.KeyID, Request: raw(t, api.MinDecryptionVersionRequest{Version: 2})},
			func(t *testing.T, out []byte) {
				var info api.DataKeyInfo
				json.Unmarshal(out, &info)
				if info.MinDecryptionVersion != 2 {
					t.Fatalf("min decryption version %d, want 2", info.MinDecryptionVersion)
				}
			}},
		{"disable a key", w.carol, []*kmstest.Client{w.alice}, "DELETE", "/v1/datakeys/" + dis.KeyID, nil,
			api.ApprovalRequest{Action: api.ApprovalDisable, KeyID: dis.KeyID},
			func(t *testing.T, out []byte) {
				var info api.DataKeyInfo
				w.cust.MustDo(t, "GET", "/v1/datakeys/"+dis.KeyID, nil, &info)
				if !info.Disabled {
					t.Fatal("the key is not disabled")
				}
			}},
		{"rotate the master key", w.bob, []*kmstest.Client{w.carol}, "POST", "/v1/tenants/acme/master-key/rotate", nil,
			api.ApprovalRequest{Action: api.ApprovalRotateMasterKey, Tenant: "acme"},
			func(t *testing.T, out []byte) {
				var r api.RotateMasterKeyResponse
				json.Unmarshal(out, &r)
				if r.MasterKeyVersion != 2 {
					t.Fatalf("master key version %d, want 2", r.MasterKeyVersion)
				}
			}},
		{"register an admin", w.alice, []*kmstest.Client{w.carol}, "POST", "/v1/admins", api.CreateAdminRequest{Name: "erin"},
			api.ApprovalRequest{Action: api.ApprovalCreateAdmin, Request: raw(t, api.CreateAdminRequest{Name: "erin"})},
			func(t *testing.T, out []byte) {
				var creds api.AppCredentials
				json.Unmarshal(out, &creds)
				if creds.DN != "CN=erin,O=dcaas" {
					t.Fatalf("new admin %q", creds.DN)
				}
			}},
		{"lower the quorum", w.alice, []*kmstest.Client{w.bob}, "PUT", "/v1/tenants/acme/approval-policy", api.ApprovalPolicy{Quorum: 1, Approvers: []string{"CN=alice,O=dcaas"}},
			api.ApprovalRequest{Action: api.ApprovalSetApprovalPolicy, Tenant: "acme", Request: raw(t, api.ApprovalPolicy{Quorum: 1, Approvers: []string{"CN=alice,O=dcaas"}})},
			func(t *testing.T, out []byte) {
				var p api.ApprovalPolicy
				w.dave.MustDo(t, "GET", "/v1/tenants/acme/approval-policy", nil, &p)
				if p.Quorum != 1 || p.Version != 2 {
					t.Fatalf("policy %+v, want quorum 1 version 2", p)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Alone, every admin and the requester are refused.
			for _, c := range []*kmstest.Client{tc.requester, w.alice, w.bob, w.carol, w.dave, w.env.Admin} {
				err := c.Do(tc.method, tc.path, tc.body, nil)
				if c == tc.requester || !slices.Contains([]string{"export", "export as a TR-31 key block", "loosen a key policy"}, tc.name) {
					kmstest.WantError(t, err, http.StatusForbidden, api.CodeApprovalRequired)
				} else if err == nil {
					t.Fatalf("an admin ran the custodian's %s", tc.name)
				}
			}
			a := w.request(t, tc.requester, tc.approval)
			// Not approved yet: the requester alone (plus its own
			// approval, when it is an approver) is not a quorum.
			kmstest.WantError(t, doApproved(tc.requester, a.ID, tc.method, tc.path, tc.body, nil), http.StatusForbidden, api.CodeApprovalRequired)
			kmstest.WantError(t, tc.requester.Do("POST", "/v1/approvals/"+a.ID+"/approve", nil, nil), http.StatusForbidden, api.CodeForbidden)
			kmstest.WantError(t, w.dave.Do("POST", "/v1/approvals/"+a.ID+"/approve", nil, nil), http.StatusForbidden, api.CodeForbidden)
			for _, ap := range tc.approvers {
				ap.MustDo(t, "POST", "/v1/approvals/"+a.ID+"/approve", nil, &a)
			}
			if a.State != api.ApprovalApproved || len(a.Approvals) != 2 {
				t.Fatalf("after two approvals: state %s, approvals %+v", a.State, a.Approvals)
			}
			// Another caller cannot run it; the requester can, once.
			other := w.dave
			if tc.requester == w.cust {
				other = w.alice
			}
			if err := doApproved(other, a.ID, tc.method, tc.path, tc.body, nil); err == nil {
				t.Fatal("another caller ran the requester's approval")
			}
			var out json.RawMessage
			if err := doApproved(tc.requester, a.ID, tc.method, tc.path, tc.body, &out); err != nil {
				t.Fatalf("approved %s: %v", tc.name, err)
			}
			tc.check(t, out)
			kmstest.WantError(t, doApproved(tc.requester, a.ID, tc.method, tc.path, tc.body, nil), http.StatusConflict, api.CodeAlreadyUsed)
			tc.requester.MustDo(t, "GET", "/v1/approvals/"+a.ID, nil, &a)
			if a.State != api.ApprovalExecuted || a.ClosedBy == "" {
				t.Fatalf("after execution: %+v", a)
			}
		})
	}

	// Every step is in the audit log.
	var page api.AuditPage
	w.env.Admin.MustDo(t, "GET", "/v1/audit?after=0&limit=1000", nil, &page)
	seen := map[string]bool{}
	for _, r := range page.Records {
		seen[r.Action+"/"+r.Outcome] = true
	}
	for _, want := range []string{"approval.request/ok", "approval.approve/ok", "approval.approve/denied", "datakey.export/ok", "datakey.export/denied", "tenant.set_approval_policy/ok"} {
		if !seen[want] {
			t.Errorf("no %s record in the audit log", want)
		}
	}
}

// TestQuorumApprovalRefusals: parameters other than approved, expiry,
// denial, cancellation, lowering the quorum alone, admins alone.
func TestQuorumApprovalRefusals(t *testing.T) {
	w := newQuorumWorld(t)
	two := w.cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	w.cust.MustDo(t, "POST", "/v1/datakeys/"+two.KeyID+"/versions", api.NewVersionRequest{EKB: two.EKB}, nil)
	minPath := "/v1/datakeys/" + two.KeyID + "/min-decryption-version"
	minReq := func(v int) api.ApprovalRequest {
		return api.ApprovalRequest{Action: api.ApprovalMinDecryption, KeyID: two.KeyID, Request: raw(t, api.MinDecryptionVersionRequest{Version: v})}
	}

	t.Run("lowering the quorum alone", func(t *testing.T) {
		for _, c := range []*kmstest.Client{w.alice, w.env.Admin} {
			kmstest.WantError(t, c.Do("PUT", "/v1/tenants/acme/approval-policy", api.ApprovalPolicy{Quorum: 0}, nil), http.StatusForbidden, api.CodeApprovalRequired)
		}
		var p api.ApprovalPolicy
		w.bob.MustDo(t, "GET", "/v1/tenants/acme/approval-policy", nil, &p)
		if p.Quorum != 2 {
			t.Fatalf("quorum %d after refused changes", p.Quorum)
		}
	})
	t.Run("an admin alone registers no admin", func(t *testing.T) {
		kmstest.WantError(t, w.dave.Do("POST", "/v1/admins", api.CreateAdminRequest{Name: "mallory"}, nil), http.StatusForbidden, api.CodeApprovalRequired)
	})
	t.Run("other parameters", func(t *testing.T) {
		a := w.request(t, w.alice, minReq(2))
		w.bob.MustDo(t, "POST", "/v1/approvals/"+a.ID+"/approve", nil, nil)
		kmstest.WantError(t, doApproved(w.alice, a.ID, "POST", minPath, api.MinDecryptionVersionRequest{Version: 1}, nil), http.StatusBadRequest, api.CodeInvalidArgument)
		kmstest.WantError(t, doApproved(w.alice, a.ID, "DELETE", "/v1/datakeys/"+two.KeyID, nil, nil), http.StatusBadRequest, api.CodeInvalidArgument)
		w.alice.MustDo(t, "POST", "/v1/approvals/"+a.ID+"/cancel", nil, nil)
	})
	t.Run("approver not in the list", func(t *testing.T) {
		a := w.request(t, w.alice, minReq(2))
		kmstest.WantError(t, w.dave.Do("POST", "/v1/approvals/"+a.ID+"/approve", nil, nil), http.StatusForbidden, api.CodeForbidden)
		kmstest.WantError(t, w.cust.Do("POST", "/v1/approvals/"+a.ID+"/approve", nil, nil), http.StatusForbidden, api.CodeForbidden)
		w.alice.MustDo(t, "GET", "/v1/approvals/"+a.ID, nil, &a)
		if a.State != api.ApprovalPending || len(a.Approvals) != 1 {
			t.Fatalf("after refused approvals: %+v", a)
		}
		w.alice.MustDo(t, "POST", "/v1/approvals/"+a.ID+"/cancel", nil, nil)
	})
	t.Run("self-approval and double approval", func(t *testing.T) {
		a := w.request(t, w.cust, api.ApprovalRequest{Action: api.ApprovalDisable, KeyID: two.KeyID})
		if len(a.Approvals) != 0 {
			t.Fatalf("a custodian's request carries approvals %+v", a.Approvals)
		}
		w.alice.MustDo(t, "POST", "/v1/approvals/"+a.ID+"/approve", nil, nil)
		kmstest.WantError(t, w.alice.Do("POST", "/v1/approvals/"+a.ID+"/approve", nil, nil), http.StatusConflict, api.CodeConflict)
		kmstest.WantError(t, doApproved(w.cust, a.ID, "DELETE", "/v1/datakeys/"+two.KeyID, nil, nil), http.StatusForbidden, api.CodeApprovalRequired)
		// Only the requester cancels; an approver denies.
		kmstest.WantError(t, w.alice.Do("POST", "/v1/approvals/"+a.ID+"/cancel", nil, nil), http.StatusForbidden, api.CodeForbidden)
		w.carol.MustDo(t, "POST", "/v1/approvals/"+a.ID+"/deny", nil, &a)
		if a.State != api.ApprovalDenied {
			t.Fatalf("state after deny: %s", a.State)
		}
		kmstest.WantError(t, w.bob.Do("POST", "/v1/approvals/"+a.ID+"/approve", nil, nil), http.StatusConflict, api.CodeConflict)
		kmstest.WantError(t, doApproved(w.cust, a.ID, "DELETE", "/v1/datakeys/"+two.KeyID, nil, nil), http.StatusConflict, api.CodeConflict)
	})
	t.Run("expired", func(t *testing.T) {
		a := w.request(t, w.alice, minReq(2))
		w.bob.MustDo(t, "POST", "/v1/approvals/"+a.ID+"/approve", nil, nil)
		w.clock.Advance(time.Hour + time.Second)
		kmstest.WantError(t, doApproved(w.alice, a.ID, "POST", minPath, api.MinDecryptionVersionRequest{Version: 2}, nil), http.StatusGone, api.CodeExpired)
		kmstest.WantError(t, w.carol.Do("POST", "/v1/approvals/"+a.ID+"/approve", nil, nil), http.StatusGone, api.CodeExpired)
		w.alice.MustDo(t, "GET", "/v1/approvals/"+a.ID, nil, &a)
		if a.State != api.ApprovalExpired {
			t.Fatalf("state after expiry: %s", a.State)
		}
		var info api.DataKeyInfo
		w.cust.MustDo(t, "GET", "/v1/datakeys/"+two.KeyID, nil, &info)
		if info.MinDecryptionVersion != 0 {
			t.Fatalf("an expired approval ran: min decryption version %d", info.MinDecryptionVersion)
		}
	})
	t.Run("a custodian sees only its own requests", func(t *testing.T) {
		var l api.ApprovalList
		w.cust.MustDo(t, "GET", "/v1/approvals", nil, &l)
		for _, a := range l.Approvals {
			if a.Requester != w.custDN {
				t.Fatalf("custodian sees %s's request", a.Requester)
			}
		}
		if len(l.Approvals) != 1 {
			t.Fatalf("custodian sees %d requests, want its 1", len(l.Approvals))
		}
		w.alice.MustDo(t, "GET", "/v1/approvals?tenant=acme", nil, &l)
		if len(l.Approvals) < 4 {
			t.Fatalf("an admin sees %d requests, want all", len(l.Approvals))
		}
	})
	t.Run("tightening needs no approval", func(t *testing.T) {
		k := w.cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		tight := &api.Policy{Rules: []api.PolicyRule{{Principals: []string{w.custDN}, Actions: []api.Action{api.ActionDecrypt}}}}
		var dk api.DataKey
		w.cust.MustDo(t, "PUT", "/v1/datakeys/"+k.KeyID+"/policy", api.SetKeyPolicyRequest{EKB: k.EKB, Policy: tight}, &dk)
		// Back to the owner-only default loosens (encrypt again).
		kmstest.WantError(t, w.cust.Do("PUT", "/v1/datakeys/"+k.KeyID+"/policy", api.SetKeyPolicyRequest{EKB: dk.EKB}, nil), http.StatusForbidden, api.CodeApprovalRequired)
	})
}

// TestQuorumApprovalRace: approvals given at once all count, and of many
// executions at once exactly one runs the action.
func TestQuorumApprovalRace(t *testing.T) {
	w := newQuorumWorld(t)
	a := w.request(t, w.alice, api.ApprovalRequest{Action: api.ApprovalRotateMasterKey, Tenant: "acme"})
	var wg sync.WaitGroup
	for _, c := range []*kmstest.Client{w.bob, w.carol} {
		wg.Go(func() {
			if err := c.Do("POST", "/v1/approvals/"+a.ID+"/approve", nil, nil); err != nil {
				t.Errorf("concurrent approve: %v", err)
			}
		})
	}
	wg.Wait()
	w.alice.MustDo(t, "GET", "/v1/approvals/"+a.ID, nil, &a)
	if len(a.Approvals) != 3 || a.State != api.ApprovalApproved {
		t.Fatalf("after concurrent approvals: %+v", a)
	}
	const n = 8
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = doApproved(w.alice, a.ID, "POST", "/v1/tenants/acme/master-key/rotate", nil, nil)
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		kmstest.WantError(t, err, http.StatusConflict, api.CodeAlreadyUsed)
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent executions ran, want 1", ok, n)
	}
	// One rotation happened: the next one, approved, makes version 3.
	b := w.request(t, w.alice, api.ApprovalRequest{Action: api.ApprovalRotateMasterKey, Tenant: "acme"})
	w.bob.MustDo(t, "POST", "/v1/approvals/"+b.ID+"/approve", nil, nil)
	var r api.RotateMasterKeyResponse
	if err := doApproved(w.alice, b.ID, "POST", "/v1/tenants/acme/master-key/rotate", nil, &r); err != nil || r.MasterKeyVersion != 3 {
		t.Fatalf("next rotation: version %d, %v; want 3", r.MasterKeyVersion, err)
	}
}
