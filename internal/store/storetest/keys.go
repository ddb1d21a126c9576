package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

func newKey(id string, retained bool) (store.Key, store.KeyVersion) {
	k := store.Key{
		KeyID:          id,
		Tenant:         "acme",
		Owner:          "CN=payments,OU=acme,O=dcaas",
		Type:           "aes-256-gcm",
		CurrentVersion: 1,
		Retained:       retained,
		CreatedAt:      at(0),
	}
	v := store.KeyVersion{KeyID: id, Version: 1, CreatedAt: at(time.Nanosecond)}
	if retained {
		v.EKB = []byte("ekb v1 of " + id)
	}
	return k, v
}

var keysTests = []test{
	{"CreateKey/RoundTrip", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		retained, rv := newKey("k-retained", true)
		disabled, dv := newKey("k-disabled", false)
		disabled.DisabledAt = ptr(at(time.Hour))
		disabled.Type = "ed25519"
		for _, c := range []struct {
			k store.Key
			v store.KeyVersion
		}{{retained, rv}, {disabled, dv}} {
			check(t, fmt.Sprintf("CreateKey(%s)", c.k.KeyID), s.CreateKey(ctx, c.k, c.v))
			got, err := s.GetKey(ctx, c.k.KeyID)
			wantEqual(t, fmt.Sprintf("GetKey(%s)", c.k.KeyID), got, err, c.k, eqKey)
			gotV, err := s.GetKeyVersion(ctx, c.k.KeyID, 1)
			wantEqual(t, fmt.Sprintf("GetKeyVersion(%s, 1)", c.k.KeyID), gotV, err, c.v, eqKeyVersion)
		}
	}},
	{"CreateKey/Exists", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v := newKey("k1", true)
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v))
		k2, v2 := newKey("k1", false)
		wantErr(t, "CreateKey(k1) again", s.CreateKey(ctx, k2, v2), store.ErrExists)
		got, err := s.GetKey(ctx, "k1")
		wantEqual(t, "GetKey(k1) after a refused CreateKey", got, err, k, eqKey)
	}},
	{"CreateKey/NotVersion1", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v := newKey("k1", true)
		k.CurrentVersion, v.Version = 2, 2
		if err := s.CreateKey(ctx, k, v); err == nil {
			t.Errorf("CreateKey(k1, version 2) = nil, want an error")
		}
		_, err := s.GetKey(ctx, "k1")
		wantErr(t, "GetKey(k1) after a refused CreateKey", err, store.ErrNotFound)
		_, err = s.GetKeyVersion(ctx, "k1", 2)
		wantErr(t, "GetKeyVersion(k1, 2) after a refused CreateKey", err, store.ErrNotFound)
	}},
	{"GetKey/NotFound", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v := newKey("k1", true)
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v))
		for _, id := range []string{"k2", "K1", ""} {
			_, err := s.GetKey(ctx, id)
			wantErr(t, fmt.Sprintf("GetKey(%q)", id), err, store.ErrNotFound)
		}
	}},
	{"AddKeyVersion", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v1 := newKey("k1", true)
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v1))
		added := addVersions(t, nextVersionSteps,
			"AddKeyVersion(k1, %d)", func(i, version int) (store.KeyVersion, error) {
				v := store.KeyVersion{KeyID: "k1", Version: version, EKB: fmt.Appendf(nil, "ekb, step %d", i), CreatedAt: at(time.Duration(i) * time.Hour)}
				return v, s.AddKeyVersion(ctx, v)
			},
			"GetKey(k1).CurrentVersion", func() (int, error) {
				got, err := s.GetKey(ctx, "k1")
				return got.CurrentVersion, err
			})
		added[1] = v1
		for ver, want := range added {
			got, err := s.GetKeyVersion(ctx, "k1", ver)
			wantEqual(t, fmt.Sprintf("GetKeyVersion(k1, %d)", ver), got, err, want, eqKeyVersion)
		}
	}},
	{"AddKeyVersion/NotRetained", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v1 := newKey("k1", false)
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v1))
		v2 := store.KeyVersion{KeyID: "k1", Version: 2, CreatedAt: at(time.Hour)}
		check(t, "AddKeyVersion(k1, 2)", s.AddKeyVersion(ctx, v2))
		got, err := s.GetKeyVersion(ctx, "k1", 2)
		wantEqual(t, "GetKeyVersion(k1, 2)", got, err, v2, eqKeyVersion)
	}},
	{"AddKeyVersion/UnknownKey", func(t *testing.T, s store.Store) {
		err := s.AddKeyVersion(t.Context(), store.KeyVersion{KeyID: "nope", Version: 2, CreatedAt: t0})
		wantErr(t, "AddKeyVersion(nope, 2)", err, store.ErrNotFound)
	}},
	{"GetKeyVersion/NotFound", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v := newKey("k1", true)
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v))
		for _, c := range []struct {
			id      string
			version int
		}{{"k1", 2}, {"k1", 0}, {"k2", 1}, {"", 1}} {
			_, err := s.GetKeyVersion(ctx, c.id, c.version)
			wantErr(t, fmt.Sprintf("GetKeyVersion(%q, %d)", c.id, c.version), err, store.ErrNotFound)
		}
	}},
	{"GetKeys/GetKeysAndVersions", func(t *testing.T, s store.Store) {
		// The batch reads answer exactly what GetKey and GetKeyVersion
		// answer one at a time, leave out what does not exist, and take
		// more ids than one statement holds.
		ctx := t.Context()
		var ids []string
		var refs []store.KeyRef
		for i := range 1203 {
			id := fmt.Sprintf("k%04d", i)
			k, v := newKey(id, i%2 == 0)
			check(t, "CreateKey("+id+")", s.CreateKey(ctx, k, v))
			if i%3 == 0 {
				check(t, "AddKeyVersion("+id+", 2)", s.AddKeyVersion(ctx, store.KeyVersion{KeyID: id, Version: 2, EKB: []byte("v2 of " + id), CreatedAt: at(time.Hour), Encryptions: int64(i)}))
			}
			ids = append(ids, id)
			refs = append(refs, store.KeyRef{KeyID: id, Version: 1}, store.KeyRef{KeyID: id, Version: 2})
		}
		ids = append(ids, "missing", "", "k0001") // unknown ids, and one twice
		refs = append(refs, store.KeyRef{KeyID: "missing", Version: 1}, store.KeyRef{KeyID: "k0000", Version: 3}, store.KeyRef{KeyID: "k0000", Version: 1})
		keys, err := s.GetKeys(ctx, ids)
		check(t, "GetKeys", err)
		if len(keys) != 1203 {
			t.Errorf("GetKeys returned %d keys, want 1203", len(keys))
		}
		for _, id := range ids {
			want, werr := s.GetKey(ctx, id)
			got, ok := keys[id]
			if ok != (werr == nil) || ok && !eqKey(got, want) {
				t.Fatalf("GetKeys[%q] = %s, %v; GetKey = %s, %v", id, show(got), ok, show(want), werr)
			}
		}
		joined, versions, err := s.GetKeysAndVersions(ctx, refs)
		check(t, "GetKeysAndVersions", err)
		if want := 1203 + 401; len(versions) != want || len(joined) != 1203 {
			t.Errorf("GetKeysAndVersions returned %d keys and %d versions, want 1203 and %d", len(joined), len(versions), want)
		}
		for _, r := range refs {
			want, werr := s.GetKeyVersion(ctx, r.KeyID, r.Version)
			got, ok := versions[r]
			if ok != (werr == nil) || ok && !eqKeyVersion(got, want) {
				t.Fatalf("GetKeysAndVersions[%v] = %s, %v; GetKeyVersion = %s, %v", r, show(got), ok, show(want), werr)
			}
			wantKey, kerr := s.GetKey(ctx, r.KeyID)
			gotKey, ok := joined[r.KeyID]
			if ok != (kerr == nil) || ok && !eqKey(gotKey, wantKey) {
				t.Fatalf("GetKeysAndVersions key %q = %s, %v; GetKey = %s, %v", r.KeyID, show(gotKey), ok, show(wantKey), kerr)
			}
		}
		if got, err := s.GetKeys(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("GetKeys(nil) = %v, %v", got, err)
		}
		if gotKeys, got, err := s.GetKeysAndVersions(ctx, nil); err != nil || len(got) != 0 || len(gotKeys) != 0 {
			t.Errorf("GetKeysAndVersions(nil) = %v, %v, %v", gotKeys, got, err)
		}
	}},
	{"ListKeyVersions", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		for _, retained := range []bool{true, false} {
			id := fmt.Sprintf("k-retained-%t", retained)
			k, v1 := newKey(id, retained)
			check(t, fmt.Sprintf("CreateKey(%s)", id), s.CreateKey(ctx, k, v1))
			want := []store.KeyVersion{v1}
			for ver := 2; ver <= 4; ver++ {
				v := store.KeyVersion{KeyID: id, Version: ver, CreatedAt: at(time.Duration(ver) * time.Hour)}
				if retained {
					v.EKB = fmt.Appendf(nil, "ekb v%d of %s", ver, id)
				}
				check(t, fmt.Sprintf("AddKeyVersion(%s, %d)", id, ver), s.AddKeyVersion(ctx, v))
				want = append(want, v)
			}
			got, err := s.ListKeyVersions(ctx, id)
			check(t, fmt.Sprintf("ListKeyVersions(%s)", id), err)
			if !slices.EqualFunc(got, want, eqKeyVersion) {
				t.Errorf("ListKeyVersions(%s) = %s, want %s", id, show(got), show(want))
			}
		}
		// Another key's versions stay out.
		k, v := newKey("k-other", true)
		check(t, "CreateKey(k-other)", s.CreateKey(ctx, k, v))
		got, err := s.ListKeyVersions(ctx, "k-other")
		check(t, "ListKeyVersions(k-other)", err)
		if !slices.EqualFunc(got, []store.KeyVersion{v}, eqKeyVersion) {
			t.Errorf("ListKeyVersions(k-other) = %s, want %s", show(got), show([]store.KeyVersion{v}))
		}
	}},
	{"ListKeyVersions/NotFound", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v := newKey("k1", true)
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v))
		for _, id := range []string{"k2", "K1", ""} {
			got, err := s.ListKeyVersions(ctx, id)
			wantErr(t, fmt.Sprintf("ListKeyVersions(%q)", id), err, store.ErrNotFound)
			if len(got) != 0 {
				t.Errorf("ListKeyVersions(%q) = %s, want none", id, show(got))
			}
		}
	}},
	{"DisableKey", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k1, v1 := newKey("k1", true)
		k2, v2 := newKey("k2", true)
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k1, v1))
		check(t, "CreateKey(k2)", s.CreateKey(ctx, k2, v2))
		when := at(time.Hour)
		check(t, "DisableKey(k1)", s.DisableKey(ctx, "k1", when))
		want := k1
		want.DisabledAt = &when
		for _, c := range []struct {
			id   string
			want store.Key
		}{{"k1", want}, {"k2", k2}} {
			got, err := s.GetKey(ctx, c.id)
			wantEqual(t, fmt.Sprintf("after DisableKey(k1): GetKey(%s)", c.id), got, err, c.want, eqKey)
		}
		wantFeed(t, s, "acme", []store.Revocation{keyEvent(1, "acme", "k1", when)})
		wantLast(t, s, 1)
	}},
	{"DisableKey/Idempotent", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v := newKey("k1", false)
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v))
		first := at(time.Hour)
		check(t, "DisableKey(k1)", s.DisableKey(ctx, "k1", first))
		check(t, "DisableKey(k1) later", s.DisableKey(ctx, "k1", at(2*time.Hour)))
		check(t, "DisableKey(k1) earlier", s.DisableKey(ctx, "k1", at(time.Minute)))
		got, err := s.GetKey(ctx, "k1")
		check(t, "GetKey(k1)", err)
		if !timePtrEqual(got.DisabledAt, &first) {
			t.Errorf("GetKey(k1).DisabledAt = %s, want the first %s", show(got.DisabledAt), show(first))
		}
		wantFeed(t, s, "acme", []store.Revocation{keyEvent(1, "acme", "k1", first)})
		wantLast(t, s, 1)
	}},
	{"DisableKey/NotFound", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v := newKey("k1", true)
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v))
		for _, id := range []string{"k2", "K1", ""} {
			wantErr(t, fmt.Sprintf("DisableKey(%q)", id), s.DisableKey(ctx, id, t0), store.ErrNotFound)
		}
		got, err := s.GetKey(ctx, "k1")
		check(t, "GetKey(k1)", err)
		if got.DisabledAt != nil {
			t.Errorf("GetKey(k1).DisabledAt = %s, want nil", show(got.DisabledAt))
		}
		wantLast(t, s, 0)
	}},
}
