package enclavetest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/dcaas/dcaas/internal/secret"
)

func testProtect(t *testing.T, fresh opener) {
	e := fresh(t)
	for _, size := range []int{1, 16, 32, 64, 5000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			want := make([]byte, size)
			_, _ = rand.Read(want)
			want[0] |= 1 // never all zeros
			material := secret.Copy(want)
			raw := material.Expose()

			p, err := e.Protect(material)
			if err != nil {
				t.Fatalf("Protect() = %v", err)
			}
			if !allZero(raw) {
				t.Error("Protect() left the caller's copy in clear")
			}

			for i := range 2 { // each Open is an independent copy
				got, err := p.Open()
				if err != nil {
					t.Fatalf("Open() #%d = %v", i, err)
				}
				if !bytes.Equal(got.Expose(), want) {
					t.Fatalf("Open() #%d returned other material", i)
				}
				got.Wipe()
			}

			p.Destroy()
			if got, err := p.Open(); err == nil {
				got.Wipe()
				t.Error("Open() after Destroy() succeeded")
			}
			p.Destroy() // twice is fine
		})
	}

	t.Run("Independent", func(t *testing.T) {
		a, err := e.Protect(secret.Copy([]byte("material a")))
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.Protect(secret.Copy([]byte("material b")))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Destroy()
		a.Destroy()
		got, err := b.Open()
		if err != nil || string(got.Expose()) != "material b" {
			t.Errorf("Open() of b after destroying a = %v", err)
		}
		got.Wipe()
	})
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
