package kms

import (
	"math/big"
	"strings"
	"testing"
)

func TestNormalizeSerial(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"3e713a2867dba78bee4d84984a049d43", "3e713a2867dba78bee4d84984a049d43", true},
		{"3E713A2867DBA78BEE4D84984A049D43", "3e713a2867dba78bee4d84984a049d43", true},
		{"00:3E:71:3A:28:67:DB:A7:8B:EE:4D:84:98:4A:04:9D:43", "3e713a2867dba78bee4d84984a049d43", true}, // openssl x509 -serial style
		{"0x0abc", "abc", true},
		{"  0a  ", "a", true},
		{"1", "1", true},
		{strings.Repeat("f", 40), strings.Repeat("f", 40), true},
		{strings.Repeat("f", 41), "", false},
		{"", "", false},
		{"0", "", false},
		{"00:00", "", false},
		{"0x", "", false},
		{"xyz", "", false},
		{"-1", "", false},
		{"+1", "", false},
		{"1 2", "", false},
		{"é", "", false},
	} {
		got, ok := normalizeSerial(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("normalizeSerial(%q) = %q, %t; want %q, %t", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzNormalizeSerial: never panics; what it accepts is a positive number
// of at most 20 octets in the registry's form (lower-case hex, no leading
// zero, as ca.SerialString writes), which normalizes to itself.
func FuzzNormalizeSerial(f *testing.F) {
	for _, s := range []string{"3e713a28", "00:3E:71", "0x0abc", "", "0", strings.Repeat("f", 41), "g", ":::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := normalizeSerial(s)
		if !ok {
			if got != "" {
				t.Fatalf("normalizeSerial(%q) refused but returned %q", s, got)
			}
			return
		}
		n, isHex := new(big.Int).SetString(got, 16)
		if !isHex || n.Sign() <= 0 || n.Text(16) != got || n.BitLen() > 160 {
			t.Fatalf("normalizeSerial(%q) = %q, not a canonical positive serial of at most 20 octets", s, got)
		}
		if again, ok := normalizeSerial(got); !ok || again != got {
			t.Fatalf("normalizeSerial(%q) = %q, %t; want it unchanged", got, again, ok)
		}
	})
}
