package policy

import (
	"errors"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, dn string
		want        bool
	}{
		{"CN=payments-api,O=acme", "CN=payments-api,O=acme", true},
		{"CN=payments-api,O=acme", "cn = payments-api, o = acme", true},
		{"cn=payments-api,o=acme", "CN=payments-api,O=acme", true},
		{"CN=payments-api,O=acme", "CN=Payments-api,O=acme", false},
		{"CN=payments-api,O=acme", "CN=payments-api,O=acme2", false},
		{"CN=payments-api,O=acme", "CN=payments-api", false},
		{"CN=payments-api", "CN=payments-api,O=acme", false},
		{"CN=reporting-*,O=acme", "CN=reporting-eu,O=acme", true},
		{"CN=reporting-*,O=acme", "CN=reporting-,O=acme", true},
		{"CN=reporting-*,O=acme", "CN=reporting-eu,OU=x,O=acme", false},
		{"CN=reporting-*,O=acme", "CN=reporting-eu\\,OU=x,O=acme", true}, // the comma is inside the value
		{"CN=reporting-*,O=acme", "CN=reporting-eu+OU=x,O=acme", false},
		{"CN=reporting-*,O=acme", "CN=reportingeu,O=acme", false},
		{"CN=*,O=acme", "CN=anything at all,O=acme", true},
		{"CN=*,O=acme", "OU=x,O=acme", false},
		{"CN=*-api,O=*", "CN=payments-api,O=acme", true},
		{"CN=*-api,O=*", "CN=payments-apix,O=acme", false},
		{"CN=a*b*c,O=x", "CN=abc,O=x", true},
		{"CN=a*b*c,O=x", "CN=aXbYc,O=x", true},
		{"CN=a*b*c,O=x", "CN=acb,O=x", false},
		{"CN=ab*ba,O=x", "CN=aba,O=x", false}, // prefix and suffix may not overlap
		{"CN=ab*ba,O=x", "CN=abba,O=x", true},
		{"CN=a**b", "CN=ab", true},
		{"CN=*ë*", "CN=Zoë", true},
		{`CN=a\*b`, "CN=a*b", true},
		{`CN=a\*b`, "CN=aXb", false},
		{`CN=a\2ab`, "CN=aXb", false},
		{"CN=a*b", "CN=a*b", true},
		{"CN=x+OU=*", "OU=y+CN=x", true},
		{"OU=*+OU=b", "OU=b+OU=a", true}, // needs the b↔b, *↔a assignment
		{"OU=b+OU=*", "OU=a+OU=c", false},
		{"*", "CN=anything,OU=x,O=y", true},
		{"*", "not a dn", false},
		{" * ", "CN=a", true},
		{"CN=a,*", "CN=a,O=b", false}, // "*" alone is only a whole pattern
		{"CN=#0c0161", "CN=a", true},
		{"1.2.3=#0201ff", "1.2.3=#0201FF", true},
		{"1.2.3=*", "1.2.3=#0201ff", false}, // wildcards match strings only
		{"not a pattern", "CN=a", false},
		{"CN=a", "", false},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.dn); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.dn, got, tt.want)
		}
	}
}

func TestNormalizePattern(t *testing.T) {
	tests := []struct{ in, want string }{
		{"cn=reporting-* , o=acme", "CN=reporting-*,O=acme"},
		{"CN=a**b", "CN=a*b"},
		{"CN=***", "CN=*"},
		{`CN=a\*b`, `CN=a\*b`},
		{`CN=a\2Ab`, `CN=a\*b`},
		{"CN=* x", "CN=* x"},
		{"CN=x * ", "CN=x *"},
		{`CN=\ *`, `CN=\ *`},
		{"  *  ", "*"},
		{"OU=b+OU=*", "OU=*+OU=b"},
	}
	for _, tt := range tests {
		got, err := NormalizePattern(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizePattern(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			continue
		}
		if again, err := NormalizePattern(got); err != nil || again != got {
			t.Errorf("NormalizePattern(%q) = %q, %v; want it unchanged", got, again, err)
		}
	}
	for _, in := range []string{"", "CN=a,*", "**", "CN=a*b;"} {
		if got, err := NormalizePattern(in); !errors.Is(err, ErrInvalidDN) {
			t.Errorf("NormalizePattern(%q) = %q, %v; want ErrInvalidDN", in, got, err)
		}
	}
}
