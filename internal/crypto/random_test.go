package crypto

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

func TestRandom(t *testing.T) {
	for _, n := range []int{0, 1, 32, 1000} {
		if b := Random(n); len(b) != n {
			t.Errorf("Random(%d): %d bytes", n, len(b))
		}
	}
	if bytes.Equal(Random(32), Random(32)) {
		t.Error("Random(32) repeated")
	}
}

func TestRandomID(t *testing.T) {
	seen := map[string]bool{}
	for _, prefix := range []string{"key_", "ins_", ""} {
		for range 100 {
			id := RandomID(prefix)
			rest, ok := strings.CutPrefix(id, prefix)
			if !ok || len(rest) != 26 || strings.Trim(rest, "abcdefghijklmnopqrstuvwxyz234567") != "" {
				t.Fatalf("RandomID(%q) = %q, want prefix + 26 lower-case base32 characters", prefix, id)
			}
			if seen[rest] {
				t.Fatalf("RandomID repeated %q", id)
			}
			seen[rest] = true
		}
	}
}

func TestNewToken(t *testing.T) {
	tok, hash := NewToken("dcet_")
	rest, ok := strings.CutPrefix(tok, "dcet_")
	if !ok {
		t.Fatalf("NewToken = %q, want prefix dcet_", tok)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(rest); err != nil || len(raw) != 32 {
		t.Errorf("NewToken body %q: %d bytes, %v; want 32 bytes of base64url", rest, len(raw), err)
	}
	if want := sha256.Sum256([]byte(tok)); !bytes.Equal(hash, want[:]) || !bytes.Equal(HashToken(tok), hash) {
		t.Errorf("NewToken hash = %x, want SHA-256 of the token", hash)
	}
	if tok2, _ := NewToken("dcet_"); tok2 == tok {
		t.Error("NewToken repeated")
	}
}

func TestHashToken(t *testing.T) {
	// FIPS 180-2 "abc".
	want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := HashToken("abc"); !bytes.Equal(got, mustHex(want)) {
		t.Errorf("HashToken(abc) = %x, want %s", got, want)
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		a, b []byte
		want bool
	}{
		{nil, nil, true},
		{[]byte{}, nil, true},
		{[]byte("abc"), []byte("abc"), true},
		{[]byte("abc"), []byte("abd"), false},
		{[]byte("abc"), []byte("ab"), false},
	}
	for _, tt := range tests {
		if got := Equal(tt.a, tt.b); got != tt.want {
			t.Errorf("Equal(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
