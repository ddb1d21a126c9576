// Package keyring holds the data keys a sidecar has loaded: every version of
// each key, its metadata, its lease, and which actions the sidecar's bound
// custodian may perform with it.
//
// Material rests in the enclave (enclave.Protected: encrypted while idle).
// An operation Acquires a Handle, which builds the key's operation handle
// on first use and shares it while the key is busy; a key idle for longer
// than Config.IdleTTL loses its handle again, and eviction wipes both.
package keyring

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/secret"
)

// Config configures a Ring. Zero values mean defaults.
type Config struct {
	// BoundDN is the DN of the custodian the sidecar serves; key policies
	// are evaluated for it.
	BoundDN string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// IdleTTL is how long an unused key keeps its operation handle before
	// only the enclave-protected material remains (default 1 minute).
	IdleTTL time.Duration
}

// Ring is the set of loaded keys. It is safe for concurrent use.
type Ring struct {
	enc     enclave.Enclave
	bound   string
	now     func() time.Time
	idleTTL time.Duration

	mu   sync.RWMutex
	keys map[string]*versions
}

type versions struct {
	current int // highest loaded version
	byVer   map[int]*entry
}

// entry is one loaded key version.
type entry struct {
	md      api.KeyMetadata
	allowed uint8 // bit set of actions the bound custodian holds
	until   time.Time
	prot    enclave.Protected

	mu      sync.Mutex // serializes building the handle
	hot     atomic.Pointer[hot]
	lastUse atomic.Int64 // unix nanos
	dead    atomic.Bool
	leaseNs atomic.Int64 // lease end, unix nanos (0 = none)
}

// hot is a shared operation handle with a reference count; the ring holds
// one reference while the handle is cached, each Handle one more. The last
// release wipes it.
type hot struct {
	key  *kcrypto.Key
	refs atomic.Int64
}

func (h *hot) release() {
	if h.refs.Add(-1) == 0 {
		h.key.Wipe()
	}
}

