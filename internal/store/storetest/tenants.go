package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

func newTenant(name string) (store.Tenant, store.MasterKey) {
	return store.Tenant{
			Name:             name,
			MasterKeyVersion: 1,
			SealedHMACKey:    []byte("sealed hmac key of " + name),
			CreatedAt:        at(0),
		}, store.MasterKey{
			Tenant:    name,
			Version:   1,
			Sealed:    []byte("sealed tmk v1 of " + name),
			CreatedAt: at(time.Nanosecond),
		}
}

var tenantsTests = []test{
	{"CreateTenant/RoundTrip", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		tn, mk := newTenant("acme")
		check(t, "CreateTenant(acme)", s.CreateTenant(ctx, tn, mk))
		got, err := s.GetTenant(ctx, "acme")
		check(t, "GetTenant(acme)", err)
		if !eqTenant(got, tn) {
			t.Errorf("GetTenant(acme) = %s, want %s", show(got), show(tn))
		}
		gotMK, err := s.GetMasterKey(ctx, "acme", 1)
		check(t, "GetMasterKey(acme, 1)", err)
		if !eqMasterKey(gotMK, mk) {
			t.Errorf("GetMasterKey(acme, 1) = %s, want %s", show(gotMK), show(mk))
		}
	}},
	{"CreateTenant/Exists", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		tn, mk := newTenant("acme")
		check(t, "CreateTenant(acme)", s.CreateTenant(ctx, tn, mk))
		tn2, mk2 := newTenant("acme")
		tn2.SealedHMACKey = []byte("another key")
		wantErr(t, "CreateTenant(acme) again", s.CreateTenant(ctx, tn2, mk2), store.ErrExists)
		got, err := s.GetTenant(ctx, "acme")
		check(t, "GetTenant(acme)", err)
		if !eqTenant(got, tn) {
			t.Errorf("GetTenant(acme) = %s, want the first %s", show(got), show(tn))
		}
	}},
	{"CreateTenant/NotVersion1", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		tn, mk := newTenant("acme")
		tn.MasterKeyVersion, mk.Version = 2, 2
		if err := s.CreateTenant(ctx, tn, mk); err == nil {
			t.Errorf("CreateTenant(acme, version 2) = nil, want an error")
		}
		_, err := s.GetTenant(ctx, "acme")
		wantErr(t, "GetTenant(acme) after a refused CreateTenant", err, store.ErrNotFound)
		_, err = s.GetMasterKey(ctx, "acme", 2)
		wantErr(t, "GetMasterKey(acme, 2) after a refused CreateTenant", err, store.ErrNotFound)
	}},
	{"GetTenant/NotFound", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		tn, mk := newTenant("acme")
		check(t, "CreateTenant(acme)", s.CreateTenant(ctx, tn, mk))
		for _, name := range []string{"globex", "ACME", ""} {
			_, err := s.GetTenant(ctx, name)
			wantErr(t, fmt.Sprintf("GetTenant(%q)", name), err, store.ErrNotFound)
		}
	}},
	{"AddMasterKey", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		tn, mk := newTenant("acme")
		check(t, "CreateTenant(acme)", s.CreateTenant(ctx, tn, mk))
		steps := []struct {
			version int
			want    error // nil: accepted
			current int   // MasterKeyVersion afterwards
		}{
			{2, nil, 2},
			{2, store.ErrConflict, 2},
			{1, store.ErrConflict, 2},
			{4, store.ErrConflict, 2},
			{0, store.ErrConflict, 2},
			{-1, store.ErrConflict, 2},
			{3, nil, 3},
		}
		added := map[int]store.MasterKey{1: mk}
		for i, st := range steps {
			k := store.MasterKey{
				Tenant:    "acme",
				Version:   st.version,
				Sealed:    fmt.Appendf(nil, "sealed tmk, step %d", i),
				CreatedAt: at(time.Duration(i) * time.Hour),
			}
			err := s.AddMasterKey(ctx, k)
			call := fmt.Sprintf("step %d: AddMasterKey(acme, %d)", i, st.version)
			if st.want == nil {
				check(t, call, err)
				added[st.version] = k
			} else {
				wantErr(t, call, err, st.want)
			}
			got, err := s.GetTenant(ctx, "acme")
			check(t, "GetTenant(acme)", err)
			if got.MasterKeyVersion != st.current {
				t.Errorf("after step %d: GetTenant(acme).MasterKeyVersion = %d, want %d", i, got.MasterKeyVersion, st.current)
			}
		}
		for v, want := range added {
			got, err := s.GetMasterKey(ctx, "acme", v)
			check(t, fmt.Sprintf("GetMasterKey(acme, %d)", v), err)
			if !eqMasterKey(got, want) {
				t.Errorf("GetMasterKey(acme, %d) = %s, want %s", v, show(got), show(want))
			}
		}
	}},
	{"AddMasterKey/UnknownTenant", func(t *testing.T, s store.Store) {
		err := s.AddMasterKey(t.Context(), store.MasterKey{Tenant: "nobody", Version: 2, Sealed: []byte("x"), CreatedAt: t0})
		wantErr(t, "AddMasterKey(nobody, 2)", err, store.ErrNotFound)
	}},
	{"GetMasterKey/NotFound", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		tn, mk := newTenant("acme")
		check(t, "CreateTenant(acme)", s.CreateTenant(ctx, tn, mk))
		for _, c := range []struct {
			tenant  string
			version int
		}{{"acme", 2}, {"acme", 0}, {"acme", -1}, {"globex", 1}, {"", 1}} {
			_, err := s.GetMasterKey(ctx, c.tenant, c.version)
			wantErr(t, fmt.Sprintf("GetMasterKey(%q, %d)", c.tenant, c.version), err, store.ErrNotFound)
		}
	}},
}
