package policy

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// FuzzNormalizeDN checks that NormalizeDN never panics, fails only with
// ErrInvalidDN, and is idempotent.
func FuzzNormalizeDN(f *testing.F) {
	f.Add("CN=payments-api,O=acme")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeDN(s)
		// The memo answers as parsing afresh does.
		if d, perr := parseDN(s, false); (perr == nil) != (err == nil) || perr == nil && d.String(false) != n {
			t.Fatalf("NormalizeDN(%q) = %q, %v; parsing afresh: %q, %v", s, n, err, d.String(false), perr)
		}
		if _, perr := parseDN(s, true); (perr == nil) != (parseMemo(s, true).err == nil) {
			t.Fatalf("pattern %q: memo error %v, afresh %v", s, parseMemo(s, true).err, perr)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidDN) {
				t.Fatalf("NormalizeDN(%q) error %v, want ErrInvalidDN", s, err)
			}
			return
		}
		again, err := NormalizeDN(n)
		if err != nil || again != n {
			t.Fatalf("NormalizeDN(%q) = %q; NormalizeDN of that = %q, %v", s, n, again, err)
		}
		if !Match(n, s) {
			t.Fatalf("Match(%q, %q) = false; a wildcard-free canonical DN must match itself", n, s)
		}
		p, err := NormalizePattern(s)
		if err != nil {
			t.Fatalf("NormalizePattern(%q) error %v for a valid DN", s, err)
		}
		if again, err := NormalizePattern(p); err != nil || again != p {
			t.Fatalf("NormalizePattern(%q) = %q; NormalizePattern of that = %q, %v", s, p, again, err)
		}
	})
}

// FuzzMatch checks that Match never panics, does not depend on how the
// pattern and DN are spelled, and that a pattern matches the DN obtained
// by filling its wildcards.
func FuzzMatch(f *testing.F) {
	f.Add("CN=reporting-*,O=acme", "CN=reporting-eu,O=acme")
	f.Fuzz(func(t *testing.T, pattern, dn string) {
		got := Match(pattern, dn)
		p, perr := NormalizePattern(pattern)
		d, derr := NormalizeDN(dn)
		if perr != nil || derr != nil {
			if got {
				t.Fatalf("Match(%q, %q) = true with pattern error %v, DN error %v", pattern, dn, perr, derr)
			}
			return
		}
		if again := Match(p, d); again != got {
			t.Fatalf("Match(%q, %q) = %v but Match(%q, %q) = %v", pattern, dn, got, p, d, again)
		}
		if p == "*" {
			if !got {
				t.Fatalf("Match(%q, %q) = false", pattern, dn)
			}
			return
		}
		filled := fill(p, "x")
		if _, err := NormalizeDN(filled); err != nil {
			return // e.g. "CN=*+CN=x" fills to a repeated pair
		}
		if !Match(p, filled) {
			t.Fatalf("Match(%q, %q) = false; it fills the pattern's wildcards", p, filled)
		}
	})
}

// fill replaces the bare wildcards of a canonical pattern by s, and its
// literal stars "\*" by "*", giving a DN the pattern must match.
func fill(pattern, s string) string {
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '\\' && i+1 < len(pattern):
			if pattern[i+1] != '*' {
				b.WriteByte(c)
			}
			b.WriteByte(pattern[i+1])
			i++
		case c == '*':
			b.WriteString(s)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzPolicy: any JSON policy document either fails validation with
// ErrInvalidPolicy or normalizes to a policy that validates, normalizes to
// itself, and is evaluated without panics.
func FuzzPolicy(f *testing.F) {
	f.Add([]byte(`{"rules":[{"principals":["CN=payments-api,O=acme"],"actions":["encrypt","decrypt"]},{"principals":["CN=reporting-*,O=acme"],"actions":["decrypt"]}]}`))
	f.Add([]byte(`{"rules":[{"principals":["*"],"actions":["mac"]}],"limits":{"max_operations":5}}`))
	f.Add([]byte(`{"rules":[]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var p api.Policy
		if json.Unmarshal(doc, &p) != nil {
			return
		}
		n, err := Normalize(&p)
		if err != nil {
			if !errors.Is(err, ErrInvalidPolicy) && !errors.Is(err, ErrInvalidDN) {
				t.Fatalf("Normalize error %v is not the package's", err)
			}
			return
		}
		if err := Validate(n); err != nil {
			t.Fatalf("a normalized policy does not validate: %v", err)
		}
		again, err := Normalize(n)
		if err != nil || !reflect.DeepEqual(again, n) {
			t.Fatalf("Normalize is not idempotent: %+v → %+v (%v)", n, again, err)
		}
		checkAllowedActions(t, n, "CN=owner,O=acme", "CN=payments-api,O=acme")
		checkAllowedActions(t, &p, "CN=owner,O=acme", "CN=reporting-eu,O=acme") // not normalized
		Releasable(n, "CN=owner,O=acme", "CN=reporting-eu,O=acme")
	})
}
