package kms

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

func TestJanitorDeletesExpiredSecrets(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	k := openQuiet(t, clock)
	put := func(hash string, ttl time.Duration) {
		err := k.db.PutOneTime(t.Context(), store.OneTimeSecret{Hash: []byte(hash), Kind: store.OneTimeChallenge, CreatedAt: clock(), ExpiresAt: clock().Add(ttl)})
		if err != nil {
			t.Fatal(err)
		}
	}
	put("old", time.Minute)
	put("fresh", 3*time.Hour)
	mu.Lock()
	now = now.Add(2 * time.Hour) // "old" expired more than the grace ago
	mu.Unlock()
	k.sweepOneTime(t.Context())
	_, err := k.db.ConsumeOneTime(t.Context(), store.OneTimeChallenge, []byte("old"), clock())
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired secret after the sweep: %v, want ErrNotFound", err)
	}
	if _, err := k.db.ConsumeOneTime(t.Context(), store.OneTimeChallenge, []byte("fresh"), clock()); err != nil {
		t.Fatalf("live secret after the sweep: %v", err)
	}
}
