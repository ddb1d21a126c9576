package sqlstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// BenchmarkGetKeysAndVersions1000: the registry read of a rewrap or grant
// batch of 1,000 EKBs on SQLite holding 10,000 data keys (one version
// each, no stored EKB, as `dcaas bench` creates them). Reports keys/s.
func BenchmarkGetKeysAndVersions1000(b *testing.B) {
	ctx := context.Background()
	db, refs := registry(b, 10000)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		batch := refs[(i%10)*1000:][:1000]
		keys, versions, err := db.GetKeysAndVersions(ctx, batch)
		if err != nil || len(keys) != 1000 || len(versions) != 1000 {
			b.Fatalf("GetKeysAndVersions = %d keys, %d versions, %v", len(keys), len(versions), err)
		}
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "keys/s")
}

// BenchmarkAddKeyUsage: the usage update every central operation makes
// (one count), on SQLite holding keys data keys of which the counted one
// is the first. Its cost must not grow with the registry.
func BenchmarkAddKeyUsage(b *testing.B) {
	for _, keys := range []int{100, 20000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			ctx := context.Background()
			db, _ := registry(b, keys)
			count := []store.KeyUsage{{KeyID: fmt.Sprintf("dk_%016x", uint64(0)), Version: 1, Encryptions: 1, Bytes: 1024}}
			for b.Loop() {
				err := db.InTx(ctx, func(tx store.Tx) error {
					n, err := tx.AddKeyUsage(ctx, "acme", count)
					if err == nil && n != 1 {
						err = fmt.Errorf("added %d counts, want 1", n)
					}
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// registry opens a new SQLite database holding tenant acme with n data
// keys (one version each, no stored EKB, as `dcaas bench` creates them),
// closed when b ends, and returns it with the keys' refs.
func registry(b *testing.B, n int) (*sqlstore.DB, []store.KeyRef) {
	b.Helper()
	ctx := context.Background()
	db := openSQLite(b, filepath.Join(b.TempDir(), "r.db"))
	b.Cleanup(func() { db.Close() })
	if err := db.CreateTenant(ctx, store.Tenant{Name: "acme", MasterKeyVersion: 1, CreatedAt: time.Now()}, store.MasterKey{Tenant: "acme", Version: 1, Sealed: []byte("sealed"), CreatedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	refs := make([]store.KeyRef, 0, n)
	err := db.InTx(ctx, func(tx store.Tx) error {
		for i := range n {
			id := fmt.Sprintf("dk_%016x", uint64(i)*0x9e3779b97f4a7c15)
			now := time.Now()
			k := store.Key{KeyID: id, Tenant: "acme", Owner: "CN=payments,OU=acme,O=dcaas", Type: "aes-256-gcm", CurrentVersion: 1, CreatedAt: now}
			if err := tx.CreateKey(ctx, k, store.KeyVersion{KeyID: id, Version: 1, CreatedAt: now}); err != nil {
				return err
			}
			refs = append(refs, store.KeyRef{KeyID: id, Version: 1})
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return db, refs
}
