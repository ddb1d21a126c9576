package policy

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestNormalizeDN(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "CN=payments-api,O=acme", "CN=payments-api,O=acme"},
		{"lower-case types", "cn=payments-api,o=acme", "CN=payments-api,O=acme"},
		{"long names", "commonName=a,organizationalUnitName=b,organizationName=c", "CN=a,OU=b,O=c"},
		{"spaces around separators", "  CN = a b ,  O= acme  ", "CN=a b,O=acme"},
		{"values are case-sensitive", "CN=Payments,O=ACME", "CN=Payments,O=ACME"},
		{"dotted known oid", "2.5.4.3=a,2.5.4.10=b", "CN=a,O=b"},
		{"dotted unknown oid", "1.2.840.113549.1.9.1=x@y,O=a", "1.2.840.113549.1.9.1=x@y,O=a"},
		{"dc and uid", "uid=jd,dc=example,DC=com", "UID=jd,DC=example,DC=com"},
		{"escaped comma", `CN=a\,b,O=c`, `CN=a\,b,O=c`},
		{"escaped plus", `CN=a\+b`, `CN=a\+b`},
		{"escaped quote", `CN=a\"b`, `CN=a\"b`},
		{"escaped backslash", `CN=a\\b`, `CN=a\\b`},
		{"escaped angles", `CN=\<a\>`, `CN=\<a\>`},
		{"escaped semicolon", `CN=a\;b`, `CN=a\;b`},
		{"escaped equals is not re-escaped", `CN=a\=b`, `CN=a=b`},
		{"unescaped equals in value", `CN=a=b`, `CN=a=b`},
		{"leading hash", `CN=\#a`, `CN=\#a`},
		{"inner hash", `CN=a#b`, `CN=a#b`},
		{"escaped leading and trailing space", `CN=\ a\ `, `CN=\ a\ `},
		{"escaped trailing space at end of DN", `CN=a\ `, `CN=a\ `},
		{"inner spaces kept", `CN=a  b`, `CN=a  b`},
		{"hex pair escapes", `CN=caf\c3\a9,O=\41cme`, "CN=café,O=Acme"},
		{"hex pair of a special", `CN=a\2cb`, `CN=a\,b`},
		{"hex pair space at end", `CN=a\20`, `CN=a\ `},
		{"utf-8 kept", "CN=Zoë,O=ünï", "CN=Zoë,O=ünï"},
		{"escaped star is a plain star", `CN=a\*b`, `CN=a*b`},
		{"star is a plain character", `CN=a*b`, `CN=a*b`},
		{"empty value", "CN=,O=a", "CN=,O=a"},
		{"hex utf8string", "CN=#0c03616263", "CN=abc"},
		{"hex upper case", "CN=#0C03616263", "CN=abc"},
		{"hex ia5string oid", "0.9.2342.19200300.100.1.25=#1603616377", "DC=acw"},
		{"hex non-string kept", "1.2.3.4=#0201ff", "1.2.3.4=#0201ff"},
		{"hex then spaces", "CN=#0c0161 , O=b", "CN=a,O=b"},
		{"multi-valued rdn sorted", "OU=b+CN=z+OU=a,O=x", "CN=z+OU=a+OU=b,O=x"},
		{"rdn order kept", "O=acme,CN=a", "O=acme,CN=a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeDN(tt.in)
			if err != nil {
				t.Fatalf("NormalizeDN(%q) error %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("NormalizeDN(%q) = %q, want %q", tt.in, got, tt.want)
			}
			again, err := NormalizeDN(got)
			if err != nil || again != got {
				t.Errorf("NormalizeDN(%q) = %q, %v; want it unchanged", got, again, err)
			}
		})
	}
}

