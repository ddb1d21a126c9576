package format

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealedKeyRoundTrip(t *testing.T) {
	cases := []SealedKey{
		{Metadata: []byte(`{"key_id":"k"}`), LeaseUntil: 0, Blob: []byte{1}},
		{Metadata: []byte(`{}`), LeaseUntil: 1 << 62, Blob: bytes.Repeat([]byte{7}, 100)},
	}
	for _, sk := range cases {
		got, err := ParseSealedKey(sk.Marshal())
		if err != nil {
			t.Fatalf("ParseSealedKey(Marshal(%+v)) = %v", sk, err)
		}
		if !bytes.Equal(got.Marshal(), sk.Marshal()) || !bytes.Equal(got.Header(), sk.Header()) {
			t.Fatalf("round trip changed %+v into %+v", sk, got)
		}
	}
	bad := [][]byte{nil, []byte("DSKB"), []byte("XXXX\x01\x00\x00\x00\x01{"), append([]byte("DSKB\x02"), make([]byte, 20)...),
		append([]byte("DSKB\x01\x00\x00\x00\x00"), make([]byte, 9)...), append([]byte("DSKB\x01\xff\xff\xff\xff"), make([]byte, 9)...)}
	for _, b := range bad {
		if _, err := ParseSealedKey(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseSealedKey(%x) = %v, want ErrMalformed", b, err)
		}
	}
}

// FuzzParseSealedKey: no panic; what parses re-marshals to the same bytes;
// errors are ErrMalformed.
func FuzzParseSealedKey(f *testing.F) {
	f.Add((&SealedKey{Metadata: []byte(`{"key_id":"k","version":1}`), LeaseUntil: 42, Blob: []byte("blob")}).Marshal())
	f.Add([]byte("DSKB\x01\x00\x00\x00\x02{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sk, err := ParseSealedKey(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if !bytes.Equal(sk.Marshal(), b) {
			t.Fatalf("Marshal(ParseSealedKey(%x)) = %x", b, sk.Marshal())
		}
	})
}
