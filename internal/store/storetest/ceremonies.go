package storetest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

var kcvTests = []test{
	{"RoundTrip", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v := newKey("k1", true)
		v.KCV = "8F2A1C"
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v))
		v2 := store.KeyVersion{KeyID: "k1", Version: 2, CreatedAt: at(time.Hour), EKB: []byte("v2"), KCV: "00FF01"}
		check(t, "AddKeyVersion(k1, 2)", s.AddKeyVersion(ctx, v2))
		got, err := s.GetKeyVersion(ctx, "k1", 1)
		check(t, "GetKeyVersion(k1, 1)", err)
		if got.KCV != v.KCV {
			t.Errorf("GetKeyVersion(k1, 1).KCV = %q, want %q", got.KCV, v.KCV)
		}
		list, err := s.ListKeyVersions(ctx, "k1")
		check(t, "ListKeyVersions(k1)", err)
		if len(list) != 2 || list[0].KCV != v.KCV || list[1].KCV != v2.KCV {
			t.Errorf("ListKeyVersions(k1) = %s, want KCVs %s, %s", show(list), v.KCV, v2.KCV)
		}
		_, vs, err := s.GetKeysAndVersions(ctx, []store.KeyRef{{KeyID: "k1", Version: 2}})
		check(t, "GetKeysAndVersions(k1:2)", err)
		if vs[store.KeyRef{KeyID: "k1", Version: 2}].KCV != v2.KCV {
			t.Errorf("GetKeysAndVersions(k1:2) = %s, want KCV %s", show(vs), v2.KCV)
		}
	}},
	{"SetOnce", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v := newKey("k1", true)
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v))
		got, err := s.GetKeyVersion(ctx, "k1", 1)
		check(t, "GetKeyVersion(k1, 1)", err)
		if got.KCV != "" {
			t.Fatalf("a version stored without a KCV has %q", got.KCV)
		}
		check(t, "SetKeyVersionKCV(k1, 1)", s.SetKeyVersionKCV(ctx, "k1", 1, "ABCDEF"))
		check(t, "SetKeyVersionKCV(k1, 1) again, same value", s.SetKeyVersionKCV(ctx, "k1", 1, "ABCDEF"))
		wantErr(t, "SetKeyVersionKCV(k1, 1) to another value", s.SetKeyVersionKCV(ctx, "k1", 1, "123456"), store.ErrConflict)
		wantErr(t, "SetKeyVersionKCV(k1, 2)", s.SetKeyVersionKCV(ctx, "k1", 2, "ABCDEF"), store.ErrNotFound)
		got, err = s.GetKeyVersion(ctx, "k1", 1)
		check(t, "GetKeyVersion(k1, 1)", err)
		if got.KCV != "ABCDEF" {
			t.Errorf("GetKeyVersion(k1, 1).KCV = %q, want ABCDEF", got.KCV)
		}
	}},
	{"SetRace", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v := newKey("k1", true)
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v))
		for i, err := range together(8, func(int) error { return s.SetKeyVersionKCV(ctx, "k1", 1, "ABCDEF") }) {
			check(t, fmt.Sprintf("SetKeyVersionKCV #%d", i), err)
		}
	}},
}

func newCeremony(id string, expires time.Duration) store.Ceremony {
	return store.Ceremony{
		ID: id, Tenant: "acme", KeyType: "aes-256-gcm", Components: 3, ExpectedKCV: "8F2A1C",
		Owner: "CN=payments,O=acme", Request: []byte(`{"type":"aes-256-gcm"}`), CreatedBy: "CN=admin,O=dcaas",
		CreatedAt: at(0), ExpiresAt: at(expires),
	}
}

func component(id string, index int, admin string) store.CeremonyComponent {
	return store.CeremonyComponent{
		CeremonyID: id, Index: index, Admin: admin, KCV: fmt.Sprintf("00000%d", index),
		Sealed: []byte("sealed " + admin), EnteredAt: at(time.Duration(index) * time.Minute),
	}
}

