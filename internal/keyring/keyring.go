// Package keyring holds the data keys a sidecar has loaded: every version of
// each key, its metadata, its lease, and which actions the sidecar's bound
// custodian may perform with it.
//
// Material rests in the enclave (enclave.Protected: encrypted while idle).
// An operation Acquires a Handle, which builds the key's operation handle
// on first use and shares it while the key is busy; a key idle for longer
// than Config.IdleTTL loses its handle again, and eviction wipes both.
//
// The ring also enforces usage limits (usage.go): every AES-GCM key version
// counts its encryptions toward a safe limit (Config.MaxEncryptions), a
// key's policy may cap each load's lease age, operations and bytes, and a
// key's minimum decryption version retires the versions below it.
package keyring

import (
	"errors"
	"maps"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/ops"
	"github.com/dcaas/dcaas/internal/parallel"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/secret"
)

// Config configures a Ring. Zero values mean defaults.
type Config struct {
	// BoundDN is the DN of the custodian the sidecar serves; key policies
	// are evaluated for it. It may be left empty and set later with Bind,
	// before any key is loaded (a sidecar learns it at enrollment).
	BoundDN string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// IdleTTL is how long an unused key keeps its operation handle before
	// only the enclave-protected material remains (default 1 minute).
	IdleTTL time.Duration
	// MaxEncryptions is the safe number of encryptions per AES-GCM key
	// version, counted from what the KMS reported when the version was
	// loaded (Item.Encryptions) plus this ring's own (default
	// ops.DefaultMaxEncryptions).
	MaxEncryptions int64
}

// Ring is the set of loaded keys. It is safe for concurrent use.
type Ring struct {
	enc     enclave.Enclave
	bound   atomic.Pointer[string]
	now     func() time.Time
	idleTTL time.Duration
	maxEnc  int64

	mu     sync.Mutex   // serializes writers; readers use keys lock-free
	keys   sync.Map     // key id → *versions
	n      atomic.Int64 // loaded key versions
	usage  sync.Map     // verKey → *usage: encryption counts, kept across loads
	floors sync.Map     // key id → int: minimum decryption version
	gone   sync.Map     // key id → true: keys the KMS revoked (sticky)
}

// versions is immutable once published in keys: writers replace it whole,
// so Acquire reads without locks.
type versions struct {
	current int // highest loaded version
	byVer   map[int]*entry
}

func (r *Ring) load(keyID string) *versions {
	v, ok := r.keys.Load(keyID)
	if !ok {
		return nil
	}
	return v.(*versions)
}

// entry is one loaded key version.
type entry struct {
	md      api.KeyMetadata
	allowed uint8 // bit set of actions the bound custodian holds
	prot    enclave.Protected

	mu      sync.Mutex // serializes building the handle
	hot     atomic.Pointer[hot]
	lastUse atomic.Int64 // unix nanos
	dead    atomic.Bool
	leaseNs atomic.Int64 // lease end, unix nanos (0 = none)

	// Usage accounting (usage.go).
	use      *usage // the version's encryption count
	limited  bool   // AES-GCM: encryptions count toward maxEnc
	maxEnc   int64
	maxOps   int64        // policy limits.max_operations (0: none)
	maxBytes int64        // policy limits.max_bytes (0: none)
	leaseCap int64        // load time + limits.max_lease_seconds, unix nanos (0: none)
	ops      atomic.Int64 // operations charged in this load
	bytes    atomic.Int64 // bytes charged in this load
}

// hot is a shared operation handle with a reference count; the ring holds
// one reference while the handle is cached, each Handle one more. The last
// release wipes it.
type hot struct {
	key  *kcrypto.Key
	refs atomic.Int64
	e    *entry
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
	if cfg.MaxEncryptions <= 0 {
		cfg.MaxEncryptions = ops.DefaultMaxEncryptions
	}
	r := &Ring{enc: enc, now: cfg.Now, idleTTL: cfg.IdleTTL, maxEnc: cfg.MaxEncryptions}
	r.Bind(cfg.BoundDN)
	return r
}

