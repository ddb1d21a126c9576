package storetest

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// sealedWorld stores two tenants, acme with master keys 1 to 3 and globex
// with 1, and the settings "ca" and "other"; it returns every sealed value
// Reseal(["ca", "missing"]) must see, sorted by sealedLess.
func sealedWorld(t *testing.T, s store.Store) []store.SealedValue {
	t.Helper()
	ctx := t.Context()
	for _, name := range []string{"acme", "globex"} {
		tn, mk := newTenant(name)
		check(t, "CreateTenant("+name+")", s.CreateTenant(ctx, tn, mk))
	}
	for v := 2; v <= 3; v++ {
		check(t, fmt.Sprintf("AddMasterKey(acme, %d)", v), s.AddMasterKey(ctx, store.MasterKey{
			Tenant: "acme", Version: v, Sealed: fmt.Appendf(nil, "sealed tmk v%d of acme", v), CreatedAt: at(time.Duration(v) * time.Hour),
		}))
	}
	for _, name := range []string{"ca", "other"} {
		_, err := s.PutSettingIfAbsent(ctx, name, []byte("record of "+name))
		check(t, "PutSettingIfAbsent("+name+")", err)
	}
	want := []store.SealedValue{
		{Kind: store.SealedHMACKey, Tenant: "acme", Value: []byte("sealed hmac key of acme")},
		{Kind: store.SealedHMACKey, Tenant: "globex", Value: []byte("sealed hmac key of globex")},
		{Kind: store.SealedMasterKey, Tenant: "acme", Version: 1, Value: []byte("sealed tmk v1 of acme")},
		{Kind: store.SealedMasterKey, Tenant: "acme", Version: 2, Value: []byte("sealed tmk v2 of acme")},
		{Kind: store.SealedMasterKey, Tenant: "acme", Version: 3, Value: []byte("sealed tmk v3 of acme")},
		{Kind: store.SealedMasterKey, Tenant: "globex", Version: 1, Value: []byte("sealed tmk v1 of globex")},
		{Kind: store.SealedSetting, Name: "ca", Value: []byte("record of ca")},
	}
	slices.SortFunc(want, sealedCmp)
	return want
}

func sealedCmp(a, b store.SealedValue) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Tenant, b.Tenant),
		cmp.Compare(a.Version, b.Version), cmp.Compare(a.Name, b.Name))
}

func eqSealed(a, b []store.SealedValue) bool {
	return slices.EqualFunc(a, b, func(x, y store.SealedValue) bool {
		return sealedCmp(x, y) == 0 && bytes.Equal(x.Value, y.Value)
	})
}

// storedSealed reads the values of want back through the ordinary getters.
func storedSealed(t *testing.T, s store.Store, want []store.SealedValue) []store.SealedValue {
	t.Helper()
	ctx := t.Context()
	got := slices.Clone(want)
	for i, v := range got {
		var err error
		switch v.Kind {
		case store.SealedHMACKey:
			var tn store.Tenant
			tn, err = s.GetTenant(ctx, v.Tenant)
			got[i].Value = tn.SealedHMACKey
		case store.SealedMasterKey:
			var mk store.MasterKey
			mk, err = s.GetMasterKey(ctx, v.Tenant, v.Version)
			got[i].Value = mk.Sealed
		case store.SealedSetting:
			got[i].Value, err = s.GetSetting(ctx, v.Name)
		}
		check(t, fmt.Sprintf("reading %s %s/%d/%s", v.Kind, v.Tenant, v.Version, v.Name), err)
	}
	return got
}

// resealed is the value each test's reseal function writes.
func resealed(v store.SealedValue) []byte { return append([]byte("resealed "), v.Value...) }

