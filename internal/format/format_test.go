package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func u16(n int) []byte    { return binary.BigEndian.AppendUint16(nil, uint16(n)) }
func u32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
func cat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

// ekbBytes lays out an EKB by hand, independent of Marshal.
func ekbBytes(magic string, ver byte, tenant string, tmkv uint32, keyID string, kv uint32, md []byte, sealed []byte) []byte {
	return cat([]byte(magic), []byte{ver}, u16(len(tenant)), []byte(tenant), u32(tmkv), u16(len(keyID)), []byte(keyID),
		u32(kv), u32(uint32(len(md))), md, make([]byte, 32), sealed)
}

func TestParseEKB(t *testing.T) {
	sealed := make([]byte, MinSealedLen)
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"minimal", ekbBytes("DEKB", 1, "t", 1, "k", 1, nil, sealed), true},
		{"maximal", ekbBytes("DEKB", 1, strings.Repeat("t", 255), ^uint32(0), strings.Repeat("k", 128), ^uint32(0),
			make([]byte, MaxMetadataLen), make([]byte, MaxSealedLen)), true},
		{"empty", nil, false},
		{"magic only", []byte("DEKB"), false},
		{"bad magic", ekbBytes("DEKC", 1, "t", 1, "k", 1, nil, sealed), false},
		{"version 0", ekbBytes("DEKB", 0, "t", 1, "k", 1, nil, sealed), false},
		{"version 2", ekbBytes("DEKB", 2, "t", 1, "k", 1, nil, sealed), false},
		{"empty tenant", ekbBytes("DEKB", 1, "", 1, "k", 1, nil, sealed), false},
		{"long tenant", ekbBytes("DEKB", 1, strings.Repeat("t", 256), 1, "k", 1, nil, sealed), false},
		{"tenant not UTF-8", ekbBytes("DEKB", 1, "\xff", 1, "k", 1, nil, sealed), false},
		{"tmk version 0", ekbBytes("DEKB", 1, "t", 0, "k", 1, nil, sealed), false},
		{"empty key id", ekbBytes("DEKB", 1, "t", 1, "", 1, nil, sealed), false},
		{"long key id", ekbBytes("DEKB", 1, "t", 1, strings.Repeat("k", 129), 1, nil, sealed), false},
		{"key id not UTF-8", ekbBytes("DEKB", 1, "t", 1, "k\xc0", 1, nil, sealed), false},
		{"key version 0", ekbBytes("DEKB", 1, "t", 1, "k", 0, nil, sealed), false},
		{"long metadata", ekbBytes("DEKB", 1, "t", 1, "k", 1, make([]byte, MaxMetadataLen+1), sealed), false},
		{"sealed short", ekbBytes("DEKB", 1, "t", 1, "k", 1, nil, sealed[1:]), false},
		{"sealed long", ekbBytes("DEKB", 1, "t", 1, "k", 1, nil, make([]byte, MaxSealedLen+1)), false},
		{"no sealed", ekbBytes("DEKB", 1, "t", 1, "k", 1, nil, nil), false},
		{"metadata length past end", cat([]byte("DEKB\x01"), u16(1), []byte("t"), u32(1), u16(1), []byte("k"), u32(1), u32(60000), make([]byte, 100)), false},
		{"huge metadata length", cat([]byte("DEKB\x01"), u16(1), []byte("t"), u32(1), u16(1), []byte("k"), u32(1), u32(^uint32(0)), make([]byte, 100)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEKB(tt.in)
			if !tt.ok {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseEKB = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEKB = %v", err)
			}
			if got := e.Marshal(); !bytes.Equal(got, tt.in) {
				t.Errorf("Marshal(ParseEKB(b)) != b")
			}
			if err := e.Validate(); err != nil {
				t.Errorf("Validate = %v", err)
			}
			// Every truncation is malformed.
			for _, n := range []int{len(tt.in) - len(e.Sealed) + MinSealedLen - 1, len(tt.in) / 2, 5, 4, 0} {
				if _, err := ParseEKB(tt.in[:n]); !errors.Is(err, ErrMalformed) {
					t.Errorf("ParseEKB(b[:%d]) = %v, want ErrMalformed", n, err)
				}
			}
		})
	}
}

