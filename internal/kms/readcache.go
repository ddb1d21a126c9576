package kms

import (
	"context"
	"maps"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/parallel"
	"github.com/dcaas/dcaas/internal/store"
)

// Every central operation used to read two rows before its crypto: the
// caller's certificate with its application (authenticate) and the key's
// registry entry with the version (registryEntry), each a query through
// database/sql — together about a fifth of the central path's CPU. The KMS
// remembers both for a short time, and forgets all of them whenever it
// commits a change of its own:
//
//   - A change made through this KMS — a certificate revoked, an
//     application deleted, a key disabled, a version retired, anything
//     but the usage and the audit record of an operation or the records
//     of a release (call.readsKept) — empties the cache before its call
//     is answered (changed), so it takes effect at once on the next
//     request, as without a cache. An entry read before such a change and
//     offered after it is not kept (the generation it was read under has
//     passed).
//   - Entries also expire ReadCacheTTL after they were read, which bounds
//     what a change made behind the KMS's back (a tool writing the SQLite
//     file while the KMS runs, which is not supported) could go unseen.
//   - Usage: what this KMS stored for a cached version is added to the
//     cached count (noteUsage), so the safe limit is enforced as before.
//     Within the second, requests racing one another may see a count a
//     few requests off — as concurrent requests always could, each
//     checking the count it read — and it is read afresh after it.
//   - A release also checks the revocation feed since the entry was read
//     (registryOf, stillReleasable): a cached entry cannot release a key
//     disabled after it was read, even behind the KMS's back.
//
// The cache is on only when this KMS is the database's one writer: Open
// claimed the store for this process (store.SoleWriter: the embedded
// SQLite store, which serves one KMS process, and refuses a second while
// the first runs). With PostgreSQL, which replicas share, every request
// reads both rows, so a certificate revoked or a key disabled through one
// replica is refused by every other at its next request.
//
// Only application certificates' identities are kept, not sidecar
// instances': a sidecar's requests are few and each reads its instance
// afresh. Only what was found is kept; an unknown certificate or key is
// looked up every time. At most readCacheMax identities and
// readCacheMaxEntries registry entries are kept.

const (
	// ReadCacheTTL is how long the KMS may remember a read (a benchmark
	// of first loads waits this long between flows).
	ReadCacheTTL        = time.Second
	readCacheMax        = 4096  // identities
	readCacheMaxEntries = 16384 // registry entries (a release batch is up to 10,000)
)

type readCache struct {
	on  bool          // this KMS is the store's one writer (Config.soleWriter)
	gen atomic.Uint64 // bumped by changed; an entry is good only under the generation it was read in

	mu  sync.Mutex
	ids map[string]cachedIdentity   // by certificate serial
	reg map[store.KeyRef]*cachedReg // by key id and version
}

type cachedIdentity struct {
	who     caller
	gen     uint64
	expires time.Time
}

type cachedReg struct {
	key     store.Key
	version store.KeyVersion // without its EKB; Encryptions and Bytes include what noteUsage added
	// feedSeq is where the revocation feed stood before the rows were
	// read (a release's stillReleasable looks at the events after it), or
	// -1 when the reader did not look (the central path).
	feedSeq int64
	gen     uint64
	expires time.Time
}

// changed forgets every entry: the KMS committed a change that may touch
// one of them.
func (c *readCache) changed() {
	c.gen.Add(1)
	c.mu.Lock()
	c.ids, c.reg = nil, nil
	c.mu.Unlock()
}

// identity returns the cached caller of the certificate serial, or
// ok false.
func (c *readCache) identity(serial string) (who *caller, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.ids[serial]
	if !ok || !c.good(e.gen, e.expires) {
		return nil, false
	}
	w := e.who
	return &w, true
}

// putIdentity keeps who for serial if nothing changed since gen, when it
// was read.
func (c *readCache) putIdentity(serial string, who *caller, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on || gen != c.gen.Load() {
		return
	}
	if c.ids == nil || len(c.ids) >= readCacheMax {
		c.ids = make(map[string]cachedIdentity)
	}
	c.ids[serial] = cachedIdentity{who: *who, gen: gen, expires: time.Now().Add(ReadCacheTTL)}
}

// entry returns the cached registry rows of ref, or ok false.
func (c *readCache) entry(ref store.KeyRef) (store.Key, store.KeyVersion, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.liveLocked(ref)
	if e == nil {
		return store.Key{}, store.KeyVersion{}, false
	}
	return e.key, e.version, true
}

// liveLocked returns ref's entry if it is good now; c.mu is held.
func (c *readCache) liveLocked(ref store.KeyRef) *cachedReg {
	e, ok := c.reg[ref]
	if !ok || !c.good(e.gen, e.expires) {
		return nil
	}
	return e
}

// good reports whether an entry read under gen that expires at expires
// may be used now.
func (c *readCache) good(gen uint64, expires time.Time) bool {
	return c.on && gen == c.gen.Load() && time.Now().Before(expires)
}

// putEntry keeps the registry rows of ref if nothing changed since gen,
// when the feed stood at feedSeq (-1: not read).
func (c *readCache) putEntry(ref store.KeyRef, key store.Key, v store.KeyVersion, feedSeq int64, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(ref, key, v, feedSeq, gen)
}