func TestNormalizeDNInvalid(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"spaces", "   "},
		{"no equals", "CN"},
		{"no type", "=a"},
		{"unknown descriptor", "CM=a"},
		{"bad oid leading zero", "2.05.4=a"},
		{"bad oid single arc", "2=a"},
		{"bad oid letters", "2.5.x=a"},
		{"trailing comma", "CN=a,"},
		{"leading comma", ",CN=a"},
		{"trailing plus", "CN=a+"},
		{"double comma", "CN=a,,O=b"},
		{"unescaped quote", `CN=a"b`},
		{"unescaped semicolon", "CN=a;O=b"},
		{"unescaped angle", "CN=<a>"},
		{"lone backslash", `CN=a\`},
		{"bad escape", `CN=a\x`},
		{"half hex escape", `CN=a\4`},
		{"invalid utf-8 via escape", `CN=\ff`},
		{"invalid utf-8 raw", "CN=\xff"},
		{"nul escaped", `CN=a\00`},
		{"control character", "CN=a\tb"},
		{"bad hex", "CN=#zz"},
		{"odd hex", "CN=#0c0"},
		{"empty hex", "CN=#"},
		{"hex not ber", "CN=#0c05"},
		{"hex trailing bytes", "CN=#0c016100"},
		{"junk after hex", "CN=#0c0161 x"},
		{"hex string with control", "CN=#0c0109"},
		{"repeated pair in rdn", "CN=a+CN=a"},
		{"bare star is not a DN", "*"},
		{"too long", "CN=" + strings.Repeat("a", MaxDNLen)},
		{"too many pairs", "CN=a" + strings.Repeat("+1.2.3=b", MaxRDNPairs)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeDN(tt.in)
			if !errors.Is(err, ErrInvalidDN) {
				t.Errorf("NormalizeDN(%q) = %q, %v; want ErrInvalidDN", tt.in, got, err)
			}
		})
	}
}

// TestNormalizeDNAgreesWithPKIX pins that the names the CA issues normalize
// the same whether written by hand or rendered by crypto/x509/pkix.
func TestNormalizeDNAgreesWithPKIX(t *testing.T) {
	oidDC := asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	tests := []struct {
		name string
		pkix pkix.Name
		hand string
	}{
		{"app", pkix.Name{CommonName: "payments-api", Organization: []string{"acme"}}, "CN=payments-api,O=acme"},
		{"instance", pkix.Name{CommonName: "i-0123", OrganizationalUnit: []string{"sidecar"}, Organization: []string{"acme"}}, "cn=i-0123, ou=sidecar, o=acme"},
		{"specials", pkix.Name{CommonName: ` a,b+c"d\e<f>g;h#`, Organization: []string{"#x "}}, `CN=\ a\,b\+c\"d\\e\<f\>g\;h#,O=\#x\ `},
		{"unicode", pkix.Name{CommonName: "Zoë", Organization: []string{"Ünï Corp"}}, `CN=Zo\c3\ab,O=Ünï Corp`},
		{"admin", pkix.Name{CommonName: "admin"}, "CN=admin"},
		{"multi-valued", pkix.Name{CommonName: "a", Organization: []string{"y", "x"}}, "CN=a,O=x+O=y"},
		{"full", pkix.Name{CommonName: "a", Country: []string{"FR"}, Province: []string{"IDF"}, Locality: []string{"Paris"}, StreetAddress: []string{"1 rue"}, PostalCode: []string{"75001"}, SerialNumber: "42", OrganizationalUnit: []string{"ops"}, Organization: []string{"acme"}},
			"SERIALNUMBER=42,CN=a,OU=ops,O=acme,POSTALCODE=75001,STREET=1 rue,L=Paris,ST=IDF,C=FR"},
		{"dc extra name", pkix.Name{CommonName: "a", ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidDC, Value: "acme"}}}, "DC=acme,CN=a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.pkix.String()
			got, err := NormalizeDN(s)
			if err != nil {
				t.Fatalf("NormalizeDN(%q) error %v", s, err)
			}
			want, err := NormalizeDN(tt.hand)
			if err != nil {
				t.Fatalf("NormalizeDN(%q) error %v", tt.hand, err)
			}
			if got != want {
				t.Errorf("NormalizeDN(%q) = %q, want %q (from %q)", s, got, want, tt.hand)
			}
		})
	}
}

// TestParseMemoBounded: the memo of parsed DNs stays within maxParsed
// entries however many distinct DNs are parsed, and answers right after
// it was emptied.
func TestParseMemoBounded(t *testing.T) {
	for i := range maxParsed + 100 {
		dn := fmt.Sprintf("CN=app-%d,O=acme", i)
		if got, err := NormalizeDN(dn); err != nil || got != dn {
			t.Fatalf("NormalizeDN(%q) = %q, %v", dn, got, err)
		}
		if n := parsedCount.Load(); n > maxParsed {
			t.Fatalf("memo holds %d entries after %d DNs, bound %d", n, i+1, maxParsed)
		}
	}
	entries := 0
	parsed.Range(func(any, any) bool { entries++; return true })
	if entries > maxParsed {
		t.Errorf("memo holds %d entries, bound %d", entries, maxParsed)
	}
	if !Match("CN=app-*,O=acme", "CN=app-1,O=acme") || Match("CN=app-*,O=acme", "CN=app-1,O=evil") {
		t.Error("Match answers wrongly after the memo was emptied")
	}
}