// tryRef takes a reference unless the handle is already being wiped.
func (h *hot) tryRef() bool {
	for {
		n := h.refs.Load()
		if n <= 0 {
			return false
		}
		if h.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// New returns an empty ring whose material rests in enc.
func New(enc enclave.Enclave, cfg Config) *Ring {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdleTTL <= 0 {
		cfg.IdleTTL = time.Minute
	}
	return &Ring{enc: enc, bound: cfg.BoundDN, now: cfg.Now, idleTTL: cfg.IdleTTL, keys: map[string]*versions{}}
}

var actionBits = map[api.Action]uint8{
	api.ActionEncrypt: 1, api.ActionDecrypt: 2, api.ActionSign: 4, api.ActionVerify: 8, api.ActionMAC: 16,
}

// Put loads one key version, taking ownership of material (it is wiped
// here). leaseUntil bounds how long the key may be used (zero: until the
// key's expiry, if any). A version already loaded is replaced.
func (r *Ring) Put(md api.KeyMetadata, material *secret.Bytes, leaseUntil time.Time) error {
	defer material.Wipe()
	// Check the material builds a handle before accepting it.
	k, err := kcrypto.NewKey(md.Type, md.KeyID, uint32(md.Version), material)
	if err != nil {
		return err
	}
	k.Wipe()
	prot, err := r.enc.Protect(material.Clone())
	if err != nil {
		return err
	}
	e := &entry{md: md, prot: prot}
	for a, bit := range actionBits {
		if policy.Allows(md.Policy, md.Owner, r.bound, a) {
			e.allowed |= bit
		}
	}
	if md.ExpiresAt != nil && (leaseUntil.IsZero() || md.ExpiresAt.Before(leaseUntil)) {
		leaseUntil = *md.ExpiresAt
	}
	if !leaseUntil.IsZero() {
		e.leaseNs.Store(leaseUntil.UnixNano())
	}

	r.mu.Lock()
	vs := r.keys[md.KeyID]
	if vs == nil {
		vs = &versions{byVer: map[int]*entry{}}
		r.keys[md.KeyID] = vs
	}
	old := vs.byVer[md.Version]
	vs.byVer[md.Version] = e
	if md.Version > vs.current {
		vs.current = md.Version
	}
	r.mu.Unlock()
	if old != nil {
		old.destroy()
	}
	return nil
}

// destroy drops the entry's handle and material.
func (e *entry) destroy() {
	e.dead.Store(true)
	e.mu.Lock()
	if h := e.hot.Swap(nil); h != nil {
		h.release()
	}
	e.mu.Unlock()
	e.prot.Destroy()
}

// Handle is an acquired key for one operation. Release it when done; the
// key must not be used afterwards.
type Handle struct {
	Key *kcrypto.Key
	MD  *api.KeyMetadata
	h   *hot
}

// Release returns the handle.
func (h *Handle) Release() {
	if h != nil && h.h != nil {
		h.h.release()
		h.h = nil
	}
}

// Acquire returns the handle of keyID at version (0: the newest loaded
// version) for action, checking the policy and the lease.
func (r *Ring) Acquire(keyID string, version int, action api.Action) (*Handle, error) {
	r.mu.RLock()
	vs := r.keys[keyID]
	var e *entry
	if vs != nil {
		if version == 0 {
			version = vs.current
		}
		e = vs.byVer[version]
	}
	r.mu.RUnlock()
	if e == nil {
		if vs != nil {
			return nil, api.Errorf(api.CodeNotFound, "Version %d of key %s is not loaded in this sidecar.", version, keyID)
		}
		return nil, api.Errorf(api.CodeNotFound, "Key %s is not loaded in this sidecar.", keyID)
	}
	if e.allowed&actionBits[action] == 0 {
		return nil, api.Errorf(api.CodePolicyDenied, "The policy of key %s does not allow %s for %s.", keyID, action, r.bound)
	}
	now := r.now().UnixNano()
	if l := e.leaseNs.Load(); l != 0 && now >= l {
		return nil, api.Errorf(api.CodeExpired, "The lease of key %s has run out; reload it from the KMS.", keyID)
	}
	e.lastUse.Store(now)
	h, err := e.acquire()
	if err != nil {
		return nil, err
	}
	return &Handle{Key: h.key, MD: &e.md, h: h}, nil
}

func (e *entry) acquire() (*hot, error) {
	if h := e.hot.Load(); h != nil && h.tryRef() {
		return h, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if h := e.hot.Load(); h != nil && h.tryRef() {
		return h, nil
	}
	if e.dead.Load() {
		return nil, api.Errorf(api.CodeNotFound, "Key %s was evicted.", e.md.KeyID)
	}
	material, err := e.prot.Open()
	if err != nil {
		return nil, err
	}
	k, err := kcrypto.NewKey(e.md.Type, e.md.KeyID, uint32(e.md.Version), material)
	material.Wipe()
	if err != nil {
		return nil, err
	}
	h := &hot{key: k}
	h.refs.Store(2) // the cache's reference and the caller's
	e.hot.Store(h)
	return h, nil
}

// Evict removes every version of keyID and wipes them; it reports whether
// the key was loaded.
func (r *Ring) Evict(keyID string) bool {
	r.mu.Lock()
	vs := r.keys[keyID]
	delete(r.keys, keyID)
	r.mu.Unlock()
	if vs == nil {
		return false
	}
	for _, e := range vs.byVer {
		e.destroy()
	}
	return true
}

// Renew moves the lease of every loaded version of keyID to until (never
// past the key's expiry).
func (r *Ring) Renew(keyID string, until time.Time) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if vs := r.keys[keyID]; vs != nil {
		for _, e := range vs.byVer {
			u := until
			if e.md.ExpiresAt != nil && e.md.ExpiresAt.Before(u) {
				u = *e.md.ExpiresAt
			}
			e.leaseNs.Store(u.UnixNano())
		}
	}
}

// Sweep drops the operation handles of keys idle longer than the idle TTL
// (their material stays protected in the enclave). Call it periodically.
func (r *Ring) Sweep() {
	cut := r.now().Add(-r.idleTTL).UnixNano()
	r.mu.RLock()
	var idle []*entry
	for _, vs := range r.keys {
		for _, e := range vs.byVer {
			if e.hot.Load() != nil && e.lastUse.Load() < cut {
				idle = append(idle, e)
			}
		}
	}
	r.mu.RUnlock()
	for _, e := range idle {
		e.mu.Lock()
		if e.lastUse.Load() < cut {
			if h := e.hot.Swap(nil); h != nil {
				h.release()
			}
		}
		e.mu.Unlock()
	}
}

// Len is the number of loaded keys (not versions).
func (r *Ring) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.keys)
}

// IDs lists the loaded key ids, sorted.
func (r *Ring) IDs() []string {
	r.mu.RLock()
	ids := make([]string, 0, len(r.keys))
	for id := range r.keys {
		ids = append(ids, id)
	}
	r.mu.RUnlock()
	sort.Strings(ids)
	return ids
}

// List describes every loaded key version (never secrets), sorted by key id
// and version.
func (r *Ring) List() []api.LoadedKey {
	r.mu.RLock()
	out := make([]api.LoadedKey, 0, len(r.keys))
	for _, vs := range r.keys {
		for _, e := range vs.byVer {
			lk := api.LoadedKey{KeyMetadata: e.md}
			if l := e.leaseNs.Load(); l != 0 {
				t := time.Unix(0, l).UTC()
				lk.LeaseExpiresAt = &t
			}
			out = append(out, lk)
		}
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].KeyID != out[j].KeyID {
			return out[i].KeyID < out[j].KeyID
		}
		return out[i].Version < out[j].Version
	})
	return out
}

// Close evicts everything.
func (r *Ring) Close() {
	for _, id := range r.IDs() {
		r.Evict(id)
	}
}