// Bind sets the DN of the custodian whose policies the ring evaluates.
// Keys loaded for another custodian are evicted first.
func (r *Ring) Bind(dn string) {
	if old := r.bound.Load(); old != nil && *old != dn {
		r.Close()
	}
	r.bound.Store(&dn)
}

// BoundDN is the custodian the ring evaluates policies for.
func (r *Ring) BoundDN() string {
	if p := r.bound.Load(); p != nil {
		return *p
	}
	return ""
}

// Revoke evicts every version of keyID and refuses it from then on, for
// the life of the ring: a key the KMS revoked cannot come back, whatever
// is presented (an old rewrap answer, a sealed blob). It reports whether
// the key was loaded.
func (r *Ring) Revoke(keyID string) bool {
	r.mu.Lock()
	r.gone.Store(keyID, true)
	r.mu.Unlock()
	return r.Evict(keyID)
}

// Revoked reports whether Revoke was called for keyID.
func (r *Ring) Revoked(keyID string) bool {
	_, ok := r.gone.Load(keyID)
	return ok
}

// RevokedKeyError is the error for a key the KMS revoked: it is not loaded
// and will not be again.
func RevokedKeyError(keyID string) error { return errRevokedKey(keyID) }

func errRevokedKey(keyID string) error {
	return api.Errorf(api.CodeRevoked, "Key %s has been revoked by the KMS; this sidecar will not load or use it again.", keyID)
}

var allActions = []api.Action{api.ActionEncrypt, api.ActionDecrypt, api.ActionSign, api.ActionVerify, api.ActionMAC}

// Item is one key version for PutAll.
type Item struct {
	MD       api.KeyMetadata
	Material *secret.Bytes // taken over by PutAll, which wipes it
	// Encryptions is what the KMS counted for the version; the ring counts
	// on from it; a count below what the ring knows changes nothing.
	Encryptions int64
}

// Put loads one key version, taking ownership of material (it is wiped
// here). See PutAll.
func (r *Ring) Put(md api.KeyMetadata, material *secret.Bytes, leaseUntil time.Time) error {
	return r.PutAll([]Item{{MD: md, Material: material}}, leaseUntil)
}

// PutAll loads key versions, all or nothing, taking ownership of their
// material (wiped here, on every path). leaseUntil bounds how long the
// keys may be used (zero: until each key's expiry, if any; never past a
// policy's limits.max_lease_seconds from now). A version already loaded is
// replaced, and its load's policy counts start again. A revoked key (see
// Revoke), a retired version (below the key's minimum decryption version,
// see Retire) are refused.
func (r *Ring) PutAll(items []Item, leaseUntil time.Time) error {
	defer func() {
		for _, it := range items {
			it.Material.Wipe()
		}
	}()
	now := r.now()
	bound := r.BoundDN()
	entries := make([]*entry, len(items))
	destroy := func() {
		for _, e := range entries {
			if e != nil {
				e.prot.Destroy()
			}
		}
	}
	// An enclave that can seals the whole batch at once (the software
	// enclave: one memguard open); the rest of each item's preparation
	// runs on every core. The error reported is the first in the batch's
	// order.
	errs := make([]error, len(items))
	var sealed []enclave.Protected // the batch sealed at once, if the enclave can
	if bp, ok := r.enc.(enclave.BatchProtector); ok && len(items) > 1 {
		clones := make([]*secret.Bytes, len(items))
		for i, it := range items {
			clones[i] = it.Material.Clone()
		}
		var err error
		if sealed, err = bp.ProtectAll(clones); err != nil {
			return err
		}
		defer func() {
			for i, p := range sealed {
				if entries[i] == nil {
					p.Destroy() // its item was refused
				}
			}
		}()
	}
	prepare := func(i int) {
		var prot enclave.Protected
		if sealed != nil {
			prot = sealed[i]
		}
		entries[i], errs[i] = r.prepare(items[i], prot, now, bound, leaseUntil)
	}
	parallel.For(len(items), parallelFrom, prepare)
	for _, err := range errs {
		if err != nil {
			destroy()
			return err
		}
	}

	r.mu.Lock()
	for _, e := range entries {
		if r.Revoked(e.md.KeyID) {
			r.mu.Unlock()
			destroy()
			return errRevokedKey(e.md.KeyID)
		}
		if floor := r.MinVersion(e.md.KeyID); e.md.Version < floor {
			r.mu.Unlock()
			destroy()
			return errRetired(e.md.KeyID, e.md.Version, floor)
		}
	}
	var replaced []*entry
	for i, e := range entries {
		md := &e.md
		e.use = r.usageOf(md.KeyID, md.Version) // under mu: Evict drops idle counts
		if n := items[i].Encryptions; n > 0 {
			e.use.setReported(n)
		}
		next := &versions{byVer: map[int]*entry{}}
		var old *entry
		if vs := r.load(md.KeyID); vs != nil {
			next.current = vs.current
			for v, x := range vs.byVer {
				next.byVer[v] = x
			}
			old = vs.byVer[md.Version]
		}
		next.byVer[md.Version] = e
		if md.Version > next.current {
			next.current = md.Version
		}
		r.keys.Store(md.KeyID, next)
		if old == nil {
			r.n.Add(1)
		} else {
			replaced = append(replaced, old)
		}
	}
	r.mu.Unlock()
	for _, old := range replaced {
		old.destroy()
	}
	return nil
}

