package transit

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// Vectors of the "vault:v<N>:<base64>" form: what FormatValue writes for a
// version and payload, and what ParseValue refuses.
func TestValueVectors(t *testing.T) {
	for _, tc := range []struct {
		version int
		payload []byte
		want    string
	}{
		{1, []byte("hello"), "vault:v1:aGVsbG8="},
		{2, []byte{0}, "vault:v2:AA=="},
		{10, []byte{0xff, 0xfe, 0xfd}, "vault:v10://79"},
		{4294967295, []byte("x"), "vault:v4294967295:eA=="},
	} {
		if got := FormatValue(tc.version, tc.payload); got != tc.want {
			t.Errorf("FormatValue(%d, %x) = %q, want %q", tc.version, tc.payload, got, tc.want)
		}
		v, p, err := ParseValue(tc.want)
		if err != nil || v != tc.version || !bytes.Equal(p, tc.payload) {
			t.Errorf("ParseValue(%q) = %d, %x, %v; want %d, %x", tc.want, v, p, err, tc.version, tc.payload)
		}
	}
	for _, bad := range []string{
		"", "vault:", "vault:v", "vault:v1", "vault:v1:", "vault:1:aGk=", "VAULT:v1:aGk=", "v1:aGk=",
		"vault:v0:aGk=", "vault:v01:aGk=", "vault:v+1:aGk=", "vault:v-1:aGk=", "vault:v 1:aGk=",
		"vault:v4294967296:aGk=", "vault:v99999999999:aGk=", "vault:vx:aGk=",
		"vault:v1:aGk", "vault:v1:aGk=\n", "vault:v1:aG\nk=", "vault:v1:aGl=", "vault:v1:a-_=", "vault:v1:aGk=:x",
	} {
		if _, _, err := ParseValue(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseValue(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

// FuzzParseValue: ParseValue never panics, refuses with ErrMalformed, and
// accepts only canonical values: formatting what it parsed gives back the
// input exactly.
func FuzzParseValue(f *testing.F) {
	for _, s := range []string{"vault:v1:aGVsbG8=", "vault:v4294967295:eA==", "vault:v01:aGk=", "vault:v1:aGk", "vault:v1:aG\nk=", "vault:v1:aGl="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, p, err := ParseValue(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseValue(%q) = %v, not ErrMalformed", s, err)
			}
			return
		}
		if v < 1 || len(p) == 0 {
			t.Fatalf("ParseValue(%q) = %d, %x: out of range", s, v, p)
		}
		if back := FormatValue(v, p); back != s {
			t.Fatalf("FormatValue(ParseValue(%q)) = %q", s, back)
		}
		if !strings.HasPrefix(s, valuePrefix) {
			t.Fatalf("ParseValue accepted %q without the prefix", s)
		}
	})
}