func (c *readCache) putLocked(ref store.KeyRef, key store.Key, v store.KeyVersion, feedSeq int64, gen uint64) {
	if !c.on || gen != c.gen.Load() {
		return
	}
	if c.reg == nil || len(c.reg) >= readCacheMaxEntries {
		c.reg = make(map[store.KeyRef]*cachedReg)
	}
	v.EKB = nil // the checks do not need it; the KMS reads it where it does
	c.reg[ref] = &cachedReg{key: key, version: v, feedSeq: feedSeq, gen: gen, expires: time.Now().Add(ReadCacheTTL)}
}

// noteUsage adds counts, just stored, to the cached versions they count.
func (c *readCache) noteUsage(counts []store.KeyUsage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range counts {
		if e := c.reg[store.KeyRef{KeyID: u.KeyID, Version: u.Version}]; e != nil {
			e.version.Encryptions = addSaturating(e.version.Encryptions, u.Encryptions)
			e.version.Bytes = addSaturating(e.version.Bytes, u.Bytes)
		}
	}
}

// addSaturating is a+b for non-negative counts, stopping at the largest
// int64 as the store does.
func addSaturating(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}

// registryEntry is checkUsable and checkVersion with one read of the
// registry (the key and the version together), or none when the entry is
// cached (readcache.go).
func (k *KMS) registryEntry(ctx context.Context, md *api.KeyMetadata) (store.Key, store.KeyVersion, error) {
	ref := store.KeyRef{KeyID: md.KeyID, Version: md.Version}
	if key, v, ok := k.reads.entry(ref); ok {
		return k.checkEntry(md, key, true, v, true)
	}
	gen := k.reads.gen.Load()
	keys, versions, err := k.st.GetKeysAndVersions(ctx, []store.KeyRef{ref})
	if err != nil {
		return store.Key{}, store.KeyVersion{}, storeErr(err, "key")
	}
	key, keyOK := keys[md.KeyID]
	v, vOK := versions[ref]
	if keyOK && vOK {
		k.reads.putEntry(ref, key, v, -1, gen)
	}
	return k.checkEntry(md, key, keyOK, v, vOK)
}

// registryOf reads the registry entries of the keys and versions of a
// release batch — those not cached (with a feed position) in one
// statement per 500 keys — and notes in each key where the revocation
// feed stood before its entry was read (stillReleasable looks again at
// the keys events after it name). A rollout that loads the same keys into
// many sidecars reads them once a second, not once a sidecar.
func (k *KMS) registryOf(ctx context.Context, batch releasable) (map[string]store.Key, map[store.KeyRef]store.KeyVersion, error) {
	if len(batch) == 0 {
		return nil, nil, nil
	}
	keys := make(map[string]store.Key, len(batch))
	versions := make(map[store.KeyRef]store.KeyVersion, len(batch))
	var missing []*openedKey
	c := &k.reads
	c.mu.Lock()
	for _, o := range batch {
		ref := store.KeyRef{KeyID: o.md.KeyID, Version: o.md.Version}
		if e := c.liveLocked(ref); e != nil && e.feedSeq >= 0 {
			keys[ref.KeyID], versions[ref], o.feedSeq = e.key, e.version, e.feedSeq
			continue
		}
		missing = append(missing, o)
	}
	c.mu.Unlock()
	if len(missing) == 0 {
		return keys, versions, nil
	}
	// The feed's position before the registry is read.
	gen := c.gen.Load()
	feedSeq, err := k.st.LastRevocation(ctx)
	if err != nil {
		return nil, nil, storeErr(err, "revocation feed")
	}
	refs := make([]store.KeyRef, len(missing))
	for i, o := range missing {
		refs[i] = store.KeyRef{KeyID: o.md.KeyID, Version: o.md.Version}
		o.feedSeq = feedSeq
	}
	read, readVersions, err := k.readEntries(ctx, refs)
	if err != nil {
		return nil, nil, storeErr(err, "key")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ref := range refs {
		key, keyOK := read[ref.KeyID]
		v, vOK := readVersions[ref]
		if keyOK {
			keys[ref.KeyID] = key
		}
		if vOK {
			versions[ref] = v
		}
		if keyOK && vOK {
			c.putLocked(ref, key, v, feedSeq, gen)
		}
	}
	return keys, versions, nil
}

// entriesPerReader is the least number of registry entries worth a read of
// their own in readEntries.
const entriesPerReader = 250

// readEntries is GetKeysAndVersions of refs. A large batch is read in
// parts at once, one a core (the store has a pool of readers; on SQLite
// each part is a statement of its own, as the store's own 500-key
// statements already are, and the feed check at the release's commit
// covers every part alike): a first load of 1,000 keys spends most of its
// time here, and on one core.
func (k *KMS) readEntries(ctx context.Context, refs []store.KeyRef) (map[string]store.Key, map[store.KeyRef]store.KeyVersion, error) {
	parts := min(runtime.GOMAXPROCS(0), len(refs)/entriesPerReader)
	if parts <= 1 {
		return k.st.GetKeysAndVersions(ctx, refs)
	}
	size := (len(refs) + parts - 1) / parts
	type result struct {
		keys     map[string]store.Key
		versions map[store.KeyRef]store.KeyVersion
		err      error
	}
	res := make([]result, parts)
	parallel.For(parts, 1, func(i int) {
		r := &res[i]
		r.keys, r.versions, r.err = k.st.GetKeysAndVersions(ctx, refs[i*size:min((i+1)*size, len(refs))])
	})
	keys := make(map[string]store.Key, len(refs))
	versions := make(map[store.KeyRef]store.KeyVersion, len(refs))
	for _, r := range res {
		if r.err != nil {
			return nil, nil, r.err
		}
		maps.Copy(keys, r.keys)
		maps.Copy(versions, r.versions)
	}
	return keys, versions, nil
}