var ceremoniesTests = []test{
	{"RoundTrip", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		cr := newCeremony("c1", time.Hour)
		check(t, "CreateCeremony(c1)", s.CreateCeremony(ctx, cr))
		wantErr(t, "CreateCeremony(c1) again", s.CreateCeremony(ctx, cr), store.ErrExists)
		got, comps, err := s.GetCeremony(ctx, "c1")
		check(t, "GetCeremony(c1)", err)
		if got.ID != cr.ID || got.Tenant != cr.Tenant || got.KeyType != cr.KeyType || got.Components != 3 || got.ExpectedKCV != cr.ExpectedKCV ||
			got.Owner != cr.Owner || !bytes.Equal(got.Request, cr.Request) || got.CreatedBy != cr.CreatedBy ||
			!got.CreatedAt.Equal(cr.CreatedAt) || !got.ExpiresAt.Equal(cr.ExpiresAt) || got.KeyID != "" || got.CompletedAt != nil || len(comps) != 0 {
			t.Fatalf("GetCeremony(c1) = %s, %s, want %s and no components", show(got), show(comps), show(cr))
		}
		want := []store.CeremonyComponent{component("c1", 1, "CN=alice,O=dcaas"), component("c1", 2, "CN=bob,O=dcaas")}
		for _, p := range want {
			check(t, fmt.Sprintf("AddCeremonyComponent(c1, %d)", p.Index), s.AddCeremonyComponent(ctx, p))
		}
		_, comps, err = s.GetCeremony(ctx, "c1")
		check(t, "GetCeremony(c1)", err)
		if len(comps) != 2 {
			t.Fatalf("GetCeremony(c1) components = %s, want 2", show(comps))
		}
		for i, p := range comps {
			w := want[i]
			if p.CeremonyID != "c1" || p.Index != w.Index || p.Admin != w.Admin || p.KCV != w.KCV || !bytes.Equal(p.Sealed, w.Sealed) || !p.EnteredAt.Equal(w.EnteredAt) {
				t.Errorf("component %d = %s, want %s", i, show(p), show(w))
			}
		}
		check(t, "CompleteCeremony(c1)", s.CompleteCeremony(ctx, "c1", "key_1", at(time.Minute)))
		got, comps, err = s.GetCeremony(ctx, "c1")
		check(t, "GetCeremony(c1)", err)
		if got.KeyID != "key_1" || !timePtrEqual(got.CompletedAt, ptr(at(time.Minute))) {
			t.Errorf("complete ceremony = %s, want key_1 completed at +1m", show(got))
		}
		for _, p := range comps {
			if p.Sealed != nil {
				t.Errorf("component %d keeps its sealed value after completion", p.Index)
			}
		}
		wantErr(t, "CompleteCeremony(c1) again", s.CompleteCeremony(ctx, "c1", "key_2", at(time.Hour)), store.ErrConflict)
		wantErr(t, "AddCeremonyComponent after completion", s.AddCeremonyComponent(ctx, component("c1", 3, "CN=carol,O=dcaas")), store.ErrConflict)
	}},
	{"Refusals", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateCeremony(c1)", s.CreateCeremony(ctx, newCeremony("c1", time.Hour)))
		check(t, "AddCeremonyComponent(c1, 1)", s.AddCeremonyComponent(ctx, component("c1", 1, "CN=alice,O=dcaas")))
		wantErr(t, "AddCeremonyComponent by the same admin", s.AddCeremonyComponent(ctx, component("c1", 2, "CN=alice,O=dcaas")), store.ErrExists)
		wantErr(t, "AddCeremonyComponent(c1, 1) again", s.AddCeremonyComponent(ctx, component("c1", 1, "CN=bob,O=dcaas")), store.ErrConflict)
		wantErr(t, "AddCeremonyComponent(c1, 3)", s.AddCeremonyComponent(ctx, component("c1", 3, "CN=bob,O=dcaas")), store.ErrConflict)
		wantErr(t, "AddCeremonyComponent(nope)", s.AddCeremonyComponent(ctx, component("nope", 1, "CN=bob,O=dcaas")), store.ErrNotFound)
		wantErr(t, "CompleteCeremony(nope)", s.CompleteCeremony(ctx, "nope", "key_1", at(0)), store.ErrNotFound)
		_, _, err := s.GetCeremony(ctx, "nope")
		wantErr(t, "GetCeremony(nope)", err, store.ErrNotFound)
		_, comps, err := s.GetCeremony(ctx, "c1")
		check(t, "GetCeremony(c1)", err)
		if len(comps) != 1 {
			t.Errorf("refused components were stored: %s", show(comps))
		}
	}},
	{"Race", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateCeremony(c1)", s.CreateCeremony(ctx, newCeremony("c1", time.Hour)))
		const n = 6
		errs := together(n, func(i int) error {
			return s.AddCeremonyComponent(ctx, component("c1", 1, fmt.Sprintf("CN=admin%d,O=dcaas", i)))
		})
		won := succeeded(t, "racing AddCeremonyComponent", errs, store.ErrConflict, store.ErrExists)
		_, comps, err := s.GetCeremony(ctx, "c1")
		check(t, "GetCeremony(c1)", err)
		if won != 1 || len(comps) != 1 {
			t.Errorf("%d racers won, %d components stored; want 1 and 1", won, len(comps))
		}
	}},
	{"DeleteExpired", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateCeremony(old)", s.CreateCeremony(ctx, newCeremony("old", time.Minute)))
		check(t, "CreateCeremony(new)", s.CreateCeremony(ctx, newCeremony("new", time.Hour)))
		check(t, "AddCeremonyComponent(old, 1)", s.AddCeremonyComponent(ctx, component("old", 1, "CN=alice,O=dcaas")))
		n, err := s.DeleteExpiredCeremonies(ctx, at(time.Minute+time.Nanosecond))
		check(t, "DeleteExpiredCeremonies", err)
		if n != 1 {
			t.Errorf("DeleteExpiredCeremonies = %d, want 1", n)
		}
		_, _, err = s.GetCeremony(ctx, "old")
		wantErr(t, "GetCeremony(old)", err, store.ErrNotFound)
		_, _, err = s.GetCeremony(ctx, "new")
		check(t, "GetCeremony(new)", err)
		// A new ceremony with the old id starts with no components.
		check(t, "CreateCeremony(old) again", s.CreateCeremony(ctx, newCeremony("old", time.Hour)))
		_, comps, err := s.GetCeremony(ctx, "old")
		check(t, "GetCeremony(old)", err)
		if len(comps) != 0 {
			t.Errorf("a deleted ceremony's components remain: %s", show(comps))
		}
	}},
}