// wrappedBytes lays out a wrapped key by hand, independent of Marshal.
func wrappedBytes(magic string, ver byte, kem int, enc []byte, index uint32, ct []byte) []byte {
	return cat([]byte(magic), []byte{ver}, u16(kem), u16(len(enc)), enc, u32(index), ct)
}

func TestParseWrappedKey(t *testing.T) {
	ct := make([]byte, MinSealedLen)
	enc := make([]byte, 32)
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"minimal", wrappedBytes("DWRP", 1, 0x20, enc[:1], 0, ct), true},
		{"maximal", wrappedBytes("DWRP", 1, 0xffff, make([]byte, MaxEncLen), ^uint32(0), make([]byte, MaxSealedLen)), true},
		{"empty", nil, false},
		{"bad magic", wrappedBytes("DEKB", 1, 0x20, enc, 0, ct), false},
		{"version 2", wrappedBytes("DWRP", 2, 0x20, enc, 0, ct), false},
		{"kem 0", wrappedBytes("DWRP", 1, 0, enc, 0, ct), false},
		{"empty enc", wrappedBytes("DWRP", 1, 0x20, nil, 0, ct), false},
		{"long enc", wrappedBytes("DWRP", 1, 0x20, make([]byte, MaxEncLen+1), 0, ct), false},
		{"ciphertext short", wrappedBytes("DWRP", 1, 0x20, enc, 0, ct[1:]), false},
		{"ciphertext long", wrappedBytes("DWRP", 1, 0x20, enc, 0, make([]byte, MaxSealedLen+1)), false},
		{"enc length past end", cat([]byte("DWRP\x01"), u16(0x20), u16(4000), enc), false},
		{"truncated index", cat([]byte("DWRP\x01"), u16(0x20), u16(1), enc[:1], []byte{0, 0}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := ParseWrappedKey(tt.in)
			if !tt.ok {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseWrappedKey = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseWrappedKey = %v", err)
			}
			if got := w.Marshal(); !bytes.Equal(got, tt.in) {
				t.Errorf("Marshal(ParseWrappedKey(b)) != b")
			}
			if h := w.Header(); !bytes.HasPrefix(tt.in, h) || len(tt.in)-len(h) != len(w.Ciphertext) {
				t.Errorf("Header is not the bytes before Ciphertext")
			}
		})
	}
}

func ctBytes(ver byte, keyID string, kv uint32, sealed []byte) []byte {
	return cat([]byte{ver, byte(len(keyID))}, []byte(keyID), u32(kv), sealed)
}

func TestParseCiphertext(t *testing.T) {
	sealed := make([]byte, MinCiphertextSealed)
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"minimal", ctBytes(1, "k", 1, sealed), true},
		{"long key id", ctBytes(1, strings.Repeat("k", 128), 9, make([]byte, 1<<16)), true},
		{"empty", nil, false},
		{"one byte", []byte{1}, false},
		{"version 0", ctBytes(0, "k", 1, sealed), false},
		{"version 2", ctBytes(2, "k", 1, sealed), false},
		{"empty key id", ctBytes(1, "", 1, sealed), false},
		{"key id too long", ctBytes(1, strings.Repeat("k", 129), 1, sealed), false},
		{"key id not UTF-8", ctBytes(1, "\xed\xa0\x80", 1, sealed), false},
		{"key version 0", ctBytes(1, "k", 0, sealed), false},
		{"sealed short", ctBytes(1, "k", 1, sealed[1:]), false},
		{"key id past end", []byte{1, 100, 'k'}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCiphertext(tt.in)
			id, v, perr := PeekCiphertextKey(tt.in)
			if !tt.ok {
				if !errors.Is(err, ErrMalformed) || !errors.Is(perr, ErrMalformed) {
					t.Fatalf("ParseCiphertext = %v, PeekCiphertextKey = %v, want ErrMalformed", err, perr)
				}
				return
			}
			if err != nil || perr != nil {
				t.Fatalf("ParseCiphertext = %v, PeekCiphertextKey = %v", err, perr)
			}
			if id != c.KeyID || v != c.KeyVersion {
				t.Errorf("PeekCiphertextKey = %q, %d; want %q, %d", id, v, c.KeyID, c.KeyVersion)
			}
			if got := c.Marshal(); !bytes.Equal(got, tt.in) {
				t.Errorf("Marshal(ParseCiphertext(b)) != b")
			}
		})
	}
}

