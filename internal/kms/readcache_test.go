package kms

import (
	"context"
	"errors"
	"maps"
	"math"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/internal/store"
)

// TestReadCacheRules: what the read cache keeps and when it forgets
// (readcache.go), case by case.
func TestReadCacheRules(t *testing.T) {
	ref := store.KeyRef{KeyID: "k1", Version: 2}
	who := &caller{DN: "CN=payments-api", Role: "custodian", Tenant: "acme", Name: "payments-api"}
	tests := []struct {
		name     string
		on       bool
		between  func(c *readCache) // between the read (gen taken) and the put
		after    func(c *readCache) // after the put
		wantKept bool
	}{
		{name: "kept", on: true, wantKept: true},
		{name: "off (a shared store)", on: false},
		{name: "a change after the put forgets it", on: true, after: (*readCache).changed},
		{name: "a change between read and put: not kept", on: true, between: (*readCache).changed},
		{name: "expired", on: true, after: func(c *readCache) {
			for _, e := range c.reg {
				e.expires = e.expires.Add(-2 * ReadCacheTTL)
			}
			for s, e := range c.ids {
				e.expires = e.expires.Add(-2 * ReadCacheTTL)
				c.ids[s] = e
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &readCache{on: tc.on}
			gen := c.gen.Load()
			if tc.between != nil {
				tc.between(c)
			}
			c.putIdentity("01", who, gen)
			c.putEntry(ref, store.Key{KeyID: "k1"}, store.KeyVersion{KeyID: "k1", Version: 2, Encryptions: 5, EKB: []byte("ekb")}, 7, gen)
			if tc.after != nil {
				tc.after(c)
			}
			got, okID := c.identity("01")
			_, v, okReg := c.entry(ref)
			if okID != tc.wantKept || okReg != tc.wantKept {
				t.Fatalf("identity kept %v, entry kept %v; want %v", okID, okReg, tc.wantKept)
			}
			if tc.wantKept && (*got != *who || v.Encryptions != 5 || v.EKB != nil) {
				t.Fatalf("got %+v and %+v; want the identity, 5 encryptions and no EKB kept", got, v)
			}
		})
	}
}

// TestReadCacheUsage: the usage this KMS stored is added to the cached
// version, saturating as the store does; other versions are untouched.
func TestReadCacheUsage(t *testing.T) {
	c := &readCache{on: true}
	ref := store.KeyRef{KeyID: "k1", Version: 1}
	c.putEntry(ref, store.Key{KeyID: "k1"}, store.KeyVersion{KeyID: "k1", Version: 1, Encryptions: 7, Bytes: 70}, -1, c.gen.Load())
	c.noteUsage([]store.KeyUsage{{KeyID: "k1", Version: 1, Encryptions: 3, Bytes: 30}, {KeyID: "k1", Version: 9, Encryptions: 1}})
	if _, v, _ := c.entry(ref); v.Encryptions != 10 || v.Bytes != 100 {
		t.Fatalf("after noteUsage: %d encryptions, %d bytes; want 10, 100", v.Encryptions, v.Bytes)
	}
	c.noteUsage([]store.KeyUsage{{KeyID: "k1", Version: 1, Encryptions: math.MaxInt64, Bytes: 1}})
	if _, v, _ := c.entry(ref); v.Encryptions != math.MaxInt64 || v.Bytes != 101 {
		t.Fatalf("saturated: %d encryptions, %d bytes", v.Encryptions, v.Bytes)
	}
	if _, _, ok := c.entry(store.KeyRef{KeyID: "k1", Version: 9}); ok {
		t.Fatal("noteUsage made an entry for a version not cached")
	}
}

// TestReadCacheBounded: at most readCacheMax entries of each kind.
func TestReadCacheBounded(t *testing.T) {
	c := &readCache{on: true}
	for i := range readCacheMaxEntries + 10 {
		c.putEntry(store.KeyRef{KeyID: "k", Version: i}, store.Key{}, store.KeyVersion{}, -1, c.gen.Load())
		c.putIdentity(string(rune(i)), &caller{}, c.gen.Load())
	}
	if len(c.reg) > readCacheMaxEntries || len(c.ids) > readCacheMax {
		t.Fatalf("%d entries, %d identities; want at most %d", len(c.reg), len(c.ids), readCacheMax)
	}
}

// entriesStore is a store.Store that answers GetKeysAndVersions from a
// fixed registry (every key has versions 1 and 2) and notes how many
// reads ran; fail makes every read fail.
type entriesStore struct {
	store.Store
	mu    sync.Mutex
	reads int
	fail  error
}

func (s *entriesStore) GetKeysAndVersions(_ context.Context, refs []store.KeyRef) (map[string]store.Key, map[store.KeyRef]store.KeyVersion, error) {
	s.mu.Lock()
	s.reads++
	s.mu.Unlock()
	if s.fail != nil {
		return nil, nil, s.fail
	}
	keys := map[string]store.Key{}
	versions := map[store.KeyRef]store.KeyVersion{}
	for _, r := range refs {
		if strings.HasPrefix(r.KeyID, "unknown") {
			continue
		}
		keys[r.KeyID] = store.Key{KeyID: r.KeyID, CurrentVersion: 2}
		if r.Version == 1 || r.Version == 2 {
			versions[r] = store.KeyVersion{KeyID: r.KeyID, Version: r.Version, Encryptions: int64(len(r.KeyID))}
		}
	}
	return keys, versions, nil
}

// TestReadEntries: a large batch is read in parts at once, and the parts
// together answer what one read would; a part that fails fails the batch.
func TestReadEntries(t *testing.T) {
	var refs []store.KeyRef
	for i := range 1200 {
		id := "dk_" + strconv.Itoa(i%1000) // keys 0..199 twice, at versions 1 and 2
		if i%97 == 0 {
			id = "unknown_" + strconv.Itoa(i)
		}
		refs = append(refs, store.KeyRef{KeyID: id, Version: 1 + i/1000})
	}
	refs = append(refs, store.KeyRef{KeyID: "dk_1", Version: 9}) // an unknown version
	whole := &entriesStore{}
	wantKeys, wantVersions, _ := whole.GetKeysAndVersions(t.Context(), refs)

	st := &entriesStore{}
	k := &KMS{st: st}
	keys, versions, err := k.readEntries(t.Context(), refs)
	if err != nil {
		t.Fatal(err)
	}
	if want := min(runtime.GOMAXPROCS(0), len(refs)/entriesPerReader); max(want, 1) != st.reads {
		t.Errorf("%d reads, want %d", st.reads, max(want, 1))
	}
	if !maps.Equal(keys, wantKeys) || !maps.EqualFunc(versions, wantVersions, func(a, b store.KeyVersion) bool { return reflect.DeepEqual(a, b) }) {
		t.Errorf("readEntries = %d keys, %d versions; one read: %d, %d", len(keys), len(versions), len(wantKeys), len(wantVersions))
	}

	boom := errors.New("boom")
	k.st = &entriesStore{fail: boom}
	if _, _, err := k.readEntries(t.Context(), refs); !errors.Is(err, boom) {
		t.Errorf("a failing read: err = %v, want %v", err, boom)
	}
}
