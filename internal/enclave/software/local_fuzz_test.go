package software

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/secret"
)

// FuzzLocalOpen: LocalOpen of outside bytes never panics, and anything but
// the one blob sealed here is ErrOpen.
func FuzzLocalOpen(f *testing.F) {
	e := open(f)
	pt := secret.Copy([]byte("data key"))
	defer pt.Wipe()
	aad := []byte("aad")
	blob, err := e.LocalSeal(f.Context(), pt, aad)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob, aad)
	f.Add(blob[:1], aad)
	f.Add([]byte{}, []byte(nil))
	f.Add(append([]byte{2}, blob[1:]...), aad)
	f.Fuzz(func(t *testing.T, b, ad []byte) {
		got, err := e.LocalOpen(t.Context(), b, ad)
		if err == nil {
			defer got.Wipe()
			if !bytes.Equal(b, blob) || !bytes.Equal(ad, aad) || !got.Equal(pt) {
				t.Fatalf("LocalOpen(%x, %q) opened something not sealed here", b, ad)
			}
			return
		}
		if !errors.Is(err, enclave.ErrOpen) {
			t.Fatalf("LocalOpen() = %v, want ErrOpen", err)
		}
	})
}
