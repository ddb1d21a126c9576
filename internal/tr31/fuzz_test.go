package tr31

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/internal/secret"
)

// FuzzParse: Parse never panics; what it accepts marshals back to exactly
// the input; what it refuses is a *FieldError wrapping ErrFormat or
// ErrUnsupported. Unwrap under a fixed KBPK refuses all but authentic
// blocks with the package's errors.
func FuzzParse(f *testing.F) {
	for _, v := range loadVectors(f, "testdata/vectors.json") {
		f.Add([]byte(v.KeyBlock))
	}
	f.Add([]byte("D0048P0TE00N0200KS1200604B120F9292PB0E0000000000"))
	f.Add([]byte("D0080P0AE00E0100KS0004001A00604B120F9292800000" + "0000000000000000000000000000000000"))
	kbpk := secret.New(bytes.Repeat([]byte{0x41}, 32))
	f.Fuzz(func(t *testing.T, in []byte) {
		kb, err := Parse(in)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !(errors.Is(err, ErrFormat) || errors.Is(err, ErrUnsupported)) {
				t.Fatalf("Parse error %v (%T) is not a *FieldError of the package", err, err)
			}
			return
		}
		out, err := kb.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed block = %v", err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("Marshal(Parse(%q)) = %q", in, out)
		}
		if _, key, err := Unwrap(kbpk, in); err == nil {
			key.Wipe()
		} else if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrFormat) {
			t.Fatalf("Unwrap error %v is not the package's", err)
		}
	})
}
