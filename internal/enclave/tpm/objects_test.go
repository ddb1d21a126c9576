package tpm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseObject: a key blob read from disk never panics the parser, and
// what parses marshals back to the same bytes.
func FuzzParseObject(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{objectVersion})
	f.Add([]byte{objectVersion, 0, 0, 0, 0})
	f.Add([]byte{objectVersion, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := parseObject(b)
		if err != nil {
			return
		}
		if got := o.marshal(); !bytes.Equal(got, b) {
			t.Errorf("marshal(parseObject(%x)) = %x", b, got)
		}
	})
}

func TestParseObjectRoundTrip(t *testing.T) {
	e := openEnclave(t, "")
	if _, err := e.IdentityKey(t.Context()); err != nil {
		t.Fatalf("IdentityKey() = %v", err)
	}
	b, err := os.ReadFile(filepath.Join(e.dir, identityFile))
	if err != nil {
		t.Fatal(err)
	}
	o, err := parseObject(b)
	if err != nil {
		t.Fatalf("parseObject() = %v", err)
	}
	if !bytes.Equal(o.marshal(), b) {
		t.Error("marshal(parseObject(b)) != b")
	}
	for i := range len(b) - 1 {
		if _, err := parseObject(b[:i]); err == nil {
			t.Errorf("parseObject(first %d bytes) = nil error", i)
		}
	}
	if _, err := parseObject(append(bytes.Clone(b), 0)); err == nil {
		t.Error("parseObject(with a trailing byte) = nil error")
	}
}
