package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

var listingTests = []test{
	{"ListTenants", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		got, err := s.ListTenants(ctx)
		check(t, "ListTenants(empty store)", err)
		if len(got) != 0 {
			t.Errorf("ListTenants(empty store) = %s, want none", show(got))
		}
		// Created out of order: the list is by name, bytewise ("Z" < "a").
		var want []store.Tenant
		for _, name := range []string{"globex", "acme", "a-b"} {
			tn, mk := newTenant(name)
			check(t, "CreateTenant("+name+")", s.CreateTenant(ctx, tn, mk))
		}
		mk2 := store.MasterKey{Tenant: "acme", Version: 2, Sealed: []byte("tmk v2"), CreatedAt: at(time.Hour)}
		check(t, "AddMasterKey(acme, 2)", s.AddMasterKey(ctx, mk2))
		for _, name := range []string{"a-b", "acme", "globex"} {
			tn2, _ := newTenant(name)
			want = append(want, tn2)
		}
		want[1].MasterKeyVersion = 2
		got, err = s.ListTenants(ctx)
		wantList(t, "ListTenants()", got, err, want, eqTenant)
	}},
	{"ListApps", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		admin := store.App{Name: "admin", Role: "admin", DN: "CN=admin,O=dcaas", CreatedAt: at(1)}
		apps := []store.App{newApp("acme", "payments"), newApp("globex", "ledger"), newApp("acme", "deployer"), admin}
		apps[2].Role = "pipeline"
		for _, a := range apps {
			check(t, fmt.Sprintf("CreateApp(%q, %q)", a.Tenant, a.Name), s.CreateApp(ctx, a))
		}
		for _, c := range []struct {
			tenant string
			want   []store.App
		}{
			{"acme", []store.App{apps[2], apps[0]}},
			{"globex", []store.App{apps[1]}},
			{"", []store.App{admin}},
			{"nobody", nil},
		} {
			got, err := s.ListApps(ctx, c.tenant)
			wantList(t, fmt.Sprintf("ListApps(%q)", c.tenant), got, err, c.want, eqApp)
		}
	}},
	{"ListKeys", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k2, v2 := newKey("k2", true)
		k1, v1 := newKey("k1", false)
		k1.DisabledAt = ptr(at(time.Hour))
		other, ov := newKey("k0", false)
		other.Tenant = "globex"
		for _, c := range []struct {
			k store.Key
			v store.KeyVersion
		}{{k2, v2}, {k1, v1}, {other, ov}} {
			check(t, "CreateKey("+c.k.KeyID+")", s.CreateKey(ctx, c.k, c.v))
		}
		check(t, "AddKeyVersion(k2, 2)", s.AddKeyVersion(ctx, store.KeyVersion{KeyID: "k2", Version: 2, EKB: []byte("v2"), CreatedAt: at(time.Hour)}))
		k2.CurrentVersion = 2
		got, err := s.ListKeys(ctx, "acme")
		want := []store.Key{k1, k2} // by key id; the disabled one too
		if !wantList(t, "ListKeys(acme)", got, err, want, eqKey) {
			t.FailNow()
		}
		got, err = s.ListKeys(ctx, "nobody")
		check(t, "ListKeys(nobody)", err)
		if len(got) != 0 {
			t.Errorf("ListKeys(nobody) = %s, want none", show(got))
		}
	}},
	{"FleetDetails", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		for _, in := range []store.Instance{newInstance("i-1", "acme", "CN=a", at(0)), newInstance("i-2", "acme", "CN=b", at(time.Second)), newInstance("i-3", "globex", "CN=c", at(0))} {
			check(t, "CreateInstance("+in.ID+")", s.CreateInstance(ctx, in))
		}
		// i-1's certificate is stored, i-2's is not.
		check(t, "PutCert(c-i-1)", s.PutCert(ctx, store.Cert{Serial: "c-i-1", Kind: "instance", Tenant: "acme", Subject: "i-1", NotAfter: at(48 * time.Hour)}))
		check(t, "RecordReleases(i-1)", s.RecordReleases(ctx, "i-1", []store.KeyRef{{KeyID: "k1", Version: 1}, {KeyID: "k1", Version: 3}, {KeyID: "k2", Version: 2}}, at(0)))
		check(t, "RecordReleases(i-3)", s.RecordReleases(ctx, "i-3", []store.KeyRef{{KeyID: "k3", Version: 7}}, at(0)))
		for _, c := range []struct {
			tenant string
			want   map[string]store.FleetDetail
		}{
			{"acme", map[string]store.FleetDetail{"i-1": {KeysReleased: 2, CertNotAfter: at(48 * time.Hour)}, "i-2": {}}},
			{"globex", map[string]store.FleetDetail{"i-3": {KeysReleased: 1}}},
			{"nobody", map[string]store.FleetDetail{}},
		} {
			got, err := s.FleetDetails(ctx, c.tenant)
			check(t, "FleetDetails("+c.tenant+")", err)
			if len(got) != len(c.want) {
				t.Fatalf("FleetDetails(%s) = %v, want %v", c.tenant, got, c.want)
			}
			for id, w := range c.want {
				if g, ok := got[id]; !ok || g.KeysReleased != w.KeysReleased || !g.CertNotAfter.Equal(w.CertNotAfter) {
					t.Errorf("FleetDetails(%s)[%s] = %+v, %v; want %+v", c.tenant, id, g, ok, w)
				}
			}
		}
	}},
}
