package kms

import (
	"encoding/hex"
	"regexp"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
)

// TestSymmetricTypes checks the one table of key types with a KCV: every
// type in it makes six upper-case hex digits from a key of its size and
// can be generated and checked like any key of its type; every other
// valid type is a signing type, which has no KCV.
func TestSymmetricTypes(t *testing.T) {
	sixHex := regexp.MustCompile(`^[0-9A-F]{6}$`)
	for _, typ := range []api.KeyType{api.KeyAES256GCM, api.KeyHMACSHA256, api.KeyAES256KBPK, api.KeyEd25519, api.KeyECDSAP256, api.KeyMLDSA65} {
		t.Run(string(typ), func(t *testing.T) {
			st, ok := symmetricTypes[typ]
			if ok == typ.Signing() {
				t.Fatalf("%s: in the table = %v, signing = %v; want exactly one", typ, ok, typ.Signing())
			}
			if typ == api.KeyMLDSA65 && kcrypto.FIPS() {
				t.Skip("ml-dsa-65 is not offered in FIPS mode")
			}
			material, err := kcrypto.GenerateKey(typ)
			if err != nil {
				t.Fatal(err)
			}
			defer material.Wipe()
			kcv, err := kcvOf(typ, material)
			if err != nil {
				t.Fatalf("kcvOf(%s) = %v", typ, err)
			}
			if !ok {
				if kcv != "" {
					t.Errorf("kcvOf(%s) = %q, want none", typ, kcv)
				}
				return
			}
			if !sixHex.MatchString(kcv) || material.Len() != st.size || !st.components || st.method == "" {
				t.Errorf("%s: kcv %q, size %d (material %d), components %v, method %q", typ, kcv, st.size, material.Len(), st.components, st.method)
			}
			comp, err := parseComponent(typ, hex.EncodeToString(material.Expose()))
			if err != nil || !comp.Equal(material) {
				t.Errorf("parseComponent of the key's hex = %v", err)
			}
		})
	}
}

func TestParseKCV(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"8f2a1c", "8F2A1C"}, {"8F2A1C", "8F2A1C"}, {"", ""}, {"8F2A1", ""}, {"8F2A1C0", ""}, {"8F2A1G", ""}, {" 8F2A1C", ""},
	} {
		got, err := parseKCV("kcv", tt.in)
		if tt.want == "" {
			if api.CodeOf(err) != api.CodeInvalidArgument {
				t.Errorf("parseKCV(%q) = %q, %v; want invalid_argument", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseKCV(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