// parallelFrom is the batch size per core from which PutAll prepares a
// batch on several cores.
const parallelFrom = 32

// prepare checks one item of PutAll and seals its material into a new
// entry.
// prot, if not nil, is the item's material protected already.
func (r *Ring) prepare(it Item, prot enclave.Protected, now time.Time, bound string, leaseUntil time.Time) (*entry, error) {
	md := it.MD
	if md.Version < 0 || int64(md.Version) > math.MaxUint32 { // 0 is refused by NewKey below
		return nil, api.Errorf(api.CodeInvalidArgument, "Key %s has version %d, outside 1..%d.", md.KeyID, md.Version, uint32(math.MaxUint32))
	}
	md = cloneMetadata(md)
	// Check the material builds a handle before accepting it.
	k, err := kcrypto.NewKey(md.Type, md.KeyID, uint32(md.Version), it.Material)
	if err != nil {
		return nil, err
	}
	k.Wipe()
	if prot == nil {
		if prot, err = r.enc.Protect(it.Material.Clone()); err != nil {
			return nil, err
		}
	}
	e := &entry{md: md, prot: prot}
	e.setLimits(r, now)
	lease := leaseUntil
	if e.leaseCap != 0 && (lease.IsZero() || e.leaseCap < lease.UnixNano()) {
		lease = time.Unix(0, e.leaseCap)
	}
	for _, a := range policy.AllowedActions(md.Policy, md.Owner, bound, allActions) {
		e.allowed |= actionBit(a)
	}
	if md.ExpiresAt != nil && (lease.IsZero() || md.ExpiresAt.Before(lease)) {
		lease = *md.ExpiresAt
	}
	if !lease.IsZero() {
		e.leaseNs.Store(lease.UnixNano())
	}
	return e, nil
}

// Has reports whether version of keyID is loaded; version 0 asks for
// any version, and the newest loaded version is returned.
func (r *Ring) Has(keyID string, version int) (int, bool) {
	vs := r.load(keyID)
	if vs == nil {
		return 0, false
	}
	if version == 0 {
		return vs.current, true
	}
	_, ok := vs.byVer[version]
	return version, ok
}

// Newest lists every loaded key with its newest loaded version.
func (r *Ring) Newest() []api.KeyVersionRef {
	var out []api.KeyVersionRef
	r.keys.Range(func(k, v any) bool {
		out = append(out, api.KeyVersionRef{KeyID: k.(string), Version: v.(*versions).current})
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].KeyID < out[j].KeyID })
	return out
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
func (h Handle) Release() {
	if h.h != nil {
		h.h.release()
	}
}

// Releaser returns what to call when the operation is done (for callers
// that keep the key but not the Handle).
func (h Handle) Releaser() interface{ Release() } { return h.h }

