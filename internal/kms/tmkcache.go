package kms

import (
	"sync"
	"time"

	"github.com/dcaas/dcaas/internal/secret"
)

// Every EKB the KMS opens or seals needs its tenant's master key, which
// only the root of trust opens (for an HSM, a round trip to it). The KMS
// remembers an unsealed master key for tmkCacheTTL after it opened it, then
// wipes it: a master key is in the KMS's memory only while it is in use,
// plus at most that long, and an idle tenant's keys are not there at all.
// The cache owns its copies; every caller gets one of its own to wipe, so
// an expiry never wipes a key a request is still using.
const tmkCacheTTL = 5 * time.Minute

type tmkID struct {
	tenant  string
	version int
}

type cachedTMK struct {
	key     *secret.Bytes
	expires time.Time
}

type tmkCache struct {
	mu sync.Mutex
	m  map[tmkID]cachedTMK
}

// get returns a copy of the cached key id (the caller wipes it), or nil if
// it is not cached or has expired at now (then it is wiped).
func (c *tmkCache) get(id tmkID, now time.Time) *secret.Bytes {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok {
		return nil
	}
	if !now.Before(e.expires) {
		e.key.Wipe()
		delete(c.m, id)
		return nil
	}
	return e.key.Clone()
}

// put caches key (taking ownership of it) for tmkCacheTTL from now and
// returns a copy the caller owns. A key opened by a concurrent caller in
// the meantime is replaced: both are the same bytes.
func (c *tmkCache) put(id tmkID, key *secret.Bytes, now time.Time) *secret.Bytes {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[tmkID]cachedTMK{}
	}
	if prev, ok := c.m[id]; ok {
		prev.key.Wipe()
	}
	c.m[id] = cachedTMK{key: key, expires: now.Add(tmkCacheTTL)}
	return key.Clone()
}

// sweep wipes the keys that have expired at now and returns how many
// remain.
func (c *tmkCache) sweep(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.m {
		if !now.Before(e.expires) {
			e.key.Wipe()
			delete(c.m, id)
		}
	}
	return len(c.m)
}

// wipe wipes every cached key.
func (c *tmkCache) wipe() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.m {
		e.key.Wipe()
		delete(c.m, id)
	}
}
