package enclavetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/secret"
)

func testLocal(t *testing.T, fresh opener) {
	e := fresh(t)
	for _, tc := range []struct {
		size int
		aad  []byte
	}{
		{0, nil},
		{1, []byte("aad")},
		{32, nil},
		{32, []byte("key id, version, tenant, policy digest")},
		{1000, bytes.Repeat([]byte{7}, 300)},
	} {
		t.Run(fmt.Sprintf("%d/%d", tc.size, len(tc.aad)), func(t *testing.T) {
			want := make([]byte, tc.size)
			_, _ = rand.Read(want)
			pt := secret.Copy(want)
			defer pt.Wipe()

			blob, err := e.LocalSeal(t.Context(), pt, tc.aad)
			if err != nil {
				t.Fatalf("LocalSeal() = %v", err)
			}
			if !bytes.Equal(pt.Expose(), want) {
				t.Error("LocalSeal() altered the caller's plaintext")
			}
			if tc.size >= 8 && bytes.Contains(blob, want) {
				t.Error("blob contains the plaintext")
			}
			got, err := e.LocalOpen(t.Context(), blob, tc.aad)
			if err != nil {
				t.Fatalf("LocalOpen() = %v", err)
			}
			if !bytes.Equal(got.Expose(), want) {
				t.Error("LocalOpen() returned other plaintext")
			}
			got.Wipe()

			again, err := e.LocalSeal(t.Context(), pt, tc.aad)
			if err != nil {
				t.Fatalf("LocalSeal() again = %v", err)
			}
			if bytes.Equal(again, blob) {
				t.Error("two seals of the same plaintext are equal, want a fresh nonce")
			}

			notOpen := func(what string, blob, aad []byte) {
				t.Helper()
				got, err := e.LocalOpen(t.Context(), blob, aad)
				if !errors.Is(err, enclave.ErrOpen) {
					got.Wipe()
					t.Errorf("LocalOpen(%s) = %v, want ErrOpen", what, err)
				}
			}
			notOpen("wrong aad", blob, append(bytes.Clone(tc.aad), 'x'))
			if len(tc.aad) > 0 {
				notOpen("no aad", blob, nil)
			}
			for i := range blob {
				bad := bytes.Clone(blob)
				bad[i] ^= 0x80
				notOpen(fmt.Sprintf("bit flipped in byte %d", i), bad, tc.aad)
			}
			for n := range len(blob) {
				notOpen(fmt.Sprintf("truncated to %d", n), blob[:n], tc.aad)
			}
			notOpen("extended", append(bytes.Clone(blob), 0), tc.aad)
		})
	}
	t.Run("Garbage", func(t *testing.T) {
		for _, blob := range [][]byte{nil, {}, {0}, {1}, {0xff}, bytes.Repeat([]byte{1}, 64)} {
			if _, err := e.LocalOpen(t.Context(), blob, nil); !errors.Is(err, enclave.ErrOpen) {
				t.Errorf("LocalOpen(%x) = %v, want ErrOpen", blob, err)
			}
		}
	})
}
