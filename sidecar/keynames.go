package sidecar

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/dcaas/dcaas/api"
)

// keyNames maps sidecar-local names to key ids: the :name of the transit
// API. A key has at most one name; names live in memory, like keys.
type keyNames struct {
	mu     sync.RWMutex
	byName map[string]string // name → key id
	byKey  map[string]string // key id → name
}

// keyNameRule is transit's key name rule (GenericNameRegex), bounded.
var keyNameRule = regexp.MustCompile(`^\w([\w.@-]{0,126}\w)?$`)

// SetKeyName gives a loaded key a sidecar-local name, which the transit
// API (/v1/transit/encrypt/{name} and the rest) then accepts for it; the
// key id is always accepted too. A key has at most one name: setting
// another replaces it. A name already given to another key is a conflict
// (remove it first), and a name may not be, or look like, a key id
// ("key_…", "drv_…"). The
// name outlives eviction and reloading of the key (a rotation keeps it),
// but not the sidecar.
func (s *Sidecar) SetKeyName(keyID, name string) error {
	if !keyNameRule.MatchString(name) {
		return api.Errorf(api.CodeInvalidArgument, "name %q: use 1 to 128 letters, digits and _ . @ -, starting and ending with a letter, digit or _.", name)
	}
	if strings.HasPrefix(name, "key_") || strings.HasPrefix(name, "drv_") {
		// Names are resolved before ids: one shaped like an id could hide
		// a key loaded later.
		return api.Errorf(api.CodeInvalidArgument, "name %q looks like a dcaas key id (key_…, drv_…); choose another name.", name)
	}
	loaded := s.loadedIDs()
	if _, ok := slices.BinarySearch(loaded, keyID); !ok {
		if s.ring.Revoked(keyID) {
			return api.Errorf(api.CodeRevoked, "Key %s has been revoked by the KMS and was evicted; this sidecar will not load it again.", keyID)
		}
		return api.Errorf(api.CodeNotFound, "Key %s is not loaded in this sidecar.", keyID)
	}
	if _, ok := slices.BinarySearch(loaded, name); ok {
		return api.Errorf(api.CodeInvalidArgument, "name %q is the id of a loaded key; choose another name.", name)
	}
	n := &s.names
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.byName == nil {
		n.byName, n.byKey = map[string]string{}, map[string]string{}
	}
	if other, ok := n.byName[name]; ok && other != keyID {
		return api.Errorf(api.CodeConflict, "name %q already names key %s; remove it first (DELETE /v1/keys/%s/name).", name, other, other)
	}
	if old, ok := n.byKey[keyID]; ok {
		delete(n.byName, old)
	}
	n.byName[name], n.byKey[keyID] = keyID, name
	return nil
}

// RemoveKeyName removes the name of keyID and returns it; ok is false if
// the key had none.
func (s *Sidecar) RemoveKeyName(keyID string) (name string, ok bool) {
	n := &s.names
	n.mu.Lock()
	defer n.mu.Unlock()
	if name, ok = n.byKey[keyID]; ok {
		delete(n.byKey, keyID)
		delete(n.byName, name)
	}
	return name, ok
}

// KeyNames lists the names set with SetKeyName, sorted by name.
func (s *Sidecar) KeyNames() []api.KeyName {
	n := &s.names
	n.mu.RLock()
	out := make([]api.KeyName, 0, len(n.byName))
	for name, id := range n.byName {
		out = append(out, api.KeyName{Name: name, KeyID: id})
	}
	n.mu.RUnlock()
	slices.SortFunc(out, func(a, b api.KeyName) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ResolveKeyName returns the key id name stands for: the key given that
// name with SetKeyName, or else name itself, taken as a key id (whether
// such a key is loaded is for the operation to find out).
func (s *Sidecar) ResolveKeyName(name string) string {
	n := &s.names
	n.mu.RLock()
	id, ok := n.byName[name]
	n.mu.RUnlock()
	if ok {
		return id
	}
	return name
}

// loadedIDs lists the loaded key ids, sorted.
func (s *Sidecar) loadedIDs() []string {
	var ids []string
	for _, k := range s.Keys() {
		ids = append(ids, k.KeyID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// keyVersions lists the loaded versions of keyID, oldest first.
func (s *Sidecar) keyVersions(keyID string) []api.LoadedKey {
	var out []api.LoadedKey
	for _, k := range s.Keys() {
		if k.KeyID == keyID {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b api.LoadedKey) int { return a.Version - b.Version })
	return out
}

func (s *Sidecar) keyNameRoutes() {
	s.handle("PUT /v1/keys/{key_id}/name", "keys.name.set", bodyLimit, true, func(_ context.Context, decode func(any) error, r *http.Request) (any, error) {
		var req api.SetKeyNameRequest
		if err := decode(&req); err != nil {
			return nil, err
		}
		id := r.PathValue("key_id")
		if err := s.SetKeyName(id, req.Name); err != nil {
			return nil, err
		}
		return api.KeyName{Name: req.Name, KeyID: id}, nil
	})
	s.handle("DELETE /v1/keys/{key_id}/name", "keys.name.delete", 0, true, func(_ context.Context, _ func(any) error, r *http.Request) (any, error) {
		id := r.PathValue("key_id")
		name, ok := s.RemoveKeyName(id)
		if !ok {
			return nil, api.Errorf(api.CodeNotFound, "Key %s has no name.", id)
		}
		return api.KeyName{Name: name, KeyID: id}, nil
	})
	s.handle("GET /v1/keys/names", "keys.names", 0, false, func(context.Context, func(any) error, *http.Request) (any, error) {
		return api.KeyNames{Names: s.KeyNames()}, nil
	})
}
