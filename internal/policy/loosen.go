package policy

import "github.com/dcaas/dcaas/api"

// allActions are the actions a key without a policy allows its owner.
var allActions = []api.Action{api.ActionEncrypt, api.ActionDecrypt, api.ActionSign, api.ActionVerify, api.ActionMAC}

// grant is one (principal pattern, action) pair a policy allows.
type grant struct {
	pat    dn
	action api.Action
}

// Loosens reports whether replacing the key policy old with next, for a key
// owned by owner, allows something old did not: some principal may perform
// some action (and so be released the key) that old refused, or a usage
// limit of old is raised or removed. A change that loosens nothing
// (tightening, reordering, restating) is false. Quorum approvals gate the
// changes it reports (issue 16).
//
// It is conservative: a pair of next is covered only by a pair of old with
// the same action whose pattern is "*", equals next's pattern (canonical
// form), or matches next's principal when that principal has no
// wildcard. A wildcard pattern that is narrower than an old one without
// being equal to it counts as loosening, as does anything that does not
// parse (an owner, a pattern, an unknown action). nil means the owner-only
// default, as in Allows.
func Loosens(old, next *api.Policy, owner string) bool {
	was, ok := grantsOf(old, owner)
	if !ok {
		return true
	}
	now, ok := grantsOf(next, owner)
	if !ok {
		return true
	}
	for _, g := range now {
		covered := false
		for _, o := range was {
			if o.action == g.action && covers(o.pat, g.pat) {
				covered = true
				break
			}
		}
		if !covered {
			return true
		}
	}
	return limitsLoosen(Limits(old), Limits(next))
}

// grantsOf lists the pairs p allows; false when something does not parse.
func grantsOf(p *api.Policy, owner string) ([]grant, bool) {
	if p == nil {
		o, err := parse(owner, false)
		if err != nil {
			return nil, false
		}
		out := make([]grant, len(allActions))
		for i, a := range allActions {
			out[i] = grant{o, a}
		}
		return out, true
	}
	var out []grant
	for _, r := range p.Rules {
		for _, s := range r.Principals {
			pat, err := parse(s, true)
			if err != nil {
				return nil, false
			}
			for _, a := range r.Actions {
				if !a.Valid() {
					return nil, false
				}
				out = append(out, grant{pat, a})
			}
		}
	}
	return out, true
}

// covers reports whether every DN the pattern p matches is matched by q,
// conservatively (see Loosens).
func covers(q, p dn) bool {
	switch {
	case q.any:
		return true
	case p.any:
		return false
	case !hasWildcard(p):
		return q.matches(p)
	}
	return q.String(true) == p.String(true)
}

func hasWildcard(p dn) bool {
	for _, r := range p.rdns {
		for _, a := range r {
			if len(a.parts) > 1 {
				return true
			}
		}
	}
	return false
}

// limitsLoosen reports whether next raises or removes a limit of old (0
// is no limit).
func limitsLoosen(old, next api.UsageLimits) bool {
	looser := func(o, n int64) bool { return o > 0 && (n <= 0 || n > o) }
	return looser(old.MaxLeaseSeconds, next.MaxLeaseSeconds) ||
		looser(old.MaxOperations, next.MaxOperations) ||
		looser(old.MaxBytes, next.MaxBytes)
}
