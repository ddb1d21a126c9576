// Package policy is dcaas's key-policy model: RFC 4514 distinguished names
// in canonical form (NormalizeDN), principal patterns (Match), checking
// and canonicalizing an api.Policy (Validate, Normalize), and the pure
// evaluator the KMS and the sidecar share (Allows, Releasable).
//
// Start with Allows. A key without a policy (nil) allows its owner every
// action and nobody else. A key with a policy allows exactly what its
// rules say: the owner has no implicit rights then.
//
// Nothing here does I/O or keeps state; every function is safe for
// concurrent use.
package policy

import (
	"errors"
	"fmt"
	"slices"

	"github.com/dcaas/dcaas/api"
)

// ErrInvalidPolicy is wrapped by every error Validate and Normalize return;
// the message names what is wrong.
var ErrInvalidPolicy = errors.New("policy: invalid key policy")

// Size limits of a policy.
const (
	MaxRules         = 64   // rules per policy
	MaxPrincipals    = 64   // principals per rule
	MaxActions       = 64   // actions per rule
	MaxPrincipalSize = 1024 // bytes per principal pattern, as written
	// MaxLeaseSeconds is the largest limits.max_lease_seconds: ten years.
	MaxLeaseSeconds = 10 * 365 * 24 * 60 * 60
)

// Validate checks p: at least one and at most MaxRules rules, each with
// 1..MaxPrincipals valid principal patterns of at most MaxPrincipalSize
// bytes and 1..MaxActions known actions, with no principal (compared in
// canonical form) or action named twice in one rule. A nil p is valid (the
// owner-only default); a non-nil p without rules is not. Errors wrap
// ErrInvalidPolicy, and ErrInvalidDN for a bad principal. Limits, if
// present, must not be negative, and max_lease_seconds at most
// MaxLeaseSeconds.
func Validate(p *api.Policy) error {
	_, err := normalize(p)
	return err
}

// Normalize validates p as Validate does and returns a canonical copy:
// principals in canonical pattern form (see NormalizePattern) and sorted,
// actions sorted; rule order is kept; limits that are all zero are
// dropped. Normalize(nil) is (nil, nil). The result shares nothing with p.
func Normalize(p *api.Policy) (*api.Policy, error) {
	return normalize(p)
}

func normalize(p *api.Policy) (*api.Policy, error) {
	if p == nil {
		return nil, nil
	}
	switch {
	case len(p.Rules) == 0:
		return nil, fmt.Errorf("%w: it has no rules (omit the policy for owner-only access)", ErrInvalidPolicy)
	case len(p.Rules) > MaxRules:
		return nil, fmt.Errorf("%w: it has %d rules, more than %d", ErrInvalidPolicy, len(p.Rules), MaxRules)
	}
	out := &api.Policy{Rules: make([]api.PolicyRule, len(p.Rules))}
	for i, r := range p.Rules {
		nr, err := normalizeRule(r)
		if err != nil {
			return nil, fmt.Errorf("%w: rule %d %w", ErrInvalidPolicy, i+1, err)
		}
		out.Rules[i] = nr
	}
	if l := p.Limits; l != nil {
		switch {
		case l.MaxLeaseSeconds < 0 || l.MaxOperations < 0 || l.MaxBytes < 0:
			return nil, fmt.Errorf("%w: limits must not be negative (0 or absent means no limit)", ErrInvalidPolicy)
		case l.MaxLeaseSeconds > MaxLeaseSeconds:
			return nil, fmt.Errorf("%w: limits.max_lease_seconds is over %d (ten years)", ErrInvalidPolicy, MaxLeaseSeconds)
		}
		if *l != (api.UsageLimits{}) {
			c := *l
			out.Limits = &c
		}
	}
	rel, err := normalizeRelease(p.Release)
	if err != nil {
		return nil, err
	}
	out.Release = rel
	return out, nil
}

// Limits returns the usage limits of p (all zero when p or its limits are
// nil).
func Limits(p *api.Policy) api.UsageLimits {
	if p == nil || p.Limits == nil {
		return api.UsageLimits{}
	}
	return *p.Limits
}

