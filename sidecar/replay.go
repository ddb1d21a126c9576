package sidecar

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/keyring"
)

// replayCache remembers the rewrap batches this sidecar imported, until
// they expire, so that a saved answer cannot put back a key that has left
// (evicted, revoked, retired) or reset a load's per-load limits. Batches
// are named by their HPKE encapsulation, which is fresh for every batch.
type replayCache struct {
	mu sync.Mutex
	m  map[[32]byte]imported
}

type imported struct {
	refs     []api.KeyVersionRef
	notAfter time.Time
}

// check reports whether the batch named by enc was imported before: if so
// and every key version of it is still loaded, the import is a harmless
// repeat (again is true); if one has left, the batch is refused.
func (c *replayCache) check(enc []byte, refs []api.KeyVersionRef, ring *keyring.Ring) (again bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, ok := c.m[sha256.Sum256(enc)]
	if !ok {
		return false, nil
	}
	if !slices.Equal(prev.refs, refs) {
		return false, api.Errorf(api.CodeAlreadyUsed, "This rewrap answer was imported before with other keys.")
	}
	for _, r := range refs {
		if _, loaded := ring.Has(r.KeyID, r.Version); !loaded {
			return false, api.Errorf(api.CodeAlreadyUsed, "This rewrap answer was imported before and version %d of key %s has left the sidecar since; ask the KMS for a new rewrap.", r.Version, r.KeyID)
		}
	}
	return true, nil
}

func (c *replayCache) add(enc []byte, refs []api.KeyVersionRef, notAfter time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[32]byte]imported{}
	}
	c.m[sha256.Sum256(enc)] = imported{refs: refs, notAfter: notAfter}
}

// sweep forgets expired batches: they are refused by their expiry anyway.
func (c *replayCache) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.m {
		if !now.Before(v.notAfter) {
			delete(c.m, k)
		}
	}
}

// pendingRefresh collects keys to ask the KMS about at the next poll:
// keys just loaded (the custodian may have loaded an older version than
// the KMS's current one) and keys the feed says were rotated.
type pendingRefresh struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (p *pendingRefresh) add(refs []api.KeyVersionRef) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keys == nil {
		p.keys = map[string]bool{}
	}
	for _, r := range refs {
		p.keys[r.KeyID] = true
	}
}

func (p *pendingRefresh) addID(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keys == nil {
		p.keys = map[string]bool{}
	}
	p.keys[id] = true
}

// take returns the pending key ids and forgets them.
func (p *pendingRefresh) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.keys))
	for id := range p.keys {
		ids = append(ids, id)
	}
	p.keys = nil
	slices.Sort(ids)
	return ids
}