// Release drops one reference (implements the engine's release contract).
func (h *hot) Release() { h.release() }

// Charge accounts for one operation on n bytes before it is performed
// (implements ops.Meter); see entry.charge.
func (h *hot) Charge(n int) error { return h.e.charge(n) }

// Charge accounts for one operation on n bytes with the handle's key
// before it is performed, for callers that use Key directly: call it
// before every encryption, signature or MAC, and do not perform the
// operation when it fails.
func (h Handle) Charge(n int) error { return h.h.Charge(n) }

// Acquire returns the handle of keyID at version (0: the newest loaded
// version) for action, checking the policy and the lease.
func (r *Ring) Acquire(keyID string, version int, action api.Action) (Handle, error) {
	vs := r.load(keyID)
	var e *entry
	if vs != nil {
		if version == 0 {
			version = vs.current
		}
		e = vs.byVer[version]
	}
	if e == nil {
		if r.Revoked(keyID) {
			return Handle{}, errRevokedKey(keyID)
		}
		if floor := r.MinVersion(keyID); version > 0 && version < floor {
			return Handle{}, errRetired(keyID, version, floor)
		}
		if vs != nil {
			return Handle{}, api.Errorf(api.CodeNotFound, "Version %d of key %s is not loaded in this sidecar.", version, keyID)
		}
		return Handle{}, api.Errorf(api.CodeNotFound, "Key %s is not loaded in this sidecar.", keyID)
	}
	if e.allowed&actionBit(action) == 0 {
		return Handle{}, api.Errorf(api.CodePolicyDenied, "The policy of key %s does not allow %s for %s.", keyID, action, r.BoundDN())
	}
	now := r.now().UnixNano()
	if l := e.leaseNs.Load(); l != 0 && now >= l {
		if e.leaseCap != 0 && l >= e.leaseCap {
			return Handle{}, api.Errorf(api.CodeExpired, "Key %s has been loaded for the %d seconds its policy allows per load (limits.max_lease_seconds); reload it from the KMS.", keyID, policy.Limits(e.md.Policy).MaxLeaseSeconds)
		}
		return Handle{}, api.Errorf(api.CodeExpired, "The lease of key %s has run out; reload it from the KMS.", keyID)
	}
	// Coarse last-use tracking: a shared cache line written once a second,
	// not on every operation.
	if now-e.lastUse.Load() > int64(time.Second) {
		e.lastUse.Store(now)
	}
	h, err := e.acquire()
	if err != nil {
		return Handle{}, err
	}
	return Handle{Key: h.key, MD: &e.md, h: h}, nil
}

func actionBit(a api.Action) uint8 {
	switch a {
	case api.ActionEncrypt:
		return 1
	case api.ActionDecrypt:
		return 2
	case api.ActionSign:
		return 4
	case api.ActionVerify:
		return 8
	case api.ActionMAC:
		return 16
	}
	return 0
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
	h := &hot{key: k, e: e}
	h.refs.Store(2) // the cache's reference and the caller's
	e.hot.Store(h)
	return h, nil
}

// Evict removes every version of keyID and wipes them; it reports whether
// the key was loaded.
func (r *Ring) Evict(keyID string) bool {
	r.mu.Lock()
	vs := r.load(keyID)
	r.keys.Delete(keyID)
	if vs != nil {
		r.n.Add(-int64(len(vs.byVer)))
		for v := range vs.byVer {
			r.dropUsage(keyID, v)
		}
	}
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
	if until.IsZero() {
		return // no lease to move to; keys keep their current one
	}
	if vs := r.load(keyID); vs != nil {
		for _, e := range vs.byVer {
			u := until
			if e.md.ExpiresAt != nil && e.md.ExpiresAt.Before(u) {
				u = *e.md.ExpiresAt
			}
			if e.leaseCap != 0 && e.leaseCap < u.UnixNano() {
				u = time.Unix(0, e.leaseCap)
			}
			e.leaseNs.Store(u.UnixNano())
		}
	}
}