// normalizeRule's errors complete the sentence "rule N …".
func normalizeRule(r api.PolicyRule) (api.PolicyRule, error) {
	switch {
	case len(r.Principals) == 0:
		return api.PolicyRule{}, errors.New("has no principals")
	case len(r.Principals) > MaxPrincipals:
		return api.PolicyRule{}, fmt.Errorf("has %d principals, more than %d", len(r.Principals), MaxPrincipals)
	case len(r.Actions) == 0:
		return api.PolicyRule{}, errors.New("has no actions")
	case len(r.Actions) > MaxActions:
		return api.PolicyRule{}, fmt.Errorf("has %d actions, more than %d", len(r.Actions), MaxActions)
	}
	out := api.PolicyRule{
		Principals: make([]string, 0, len(r.Principals)),
		Actions:    make([]api.Action, 0, len(r.Actions)),
	}
	for _, s := range r.Principals {
		if len(s) > MaxPrincipalSize {
			return api.PolicyRule{}, fmt.Errorf("has a principal longer than %d bytes", MaxPrincipalSize)
		}
		n, err := NormalizePattern(s)
		if err != nil {
			return api.PolicyRule{}, fmt.Errorf("principal %q: %w", s, err)
		}
		if slices.Contains(out.Principals, n) {
			return api.PolicyRule{}, fmt.Errorf("names principal %q twice", n)
		}
		out.Principals = append(out.Principals, n)
	}
	for _, a := range r.Actions {
		if !a.Valid() {
			return api.PolicyRule{}, fmt.Errorf("has unknown action %q", a)
		}
		if slices.Contains(out.Actions, a) {
			return api.PolicyRule{}, fmt.Errorf("names action %q twice", a)
		}
		out.Actions = append(out.Actions, a)
	}
	slices.Sort(out.Principals)
	slices.Sort(out.Actions)
	return out, nil
}

// Allows reports whether callerDN may perform action with a key owned by
// owner under p. With p nil only the owner may, and may do everything;
// otherwise some rule must both name action and have a principal matching
// callerDN. Owner and caller are compared in canonical form; anything
// malformed (a DN, a pattern, an unknown action) allows nothing.
func Allows(p *api.Policy, owner, callerDN string, action api.Action) bool {
	if !action.Valid() {
		return false
	}
	return evaluate(p, owner, callerDN, func(r api.PolicyRule) bool {
		return slices.Contains(r.Actions, action)
	})
}

// AllowedActions returns the actions of actions that Allows(p, owner,
// callerDN, action) allows, in their order, parsing each DN once (Allows
// parses the caller and the principals on every call; a sidecar asks for
// every action of each key it loads).
func AllowedActions(p *api.Policy, owner, callerDN string, actions []api.Action) []api.Action {
	c, err := parse(callerDN, false)
	if err != nil {
		return nil
	}
	invalid := func(a api.Action) bool { return !a.Valid() }
	if p == nil {
		if !sameDN(owner, callerDN) {
			return nil
		}
		return slices.DeleteFunc(slices.Clone(actions), invalid)
	}
	allowed := make([]bool, len(actions))
	for _, r := range p.Rules {
		wanted := false
		for i, a := range actions {
			wanted = wanted || !allowed[i] && a.Valid() && slices.Contains(r.Actions, a)
		}
		if !wanted || !slices.ContainsFunc(r.Principals, func(s string) bool {
			pat, err := parse(s, true)
			return err == nil && pat.matches(c)
		}) {
			continue
		}
		for i, a := range actions {
			allowed[i] = allowed[i] || a.Valid() && slices.Contains(r.Actions, a)
		}
	}
	var out []api.Action
	for i, a := range actions {
		if allowed[i] {
			out = append(out, a)
		}
	}
	return out
}

// Releasable reports whether the KMS may release the key (load, derive,
// rewrap) to a sidecar bound to callerDN: callerDN is a principal of a
// rule that allows at least one known action, or p is nil and callerDN is
// the owner. Malformed input releases nothing.
func Releasable(p *api.Policy, owner, callerDN string) bool {
	return evaluate(p, owner, callerDN, func(r api.PolicyRule) bool {
		return slices.ContainsFunc(r.Actions, api.Action.Valid)
	})
}

// evaluate is true when p is nil and caller is owner, or when some rule
// accepted by ruleOK has a principal matching caller.
func evaluate(p *api.Policy, owner, caller string, ruleOK func(api.PolicyRule) bool) bool {
	c, err := parse(caller, false)
	if err != nil {
		return false
	}
	if p == nil {
		return sameDN(owner, caller)
	}
	for _, r := range p.Rules {
		if !ruleOK(r) {
			continue
		}
		for _, s := range r.Principals {
			if pat, err := parse(s, true); err == nil && pat.matches(c) {
				return true
			}
		}
	}
	return false
}
