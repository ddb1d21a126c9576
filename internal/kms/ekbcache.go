package kms

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

// The central path opens the EKB a custodian sends with every request:
// parse, the EKB key derived from the tenant's master key, AES-GCM, the
// metadata's JSON. The KMS remembers the EKBs it opened for the central
// path for a bounded time (ekbCacheTTL, at most ekbCacheMax of them), by
// the SHA-256 of their bytes, with the tenant that opened them: a request
// bringing the same bytes for the same tenant reuses the opened key. Only
// the opening is remembered. Every request still checks the registry (a
// disabled key, a retired version, the usage limit are refused at once;
// the registry entry may come from readcache.go, which forgets it at any
// change),
// the key's expiry and its policy for the caller. The material is wiped
// when it leaves the cache and on Close. (The KMS keeps a tenant's master
// key, which opens every EKB of the tenant, for at most tmkCacheTTL after
// opening it through the root of trust; this cache keeps opened keys for
// less.)

const (
	ekbCacheTTL = time.Minute
	ekbCacheMax = 4096
)

type ekbCacheKey struct {
	tenant string
	sum    [sha256.Size]byte
}

type cachedEKB struct {
	md       api.KeyMetadata
	material *secret.Bytes
	expires  time.Time
}

type ekbCache struct {
	mu sync.Mutex
	m  map[ekbCacheKey]*cachedEKB
}

// openCentral is openEKB through the cache. The caller owns the returned
// key's material (a copy) and wipes it.
func (k *KMS) openCentral(ctx context.Context, tenant string, raw []byte) (*openedKey, error) {
	id := ekbCacheKey{tenant, sha256.Sum256(raw)}
	now := k.now()
	c := &k.ekbs
	c.mu.Lock()
	if e := c.m[id]; e != nil && now.Before(e.expires) {
		o := &openedKey{md: e.md, material: e.material.Clone()}
		c.mu.Unlock()
		return o, nil
	}
	c.mu.Unlock()
	o, err := k.openEKB(ctx, tenant, raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[ekbCacheKey]*cachedEKB)
	}
	if len(c.m) >= ekbCacheMax {
		c.dropLocked(func(e *cachedEKB) bool { return !now.Before(e.expires) })
		if len(c.m) >= ekbCacheMax {
			c.dropLocked(func(*cachedEKB) bool { return true })
		}
	}
	if old := c.m[id]; old != nil {
		old.material.Wipe()
	}
	c.m[id] = &cachedEKB{md: o.md, material: o.material.Clone(), expires: now.Add(ekbCacheTTL)}
	return o, nil
}

// dropLocked removes and wipes the entries drop picks; c.mu is held.
func (c *ekbCache) dropLocked(drop func(*cachedEKB) bool) {
	for id, e := range c.m {
		if drop(e) {
			e.material.Wipe()
			delete(c.m, id)
		}
	}
}

// wipe empties the cache.
func (c *ekbCache) wipe() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(func(*cachedEKB) bool { return true })
}
