package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
)

// fakeResolver is a Resolver over a map of keys. Each key id has an allow
// list (nil: every action). It counts acquisitions and releases, so a test
// proves the engine releases every key it acquires, on error paths too.
type fakeResolver struct {
	keys  map[string]map[int]*kcrypto.Key // key id → version → key
	allow map[string][]api.Action
	// alias makes the resolver misbehave: asked for the key, it returns
	// another one.
	alias map[string]string
	// broken key ids fail with a non-API error.
	broken map[string]bool

	acquired, released, doubles atomic.Int64

	mu    sync.Mutex
	calls []call
}

// call is one Acquire the engine made.
type call struct {
	KeyID   string
	Version int
	Action  api.Action
}

// errDisk is what a broken key fails with: not an API error.
var errDisk = errors.New("fake resolver: disk on fire")

func newFakeResolver() *fakeResolver {
	return &fakeResolver{
		keys:   map[string]map[int]*kcrypto.Key{},
		allow:  map[string][]api.Action{},
		alias:  map[string]string{},
		broken: map[string]bool{},
	}
}

// add loads version of keyID, built from m (which stays the caller's).
func (f *fakeResolver) add(t testing.TB, typ api.KeyType, keyID string, version int, m *secret.Bytes, allow ...api.Action) {
	t.Helper()
	k, err := kcrypto.NewKey(typ, keyID, uint32(version), m)
	if err != nil {
		t.Fatalf("NewKey(%s %s v%d) = %v", typ, keyID, version, err)
	}
	t.Cleanup(k.Wipe)
	if f.keys[keyID] == nil {
		f.keys[keyID] = map[int]*kcrypto.Key{}
	}
	f.keys[keyID][version] = k
	if allow != nil {
		f.allow[keyID] = allow
	}
}

func (f *fakeResolver) Acquire(_ context.Context, ref api.KeyRef, version int, action api.Action) (*kcrypto.Key, Releaser, error) {
	f.mu.Lock()
	f.calls = append(f.calls, call{ref.KeyID, version, action})
	f.mu.Unlock()
	if len(ref.SealedKey) > 0 || len(ref.EKB) > 0 {
		return nil, nil, api.Errorf(api.CodeInvalidArgument, "the fake resolver takes key ids only")
	}
	if f.broken[ref.KeyID] {
		return nil, nil, errDisk
	}
	id := ref.KeyID
	if a, ok := f.alias[id]; ok {
		id = a
	}
	vs := f.keys[id]
	if vs == nil {
		return nil, nil, api.Errorf(api.CodeNotFound, "no key %s", ref.KeyID)
	}
	if version == 0 {
		for v := range vs {
			version = max(version, v)
		}
	}
	k := vs[version]
	if k == nil {
		return nil, nil, api.Errorf(api.CodeNotFound, "no version %d of %s", version, ref.KeyID)
	}
	if allow, ok := f.allow[ref.KeyID]; ok && !slices.Contains(allow, action) {
		return nil, nil, api.Errorf(api.CodePolicyDenied, "%s not allowed on %s", action, ref.KeyID)
	}
	f.acquired.Add(1)
	return k, &release1{f: f}, nil
}

// release1 is the Releaser of one acquisition.
type release1 struct {
	f    *fakeResolver
	done atomic.Bool
}

func (r *release1) Release() {
	if r.done.Swap(true) {
		r.f.doubles.Add(1)
		return
	}
	r.f.released.Add(1)
}

// balanced reports an error unless every acquisition was released once.
func (f *fakeResolver) balanced() error {
	a, r, d := f.acquired.Load(), f.released.Load(), f.doubles.Load()
	if a != r || d != 0 {
		return fmt.Errorf("%d keys acquired, %d released, %d released twice", a, r, d)
	}
	return nil
}

// lastCall is the engine's last Acquire.
func (f *fakeResolver) lastCall() (call, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return call{}, false
	}
	return f.calls[len(f.calls)-1], true
}

func (f *fakeResolver) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}
