package policy

import "strings"

// A principal pattern is a DN in which an unescaped "*" inside an attribute
// value matches any run of characters (possibly empty) within that one
// value; it never crosses a "," or "+" boundary, so "CN=reporting-*,O=acme"
// matches "CN=reporting-eu,O=acme" but not "CN=reporting-eu,OU=x,O=acme".
// "\*" is a literal star. The whole pattern "*" matches every valid DN: it
// is accepted only when written out like that, never produced by defaults.
// Attribute types match case-insensitively (they are normalized); values
// match exactly, case included.

// NormalizePattern returns the canonical form of a principal pattern: as
// NormalizeDN, with wildcards kept as bare "*", runs of them collapsed to
// one, and literal stars written "\*". Errors wrap ErrInvalidDN.
func NormalizePattern(s string) (string, error) {
	r := parseMemo(s, true)
	return r.canonical, r.err
}

// Match reports whether the DN dn matches the principal pattern. It is
// false when either does not parse: a malformed pattern matches nothing,
// and nothing matches a malformed DN.
func Match(pattern, dn string) bool {
	p, err := parse(pattern, true)
	if err != nil {
		return false
	}
	d, err := parse(dn, false)
	if err != nil {
		return false
	}
	return p.matches(d)
}

// matches reports whether the pattern p matches the DN d.
func (p dn) matches(d dn) bool {
	if p.any {
		return true
	}
	if len(p.rdns) != len(d.rdns) {
		return false
	}
	for i := range p.rdns {
		if !matchRDN(p.rdns[i], d.rdns[i]) {
			return false
		}
	}
	return true
}

// matchRDN reports whether every pair of the pattern RDN p can be matched
// with a different pair of d (a perfect bipartite matching, found with
// augmenting paths; RDNs hold a handful of pairs).
func matchRDN(p, d rdn) bool {
	if len(p) != len(d) {
		return false
	}
	owner := make([]int, len(d)) // owner[j] = index in p matched to d[j], or -1
	for j := range owner {
		owner[j] = -1
	}
	var try func(i int, seen []bool) bool
	try = func(i int, seen []bool) bool {
		for j := range d {
			if seen[j] || !matchAVA(p[i], d[j]) {
				continue
			}
			seen[j] = true
			if owner[j] < 0 || try(owner[j], seen) {
				owner[j] = i
				return true
			}
		}
		return false
	}
	for i := range p {
		if !try(i, make([]bool, len(d))) {
			return false
		}
	}
	return true
}

// matchAVA matches one pattern pair against one DN pair.
func matchAVA(p, d ava) bool {
	if p.typ != d.typ {
		return false
	}
	if p.hex != "" || d.hex != "" {
		return p.hex == d.hex
	}
	return glob(p.parts, d.parts[0])
}

// glob reports whether s is parts[0] + any + parts[1] + … + any +
// parts[n-1]. Both sides are valid UTF-8, so byte matching only ever
// matches at character boundaries.
func glob(parts []string, s string) bool {
	if len(parts) == 1 {
		return parts[0] == s
	}
	first, last := parts[0], parts[len(parts)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return true
}
