package format

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/internal/testvectors"
)

// The fuzz targets check the parser property of every format: parsing never
// panics; a parse error wraps ErrMalformed; a successful parse yields a
// valid value that marshals back to exactly the input.

func addGolden(f *testing.F, kind string) {
	for _, g := range loadGolden(f) {
		if g.Kind == kind {
			f.Add(testvectors.Hex(f, g.Hex))
		}
	}
}

func FuzzParseEKB(f *testing.F) {
	addGolden(f, "ekb")
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEKB(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || e != nil {
				t.Fatalf("ParseEKB = %v, %v; want nil, ErrMalformed", e, err)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("Validate(ParseEKB(b)) = %v", err)
		}
		if m := e.Marshal(); !bytes.Equal(m, b) {
			t.Fatalf("Marshal(ParseEKB(b)) = %x, want %x", m, b)
		}
		if h := e.Header(); !bytes.Equal(h, b[:len(b)-len(e.Sealed)]) {
			t.Fatalf("Header = %x, want the bytes before Sealed", h)
		}
	})
}

func FuzzParseWrappedKey(f *testing.F) {
	addGolden(f, "wrapped")
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := ParseWrappedKey(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || w != nil {
				t.Fatalf("ParseWrappedKey = %v, %v; want nil, ErrMalformed", w, err)
			}
			return
		}
		if m := w.Marshal(); !bytes.Equal(m, b) {
			t.Fatalf("Marshal(ParseWrappedKey(b)) = %x, want %x", m, b)
		}
		if h := w.Header(); !bytes.Equal(h, b[:len(b)-len(w.Ciphertext)]) {
			t.Fatalf("Header = %x, want the bytes before Ciphertext", h)
		}
	})
}

func FuzzParseCiphertext(f *testing.F) {
	addGolden(f, "ciphertext")
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCiphertext(b)
		id, v, perr := PeekCiphertextKey(b)
		h, sealed, serr := SplitCiphertext(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || !errors.Is(perr, ErrMalformed) || !errors.Is(serr, ErrMalformed) {
				t.Fatalf("ParseCiphertext = %v, PeekCiphertextKey = %v, SplitCiphertext = %v; want ErrMalformed", err, perr, serr)
			}
			return
		}
		if perr != nil || serr != nil || id != c.KeyID || v != c.KeyVersion {
			t.Fatalf("PeekCiphertextKey = %q, %d, %v; SplitCiphertext = %v; want %q, %d", id, v, perr, serr, c.KeyID, c.KeyVersion)
		}
		if m := c.Marshal(); !bytes.Equal(m, b) {
			t.Fatalf("Marshal(ParseCiphertext(b)) = %x, want %x", m, b)
		}
		if !bytes.Equal(c.Header(), h) || !bytes.Equal(c.Sealed, sealed) {
			t.Fatalf("SplitCiphertext disagrees with ParseCiphertext")
		}
	})
}