// Sweep drops the operation handles of keys idle longer than the idle TTL
// (their material stays protected in the enclave). Call it periodically.
func (r *Ring) Sweep() {
	cut := r.now().Add(-r.idleTTL).UnixNano()
	var idle []*entry
	r.each(func(e *entry) {
		if e.hot.Load() != nil && e.lastUse.Load() < cut {
			idle = append(idle, e)
		}
	})
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

// each calls f for every loaded key version.
func (r *Ring) each(f func(*entry)) {
	r.keys.Range(func(_, v any) bool {
		for _, e := range v.(*versions).byVer {
			f(e)
		}
		return true
	})
}

// Len is the number of loaded keys (not versions).
func (r *Ring) Len() int {
	n := 0
	r.keys.Range(func(_, _ any) bool { n++; return true })
	return n
}

// IDs lists the loaded key ids, sorted.
func (r *Ring) IDs() []string {
	var ids []string
	r.keys.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	sort.Strings(ids)
	return ids
}

// List describes every loaded key version (never secrets), sorted by key id
// and version.
func (r *Ring) List() []api.LoadedKey {
	out := make([]api.LoadedKey, 0, r.n.Load())
	r.each(func(e *entry) {
		lk := api.LoadedKey{KeyMetadata: cloneMetadata(e.md), Encryptions: e.use.total()}
		if l := e.leaseNs.Load(); l != 0 {
			t := time.Unix(0, l).UTC()
			lk.LeaseExpiresAt = &t
		}
		out = append(out, lk)
	})
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

// Current returns the metadata, a copy of the material (the caller wipes
// it) and the lease end (zero: none) of the newest loaded version of keyID.
func (r *Ring) Current(keyID string) (api.KeyMetadata, *secret.Bytes, time.Time, error) {
	for range 8 { // a version replaced while read: read again (see All)
		vs := r.load(keyID)
		if vs == nil {
			if r.Revoked(keyID) {
				return api.KeyMetadata{}, nil, time.Time{}, errRevokedKey(keyID)
			}
			return api.KeyMetadata{}, nil, time.Time{}, api.Errorf(api.CodeNotFound, "Key %s is not loaded in this sidecar.", keyID)
		}
		e := vs.byVer[vs.current]
		m, err := e.open()
		if errors.Is(err, errGone) {
			continue
		}
		if err != nil {
			return api.KeyMetadata{}, nil, time.Time{}, err
		}
		var until time.Time
		if l := e.leaseNs.Load(); l != 0 {
			until = time.Unix(0, l)
		}
		return e.md, m, until, nil
	}
	return api.KeyMetadata{}, nil, time.Time{}, api.Errorf(api.CodeUnavailable, "Key %s is being replaced; retry.", keyID)
}

// Loaded is one loaded version of a key with a copy of its material (the
// caller wipes it).
type Loaded struct {
	MD         api.KeyMetadata
	Material   *secret.Bytes
	LeaseUntil time.Time // zero: none
}

// All returns every loaded version of keyID, oldest first, each with a
// copy of its material that the caller wipes (on error, nothing is
// returned and nothing is left to wipe).
func (r *Ring) All(keyID string) ([]Loaded, error) { return r.AllOf([]string{keyID}) }

// AllOf is All for each of keyIDs, one after the other, with every
// material opened in one enclave call where the enclave can
// (enclave.BatchOpener): sealing thousands of keys for the stateless mode
// opened each on its own before.
func (r *Ring) AllOf(keyIDs []string) ([]Loaded, error) {
	// A version replaced or evicted while it is read (a refresh loading
	// it again, say) is destroyed under the reader: read it again, which
	// then holds the replacement or nothing. The batch open holds no
	// entry's lock, so a key replaced over and over could keep failing
	// it: after one failed batch, each key is read on its own, its
	// versions under their entries' locks, and retried on its own.
	out, err := r.allOf(keyIDs, true)
	if !errors.Is(err, errGone) {
		return out, err
	}
	for _, id := range keyIDs {
		one, err := r.allOne(id)
		if err != nil {
			for _, l := range out {
				l.Material.Wipe()
			}
			return nil, err
		}
		out = append(out, one...)
	}
	return out, nil
}

// allOne reads one key's versions one by one, again while one of them is
// destroyed under the read, a few times.
func (r *Ring) allOne(keyID string) ([]Loaded, error) {
	for range 8 {
		out, err := r.allOf([]string{keyID}, false)
		if !errors.Is(err, errGone) {
			return out, err
		}
	}
	return nil, api.Errorf(api.CodeUnavailable, "Key %s is being replaced; retry.", keyID)
}

// errGone is what allOf returns when an entry it read was destroyed.
var errGone = errors.New("keyring: entry destroyed while read")

func (r *Ring) allOf(keyIDs []string, batch bool) ([]Loaded, error) {
	var entries []*entry
	for _, id := range keyIDs {
		vs := r.load(id)
		if vs == nil {
			if r.Revoked(id) {
				return nil, errRevokedKey(id)
			}
			return nil, api.Errorf(api.CodeNotFound, "Key %s is not loaded in this sidecar.", id)
		}
		for _, v := range slices.Sorted(maps.Keys(vs.byVer)) {
			entries = append(entries, vs.byVer[v])
		}
	}
	ms, err := r.openAll(entries, batch)
	if err != nil {
		return nil, err
	}
	out := make([]Loaded, len(entries))
	for i, e := range entries {
		out[i] = Loaded{MD: cloneMetadata(e.md), Material: ms[i]}
		if n := e.leaseNs.Load(); n != 0 {
			out[i].LeaseUntil = time.Unix(0, n)
		}
	}
	return out, nil
}

// openAll opens entries' materials (copies the caller wipes): with batch,
// in one enclave call where the enclave can, else one by one. errGone if
// one of them was destroyed meanwhile; on error nothing is left to wipe.
func (r *Ring) openAll(entries []*entry, batch bool) ([]*secret.Bytes, error) {
	if bo, ok := r.enc.(enclave.BatchOpener); ok && batch && len(entries) > 1 {
		prots := make([]enclave.Protected, len(entries))
		for i, e := range entries {
			if e.dead.Load() {
				return nil, errGone
			}
			prots[i] = e.prot
		}
		ms, err := bo.OpenAll(prots)
		if err != nil && slices.ContainsFunc(entries, func(e *entry) bool { return e.dead.Load() }) {
			return nil, errGone // destroyed between the check and the open
		}
		return ms, err
	}
	ms := make([]*secret.Bytes, len(entries))
	for i, e := range entries {
		m, err := e.open()
		if err != nil {
			for _, m := range ms[:i] {
				m.Wipe()
			}
			return nil, err
		}
		ms[i] = m
	}
	return ms, nil
}

// open returns a copy of the entry's material (the caller wipes it), or
// errGone once the entry is destroyed: destroy sets dead before it waits
// for e.mu and destroys the protected material after, so under e.mu a
// live entry's material is still there.
func (e *entry) open() (*secret.Bytes, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead.Load() {
		return nil, errGone
	}
	return e.prot.Open()
}

// RenewAll moves the lease of every loaded key to until (never past a
// key's expiry).
func (r *Ring) RenewAll(until time.Time) {
	for _, id := range r.IDs() {
		r.Renew(id, until)
	}
}

// cloneMetadata deep-copies md, so the ring never shares its pointers,
// maps and slices with callers.
func cloneMetadata(md api.KeyMetadata) api.KeyMetadata {
	if md.ExpiresAt != nil {
		t := *md.ExpiresAt
		md.ExpiresAt = &t
	}
	if md.Labels != nil {
		md.Labels = maps.Clone(md.Labels)
	}
	if md.Policy != nil {
		p := api.Policy{Rules: make([]api.PolicyRule, len(md.Policy.Rules))}
		for i, r := range md.Policy.Rules {
			p.Rules[i] = api.PolicyRule{Principals: slices.Clone(r.Principals), Actions: slices.Clone(r.Actions)}
		}
		if md.Policy.Limits != nil {
			l := *md.Policy.Limits
			p.Limits = &l
		}
		md.Policy = &p
	}
	return md
}
