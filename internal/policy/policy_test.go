package policy

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
)

func rule(principals []string, actions ...api.Action) api.PolicyRule {
	return api.PolicyRule{Principals: principals, Actions: actions}
}

func TestValidate(t *testing.T) {
	many := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	manyActions := make([]api.Action, MaxActions+1)
	for i := range manyActions {
		manyActions[i] = api.ActionEncrypt
	}
	manyRules := make([]api.PolicyRule, MaxRules+1)
	for i := range manyRules {
		manyRules[i] = rule([]string{"CN=a"}, api.ActionEncrypt)
	}
	ok := []api.PolicyRule{rule([]string{"CN=a"}, api.ActionDecrypt)}
	tests := []struct {
		name    string
		p       *api.Policy
		wantErr bool
	}{
		{"nil is owner-only", nil, false},
		{"one rule", &api.Policy{Rules: ok}, false},
		{"wildcards", &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=reporting-*,O=acme", "*"}, api.ActionDecrypt, api.ActionVerify)}}, false},
		{"all actions", &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=a"}, api.ActionEncrypt, api.ActionDecrypt, api.ActionSign, api.ActionVerify, api.ActionMAC)}}, false},
		{"same principal in two rules", &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=a"}, api.ActionEncrypt), rule([]string{"CN=a"}, api.ActionDecrypt)}}, false},
		{"limits reached", &api.Policy{Rules: []api.PolicyRule{rule(many(MaxPrincipals, func(i int) string { return fmt.Sprintf("CN=%d", i) }), api.ActionSign)}}, false},
		{"principal at size limit", &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=" + strings.Repeat("a", MaxPrincipalSize-3)}, api.ActionSign)}}, false},
		{"no rules", &api.Policy{}, true},
		{"empty rules", &api.Policy{Rules: []api.PolicyRule{}}, true},
		{"too many rules", &api.Policy{Rules: manyRules}, true},
		{"no principals", &api.Policy{Rules: []api.PolicyRule{rule(nil, api.ActionEncrypt)}}, true},
		{"no actions", &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=a"})}}, true},
		{"unknown action", &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=a"}, "export")}}, true},
		{"empty action", &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=a"}, "")}}, true},
		{"duplicate action", &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=a"}, api.ActionSign, api.ActionSign)}}, true},
		{"duplicate principal after normalizing", &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=a,O=b", "cn = a, o = b"}, api.ActionSign)}}, true},
		{"bad principal", &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=a;"}, api.ActionSign)}}, true},
		{"empty principal", &api.Policy{Rules: []api.PolicyRule{rule([]string{""}, api.ActionSign)}}, true},
		{"too many principals", &api.Policy{Rules: []api.PolicyRule{rule(many(MaxPrincipals+1, func(i int) string { return fmt.Sprintf("CN=%d", i) }), api.ActionSign)}}, true},
		{"too many actions", &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=a"}, manyActions...)}}, true},
		{"principal too long", &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=" + strings.Repeat("a", MaxPrincipalSize-2)}, api.ActionSign)}}, true},
		{"limits", &api.Policy{Rules: ok, Limits: &api.UsageLimits{MaxLeaseSeconds: 3600, MaxOperations: 1000, MaxBytes: 1 << 30}}, false},
		{"lease at its limit", &api.Policy{Rules: ok, Limits: &api.UsageLimits{MaxLeaseSeconds: MaxLeaseSeconds}}, false},
		{"zero limits", &api.Policy{Rules: ok, Limits: &api.UsageLimits{}}, false},
		{"negative lease", &api.Policy{Rules: ok, Limits: &api.UsageLimits{MaxLeaseSeconds: -1}}, true},
		{"negative operations", &api.Policy{Rules: ok, Limits: &api.UsageLimits{MaxOperations: -1}}, true},
		{"negative bytes", &api.Policy{Rules: ok, Limits: &api.UsageLimits{MaxBytes: -5}}, true},
		{"lease over ten years", &api.Policy{Rules: ok, Limits: &api.UsageLimits{MaxLeaseSeconds: MaxLeaseSeconds + 1}}, true},
		{"limits without rules", &api.Policy{Limits: &api.UsageLimits{MaxOperations: 5}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.p)
			if tt.wantErr && !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("Validate() = %v, want ErrInvalidPolicy", err)
			}
			if !tt.wantErr && err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestValidateBadPrincipalIsInvalidDN(t *testing.T) {
	err := Validate(&api.Policy{Rules: []api.PolicyRule{rule([]string{"XX=a"}, api.ActionSign)}})
	if !errors.Is(err, ErrInvalidPolicy) || !errors.Is(err, ErrInvalidDN) {
		t.Errorf("Validate() = %v, want both ErrInvalidPolicy and ErrInvalidDN", err)
	}
}

func TestNormalize(t *testing.T) {
	in := &api.Policy{Rules: []api.PolicyRule{
		rule([]string{"o=acme , cn = reporting-*", "CN=payments-api,O=acme"}, api.ActionDecrypt, api.ActionEncrypt),
		rule([]string{"*"}, api.ActionVerify),
	}}
	want := &api.Policy{Rules: []api.PolicyRule{
		rule([]string{"CN=payments-api,O=acme", "O=acme,CN=reporting-*"}, api.ActionDecrypt, api.ActionEncrypt),
		rule([]string{"*"}, api.ActionVerify),
	}}
	got, err := Normalize(in)
	if err != nil {
		t.Fatalf("Normalize() error %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Normalize() = %+v, want %+v", got, want)
	}
	again, err := Normalize(got)
	if err != nil || !reflect.DeepEqual(again, got) {
		t.Errorf("Normalize(Normalize(p)) = %+v, %v; want %+v", again, err, got)
	}
	got.Rules[0].Principals[0] = "changed"
	if in.Rules[0].Principals[1] != "CN=payments-api,O=acme" {
		t.Error("Normalize result shares memory with its input")
	}
	if p, err := Normalize(nil); p != nil || err != nil {
		t.Errorf("Normalize(nil) = %v, %v; want nil, nil", p, err)
	}
	if _, err := Normalize(&api.Policy{}); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("Normalize(empty) error = %v, want ErrInvalidPolicy", err)
	}
}

func TestAllows(t *testing.T) {
	const owner = "CN=payments-api,O=acme"
	p := &api.Policy{Rules: []api.PolicyRule{
		rule([]string{"CN=payments-api,O=acme"}, api.ActionEncrypt, api.ActionDecrypt),
		rule([]string{"CN=reporting-*,O=acme"}, api.ActionDecrypt),
	}}
	anyone := &api.Policy{Rules: []api.PolicyRule{rule([]string{"*"}, api.ActionVerify)}}
	broken := &api.Policy{Rules: []api.PolicyRule{rule([]string{"CN=a;"}, api.ActionVerify), rule([]string{"CN=b"}, "nope")}}
	tests := []struct {
		name   string
		p      *api.Policy
		caller string
		action api.Action
		want   bool
	}{
		{"nil: owner encrypts", nil, owner, api.ActionEncrypt, true},
		{"nil: owner signs", nil, owner, api.ActionSign, true},
		{"nil: owner in another spelling", nil, "cn=payments-api, o=acme", api.ActionMAC, true},
		{"nil: someone else", nil, "CN=reporting-eu,O=acme", api.ActionDecrypt, false},
		{"nil: unknown action", nil, owner, "export", false},
		{"nil: malformed caller", nil, "garbage", api.ActionEncrypt, false},
		{"rule 1", p, owner, api.ActionEncrypt, true},
		{"rule 1 lacks sign", p, owner, api.ActionSign, false},
		{"rule 2 by pattern", p, "CN=reporting-eu,O=acme", api.ActionDecrypt, true},
		{"rule 2 lacks encrypt", p, "CN=reporting-eu,O=acme", api.ActionEncrypt, false},
		{"pattern does not cross rdns", p, "CN=reporting-eu,OU=x,O=acme", api.ActionDecrypt, false},
		{"other tenant", p, "CN=reporting-eu,O=evil", api.ActionDecrypt, false},
		{"star: anyone verifies", anyone, "CN=x,O=y", api.ActionVerify, true},
		{"star: nobody signs", anyone, "CN=x,O=y", api.ActionSign, false},
		{"star: owner has no implicit rights", anyone, owner, api.ActionSign, false},
		{"malformed rules allow nothing", broken, "CN=b", "nope", false},
		{"empty policy allows nobody", &api.Policy{}, owner, api.ActionEncrypt, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Allows(tt.p, owner, tt.caller, tt.action); got != tt.want {
				t.Errorf("Allows(%q, %q) = %v, want %v", tt.caller, tt.action, got, tt.want)
			}
			checkAllowedActions(t, tt.p, owner, tt.caller)
		})
	}
}

// everyAction is every action, an unknown one and a repeat.
var everyAction = []api.Action{api.ActionEncrypt, api.ActionDecrypt, api.ActionSign, api.ActionVerify, api.ActionMAC, "export", api.ActionDecrypt}

// checkAllowedActions fails t unless AllowedActions is Allows asked for
// each action in turn.
func checkAllowedActions(t *testing.T, p *api.Policy, owner, caller string) {
	t.Helper()
	var want []api.Action
	for _, a := range everyAction {
		if Allows(p, owner, caller, a) {
			want = append(want, a)
		}
	}
	if got := AllowedActions(p, owner, caller, everyAction); !slices.Equal(got, want) {
		t.Errorf("AllowedActions(%q) = %v; Allows allows %v", caller, got, want)
	}
}

func TestReleasable(t *testing.T) {
	const owner = "CN=payments-api,O=acme"
	p := &api.Policy{Rules: []api.PolicyRule{
		rule([]string{"CN=reporting-*,O=acme"}, api.ActionDecrypt),
		rule([]string{"CN=noop,O=acme"}, "unknown"),
	}}
	tests := []struct {
		name   string
		p      *api.Policy
		caller string
		want   bool
	}{
		{"nil: owner", nil, owner, true},
		{"nil: owner, other spelling", nil, " CN = payments-api , O = acme ", true},
		{"nil: other", nil, "CN=reporting-eu,O=acme", false},
		{"nil: malformed owner", nil, owner + ";", false},
		{"principal by pattern", p, "CN=reporting-eu,O=acme", true},
		{"owner not named", p, owner, false},
		{"rule without a known action", p, "CN=noop,O=acme", false},
		{"stranger", p, "CN=x,O=acme", false},
		{"malformed caller", p, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Releasable(tt.p, owner, tt.caller); got != tt.want {
				t.Errorf("Releasable(%q) = %v, want %v", tt.caller, got, tt.want)
			}
		})
	}
}

func TestNormalizeLimits(t *testing.T) {
	ok := []api.PolicyRule{rule([]string{"CN=a"}, api.ActionEncrypt)}
	in := &api.Policy{Rules: ok, Limits: &api.UsageLimits{MaxOperations: 7, MaxBytes: 1024}}
	got, err := Normalize(in)
	if err != nil {
		t.Fatalf("Normalize() error %v", err)
	}
	if got.Limits == nil || *got.Limits != *in.Limits {
		t.Fatalf("Normalize().Limits = %+v, want %+v", got.Limits, in.Limits)
	}
	got.Limits.MaxOperations = 99
	if in.Limits.MaxOperations != 7 {
		t.Error("Normalize result shares its limits with its input")
	}
	if l := Limits(got); l.MaxOperations != 99 || l.MaxBytes != 1024 {
		t.Errorf("Limits() = %+v", l)
	}
	zero, err := Normalize(&api.Policy{Rules: ok, Limits: &api.UsageLimits{}})
	if err != nil || zero.Limits != nil {
		t.Errorf("Normalize(zero limits) = %+v, %v; want the limits dropped", zero, err)
	}
	if l := Limits(nil); l != (api.UsageLimits{}) {
		t.Errorf("Limits(nil) = %+v, want zero", l)
	}
}
