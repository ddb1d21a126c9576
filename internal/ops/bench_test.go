package ops

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// benchFixture is the test fixture with usage accounting a benchmark can
// afford (and run in parallel).
func benchFixture(b *testing.B) *fixture {
	f := newFixture(b)
	var n atomic.Int64
	f.OnEncrypt = func(string, int, int) { n.Add(1) }
	return f
}

func BenchmarkEncrypt1KiB(b *testing.B) {
	f := benchFixture(b)
	req := &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: "key_aes"}, Plaintext: bytes.Repeat([]byte{'p'}, 1024), AAD: []byte("order-1")}
	ctx := context.Background()
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Encrypt(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncrypt1KiBParallel(b *testing.B) {
	f := benchFixture(b)
	req := &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: "key_aes"}, Plaintext: bytes.Repeat([]byte{'p'}, 1024), AAD: []byte("order-1")}
	b.SetBytes(1024)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := f.Encrypt(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkDecrypt1KiB(b *testing.B) {
	f := benchFixture(b)
	ct := f.encrypt(b, "key_aes", bytes.Repeat([]byte{'p'}, 1024), []byte("order-1"))
	req := &api.DecryptRequest{Ciphertext: ct, AAD: []byte("order-1")}
	ctx := context.Background()
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Decrypt(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
