package policy

import (
	"testing"

	"github.com/dcaas/dcaas/api"
)

func TestLoosens(t *testing.T) {
	const owner = "CN=payments,OU=acme,O=dcaas"
	pol := func(rules ...api.PolicyRule) *api.Policy { return &api.Policy{Rules: rules} }
	withLimits := func(p *api.Policy, l api.UsageLimits) *api.Policy { p.Limits = &l; return p }
	ownerAll := rule([]string{owner}, api.ActionEncrypt, api.ActionDecrypt, api.ActionSign, api.ActionVerify, api.ActionMAC)
	tests := []struct {
		name      string
		old, next *api.Policy
		want      bool
	}{
		{"nil to nil", nil, nil, false},
		{"nil to the owner's decrypt only", nil, pol(rule([]string{owner}, api.ActionDecrypt)), false},
		{"nil to the owner's every action", nil, pol(ownerAll), false},
		{"nil to the owner in another spelling", nil, pol(rule([]string{"cn=payments, ou=acme, o=dcaas"}, api.ActionEncrypt)), false},
		{"nil to another custodian", nil, pol(rule([]string{"CN=reporting,OU=acme,O=dcaas"}, api.ActionDecrypt)), true},
		{"nil to a wildcard", nil, pol(rule([]string{"CN=*,OU=acme,O=dcaas"}, api.ActionDecrypt)), true},
		{"owner's decrypt to nil (every action)", pol(rule([]string{owner}, api.ActionDecrypt)), nil, true},
		{"owner's every action to nil", pol(ownerAll), nil, false},
		{"add an action", pol(rule([]string{owner}, api.ActionDecrypt)), pol(rule([]string{owner}, api.ActionDecrypt, api.ActionEncrypt)), true},
		{"drop an action", pol(rule([]string{owner}, api.ActionDecrypt, api.ActionEncrypt)), pol(rule([]string{owner}, api.ActionDecrypt)), false},
		{"add a principal", pol(rule([]string{owner}, api.ActionDecrypt)), pol(rule([]string{owner, "CN=b,O=x"}, api.ActionDecrypt)), true},
		{"drop a principal", pol(rule([]string{owner, "CN=b,O=x"}, api.ActionDecrypt)), pol(rule([]string{owner}, api.ActionDecrypt)), false},
		{"split a rule in two", pol(rule([]string{owner, "CN=b,O=x"}, api.ActionDecrypt)), pol(rule([]string{"CN=b,O=x"}, api.ActionDecrypt), rule([]string{owner}, api.ActionDecrypt)), false},
		{"a name a wildcard covered", pol(rule([]string{"CN=r-*,O=x"}, api.ActionDecrypt)), pol(rule([]string{"CN=r-eu,O=x"}, api.ActionDecrypt)), false},
		{"a name the wildcard does not cover", pol(rule([]string{"CN=r-*,O=x"}, api.ActionDecrypt)), pol(rule([]string{"CN=s-eu,O=x"}, api.ActionDecrypt)), true},
		{"the same wildcard", pol(rule([]string{"CN=r-*,O=x"}, api.ActionDecrypt)), pol(rule([]string{"CN=r-**,O=x"}, api.ActionDecrypt)), false},
		{"a narrower wildcard counts as loosening", pol(rule([]string{"CN=r-*,O=x"}, api.ActionDecrypt)), pol(rule([]string{"CN=r-e*,O=x"}, api.ActionDecrypt)), true},
		{"anything under *", pol(rule([]string{"*"}, api.ActionDecrypt)), pol(rule([]string{"CN=r-e*,O=x"}, api.ActionDecrypt)), false},
		{"to *", pol(rule([]string{"CN=r-*,O=x"}, api.ActionDecrypt)), pol(rule([]string{"*"}, api.ActionDecrypt)), true},
		{"the same action for a covered name is not another action", pol(rule([]string{"*"}, api.ActionDecrypt)), pol(rule([]string{owner}, api.ActionEncrypt)), true},
		{"a literal star is not a wildcard", pol(rule([]string{`CN=a\*,O=x`}, api.ActionDecrypt)), pol(rule([]string{`CN=a\*,O=x`}, api.ActionDecrypt)), false},
		{"limit added", pol(ownerAll), withLimits(pol(ownerAll), api.UsageLimits{MaxOperations: 10}), false},
		{"limit lowered", withLimits(pol(ownerAll), api.UsageLimits{MaxOperations: 10}), withLimits(pol(ownerAll), api.UsageLimits{MaxOperations: 5}), false},
		{"limit raised", withLimits(pol(ownerAll), api.UsageLimits{MaxOperations: 10}), withLimits(pol(ownerAll), api.UsageLimits{MaxOperations: 11}), true},
		{"limit removed", withLimits(pol(ownerAll), api.UsageLimits{MaxBytes: 10}), pol(ownerAll), true},
		{"lease limit removed by nil policy", withLimits(pol(ownerAll), api.UsageLimits{MaxLeaseSeconds: 60}), nil, true},
		{"malformed new principal", nil, pol(rule([]string{"not a dn"}, api.ActionDecrypt)), true},
		{"unknown new action", nil, pol(rule([]string{owner}, "export")), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Loosens(tc.old, tc.next, owner); got != tc.want {
				t.Errorf("Loosens = %v, want %v", got, tc.want)
			}
		})
	}
	if !Loosens(nil, nil, "not a dn") {
		t.Error("Loosens with a malformed owner = false, want true (conservative)")
	}
}