func TestCheckCiphertextKey(t *testing.T) {
	tests := []struct {
		id string
		v  uint32
		ok bool
	}{
		{"key_abc", 1, true},
		{strings.Repeat("k", MaxKeyIDLen), ^uint32(0), true},
		{"clé", 1, true},
		{"", 1, false},
		{strings.Repeat("k", MaxKeyIDLen+1), 1, false},
		{"\xff", 1, false},
		{"k", 0, false},
	}
	for _, tt := range tests {
		if err := CheckCiphertextKey(tt.id, tt.v); (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrMalformed)) {
			t.Errorf("CheckCiphertextKey(%q, %d) = %v, want ok=%v", tt.id, tt.v, err, tt.ok)
		}
	}
}

// TestMarshalInvalidPanics checks that marshaling a value that Validate
// rejects panics instead of writing bytes with a wrapped-around length.
func TestMarshalInvalidPanics(t *testing.T) {
	sealed := make([]byte, MinSealedLen)
	tests := []struct {
		name string
		f    func()
	}{
		{"EKB long tenant", func() {
			(&EKB{Tenant: strings.Repeat("t", 1<<16+1), TMKVersion: 1, KeyID: "k", KeyVersion: 1, Sealed: sealed}).Marshal()
		}},
		{"EKB header no key id", func() { (&EKB{Tenant: "t", TMKVersion: 1, KeyVersion: 1}).Header() }},
		{"EKB no sealed", func() { (&EKB{Tenant: "t", TMKVersion: 1, KeyID: "k", KeyVersion: 1}).Marshal() }},
		{"EKB digest", func() { (&EKB{}).Digest() }},
		{"wrapped no enc", func() { (&WrappedKey{KEMID: 1, Ciphertext: sealed}).Marshal() }},
		{"wrapped header kem 0", func() { (&WrappedKey{Enc: []byte{1}}).Header() }},
		{"ciphertext long key id", func() { (&Ciphertext{KeyID: strings.Repeat("k", 256), KeyVersion: 1, Sealed: sealed}).Marshal() }},
		{"ciphertext header version 0", func() { (&Ciphertext{KeyID: "k"}).Header() }},
		{"ciphertext short sealed", func() { (&Ciphertext{KeyID: "k", KeyVersion: 1}).AppendMarshal(nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic")
				}
			}()
			tt.f()
		})
	}
}

func TestHeaderWithoutSealed(t *testing.T) {
	e := &EKB{Tenant: "t", TMKVersion: 1, KeyID: "k", KeyVersion: 1, Metadata: []byte("{}")}
	h := e.Header()
	e.Sealed = make([]byte, MinSealedLen)
	if m := e.Marshal(); !bytes.Equal(m[:len(h)], h) {
		t.Errorf("Header before Sealed is set != prefix of Marshal")
	}
}

func TestPeekAllocs(t *testing.T) {
	b := ctBytes(1, "key_abcdefghijklmnopqrstuvwxyz", 1, make([]byte, 64))
	if n := testing.AllocsPerRun(100, func() { _, _, _ = PeekCiphertextKey(b) }); n > 1 {
		t.Errorf("PeekCiphertextKey allocs = %v, want <= 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = SplitCiphertext(b) }); n != 0 {
		t.Errorf("SplitCiphertext allocs = %v, want 0", n)
	}
	c, _ := ParseCiphertext(b)
	dst := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { _ = c.AppendMarshal(dst[:0]) }); n != 0 {
		t.Errorf("AppendMarshal allocs = %v, want 0", n)
	}
}

func BenchmarkParseCiphertext(b *testing.B) {
	in := ctBytes(1, "key_abcdefghijklmnopqrstuvwxyz", 1, make([]byte, 1024+28))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCiphertext(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendMarshalCiphertext(b *testing.B) {
	c := &Ciphertext{KeyID: "key_abcdefghijklmnopqrstuvwxyz", KeyVersion: 1, Sealed: make([]byte, 1024+28)}
	dst := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		dst = c.AppendMarshal(dst[:0])
	}
}