var sealedTests = []test{
	{"Reseal/Empty", func(t *testing.T, s store.Store) {
		calls := 0
		err := s.Reseal(t.Context(), []string{"ca"}, func(values []store.SealedValue) error {
			calls++
			if len(values) != 0 {
				t.Errorf("Reseal on an empty store passed %s, want nothing", show(values))
			}
			return nil
		})
		check(t, "Reseal(empty store)", err)
		if calls != 1 {
			t.Errorf("reseal called %d times, want 1", calls)
		}
	}},
	{"Reseal/ReplacesEveryValue", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		want := sealedWorld(t, s)
		before, err := s.GetTenant(ctx, "acme")
		check(t, "GetTenant(acme)", err)
		err = s.Reseal(ctx, []string{"ca", "missing"}, func(values []store.SealedValue) error {
			got := slices.Clone(values)
			slices.SortFunc(got, sealedCmp)
			if !eqSealed(got, want) {
				t.Errorf("Reseal passed %s, want %s", show(got), show(want))
			}
			for i := range values {
				values[i].Value = resealed(values[i])
				values[i].Tenant, values[i].Name = "ignored", "ignored" // only Value counts
			}
			return nil
		})
		check(t, "Reseal", err)
		next := slices.Clone(want)
		for i := range next {
			next[i].Value = resealed(want[i])
		}
		if got := storedSealed(t, s, want); !eqSealed(got, next) {
			t.Errorf("after Reseal the store holds %s, want %s", show(got), show(next))
		}
		after, err := s.GetTenant(ctx, "acme")
		check(t, "GetTenant(acme)", err)
		if after.MasterKeyVersion != before.MasterKeyVersion || !after.CreatedAt.Equal(before.CreatedAt) {
			t.Errorf("Reseal changed more than the sealed value: %s, was %s", show(after), show(before))
		}
		mk, err := s.GetMasterKey(ctx, "acme", 2)
		check(t, "GetMasterKey(acme, 2)", err)
		if !mk.CreatedAt.Equal(at(2 * time.Hour)) {
			t.Errorf("GetMasterKey(acme, 2).CreatedAt = %v, want %v", mk.CreatedAt, at(2*time.Hour))
		}
		if got, err := s.GetSetting(ctx, "other"); err != nil || string(got) != "record of other" {
			t.Errorf("GetSetting(other) = %q, %v; want it untouched", got, err)
		}
		_, err = s.GetSetting(ctx, "missing")
		wantErr(t, "GetSetting(missing)", err, store.ErrNotFound)
		_, err = s.GetTenant(ctx, "ignored")
		wantErr(t, "GetTenant(ignored)", err, store.ErrNotFound)
	}},
	{"Reseal/ErrorChangesNothing", func(t *testing.T, s store.Store) {
		want := sealedWorld(t, s)
		boom := errors.New("the new seal failed")
		err := s.Reseal(t.Context(), []string{"ca"}, func(values []store.SealedValue) error {
			for i := range values {
				values[i].Value = resealed(values[i])
			}
			return boom
		})
		wantErr(t, "Reseal(failing)", err, boom)
		if got := storedSealed(t, s, want); !eqSealed(got, want) {
			t.Errorf("after a failed Reseal the store holds %s, want %s", show(got), show(want))
		}
	}},
	{"Reseal/EmptyValueChangesNothing", func(t *testing.T, s store.Store) {
		want := sealedWorld(t, s)
		for _, empty := range [][]byte{nil, {}} {
			err := s.Reseal(t.Context(), []string{"ca"}, func(values []store.SealedValue) error {
				for i := range values {
					values[i].Value = resealed(values[i])
				}
				values[len(values)/2].Value = empty
				return nil
			})
			if err == nil {
				t.Errorf("Reseal leaving a value %q = nil, want an error", empty)
			}
			if got := storedSealed(t, s, want); !eqSealed(got, want) {
				t.Errorf("after a refused Reseal the store holds %s, want %s", show(got), show(want))
			}
		}
	}},
	{"Reseal/WritesWait", func(t *testing.T, s store.Store) {
		// A master key added while Reseal runs would stay under the old
		// root key: the store makes the writer wait.
		ctx := t.Context()
		sealedWorld(t, s)
		done := make(chan error, 1)
		added := store.MasterKey{Tenant: "globex", Version: 2, Sealed: []byte("sealed tmk v2 of globex"), CreatedAt: at(time.Hour)}
		err := s.Reseal(ctx, nil, func(values []store.SealedValue) error {
			go func() { done <- s.AddMasterKey(ctx, added) }()
			select {
			case err := <-done:
				t.Errorf("AddMasterKey finished during Reseal (error %v); want it to wait", err)
				done <- err
			case <-time.After(100 * time.Millisecond):
			}
			for i := range values {
				values[i].Value = resealed(values[i])
			}
			return nil
		})
		check(t, "Reseal", err)
		check(t, "AddMasterKey(globex, 2) after Reseal", <-done)
		got, err := s.GetMasterKey(ctx, "globex", 2)
		wantEqual(t, "GetMasterKey(globex, 2)", got, err, added, eqMasterKey)
		got, err = s.GetMasterKey(ctx, "globex", 1)
		check(t, "GetMasterKey(globex, 1)", err)
		if string(got.Sealed) != "resealed sealed tmk v1 of globex" {
			t.Errorf("GetMasterKey(globex, 1).Sealed = %q, want it resealed", got.Sealed)
		}
	}},
}
