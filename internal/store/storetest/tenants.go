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
		wantEqual(t, "GetTenant(acme)", got, err, tn, eqTenant)
		gotMK, err := s.GetMasterKey(ctx, "acme", 1)
		wantEqual(t, "GetMasterKey(acme, 1)", gotMK, err, mk, eqMasterKey)
	}},
	{"CreateTenant/Exists", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		tn, mk := newTenant("acme")
		check(t, "CreateTenant(acme)", s.CreateTenant(ctx, tn, mk))
		tn2, mk2 := newTenant("acme")
		tn2.SealedHMACKey = []byte("another key")
		wantErr(t, "CreateTenant(acme) again", s.CreateTenant(ctx, tn2, mk2), store.ErrExists)
		got, err := s.GetTenant(ctx, "acme")
		wantEqual(t, "GetTenant(acme) after a refused CreateTenant", got, err, tn, eqTenant)
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
		added := addVersions(t, nextVersionSteps,
			"AddMasterKey(acme, %d)", func(i, version int) (store.MasterKey, error) {
				k := store.MasterKey{Tenant: "acme", Version: version, Sealed: fmt.Appendf(nil, "sealed tmk, step %d", i), CreatedAt: at(time.Duration(i) * time.Hour)}
				return k, s.AddMasterKey(ctx, k)
			},
			"GetTenant(acme).MasterKeyVersion", func() (int, error) {
				got, err := s.GetTenant(ctx, "acme")
				return got.MasterKeyVersion, err
			})
		added[1] = mk
		for v, want := range added {
			got, err := s.GetMasterKey(ctx, "acme", v)
			wantEqual(t, fmt.Sprintf("GetMasterKey(acme, %d)", v), got, err, want, eqMasterKey)
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
