package kms

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
)

// countingSealer counts the openings of master keys.
type countingSealer struct {
	seal.Sealer
	tmkOpens atomic.Int64
}

func (s *countingSealer) Open(ctx context.Context, sealed, aad []byte) (*secret.Bytes, error) {
	if bytes.HasPrefix(aad, []byte("dcaas/v1 tmk\x00")) {
		s.tmkOpens.Add(1)
	}
	return s.Sealer.Open(ctx, sealed, aad)
}

// TestMasterKeyLifetimeBounded: an unsealed master key stays in the KMS's
// memory for at most tmkCacheTTL after the root of trust opened it; a
// caller's copy is its own, so an expiry or Close never wipes a key a
// request still uses.
func TestMasterKeyLifetimeBounded(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	k := openQuiet(t, clock)
	cs := &countingSealer{Sealer: k.sealer}
	k.sealer = cs

	ctx := t.Context()
	want := secret.New(kcrypto.Random(32))
	sealed, err := cs.Seal(ctx, want, tmkAAD("acme", 1))
	if err != nil {
		t.Fatal(err)
	}
	err = k.db.InTx(ctx, func(tx store.Tx) error {
		return tx.CreateTenant(ctx, store.Tenant{Name: "acme", MasterKeyVersion: 1, SealedHMACKey: sealed, CreatedAt: clock()},
			store.MasterKey{Tenant: "acme", Version: 1, Sealed: sealed, CreatedAt: clock()})
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func() *secret.Bytes {
		t.Helper()
		b, err := k.masterKey(ctx, "acme", 1)
		if err != nil {
			t.Fatal(err)
		}
		if !b.Equal(want) {
			t.Fatal("masterKey returned other bytes")
		}
		return b
	}

	first := get()
	get().Wipe() // a caller wiping its copy leaves the cache's intact
	if n := cs.tmkOpens.Load(); n != 1 {
		t.Fatalf("root of trust opened the master key %d times for two uses, want 1", n)
	}
	advance(tmkCacheTTL - time.Second)
	if n := k.tmks.sweep(clock()); n != 1 {
		t.Fatalf("%d keys cached before the lifetime ends, want 1", n)
	}
	advance(time.Second)
	if n := k.tmks.sweep(clock()); n != 0 {
		t.Fatalf("%d keys cached after the lifetime, want 0", n)
	}
	if !first.Equal(want) {
		t.Fatal("the sweep wiped a copy a caller still holds")
	}
	get()
	if n := cs.tmkOpens.Load(); n != 2 {
		t.Fatalf("root of trust opened the master key %d times, want 2 (once more after the expiry)", n)
	}
	// An expired entry is not served even before a sweep.
	advance(tmkCacheTTL)
	get()
	if n := cs.tmkOpens.Load(); n != 3 {
		t.Fatalf("root of trust opened the master key %d times, want 3", n)
	}
	k.Close()
	if n := k.tmks.sweep(clock()); n != 0 || !first.Equal(want) {
		t.Fatalf("after Close: %d keys cached, caller's copy intact %v", n, first.Equal(want))
	}
}
