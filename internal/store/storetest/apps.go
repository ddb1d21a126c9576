package storetest

import (
	"fmt"
	"testing"

	"github.com/dcaas/dcaas/internal/store"
)

func newApp(tenant, name string) store.App {
	return store.App{
		Tenant:    tenant,
		Name:      name,
		Role:      "custodian",
		DN:        "CN=" + name + ",OU=" + tenant + ",O=dcaas",
		CreatedAt: at(0),
	}
}

var appsTests = []test{
	{"CreateApp/RoundTrip", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		admin := store.App{Name: "admin", Role: "admin", DN: "CN=admin,O=dcaas", CreatedAt: at(1)}
		for _, a := range []store.App{newApp("acme", "payments"), admin} {
			check(t, fmt.Sprintf("CreateApp(%q, %q)", a.Tenant, a.Name), s.CreateApp(ctx, a))
			got, err := s.GetApp(ctx, a.Tenant, a.Name)
			wantEqual(t, fmt.Sprintf("GetApp(%q, %q)", a.Tenant, a.Name), got, err, a, eqApp)
			got, err = s.GetAppByDN(ctx, a.DN)
			wantEqual(t, fmt.Sprintf("GetAppByDN(%q)", a.DN), got, err, a, eqApp)
		}
	}},
	{"CreateApp/Exists", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		a := newApp("acme", "payments")
		check(t, "CreateApp(acme, payments)", s.CreateApp(ctx, a))

		sameName := a
		sameName.DN = "CN=other"
		wantErr(t, "CreateApp(acme, payments) again", s.CreateApp(ctx, sameName), store.ErrExists)

		sameDN := newApp("acme", "billing")
		sameDN.DN = a.DN
		wantErr(t, "CreateApp(acme, billing) with payments' DN", s.CreateApp(ctx, sameDN), store.ErrExists)

		// The same name in another tenant is another app.
		check(t, "CreateApp(globex, payments)", s.CreateApp(ctx, newApp("globex", "payments")))

		got, err := s.GetApp(ctx, "acme", "payments")
		wantEqual(t, "GetApp(acme, payments) after the refused CreateApp calls", got, err, a, eqApp)
	}},
	{"GetApp/NotFound", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateApp(acme, payments)", s.CreateApp(ctx, newApp("acme", "payments")))
		for _, c := range [][2]string{{"acme", "billing"}, {"globex", "payments"}, {"", "payments"}, {"", ""}} {
			_, err := s.GetApp(ctx, c[0], c[1])
			wantErr(t, fmt.Sprintf("GetApp(%q, %q)", c[0], c[1]), err, store.ErrNotFound)
		}
	}},
	{"GetAppByDN/NotFound", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateApp(acme, payments)", s.CreateApp(ctx, newApp("acme", "payments")))
		for _, dn := range []string{"CN=billing,OU=acme,O=dcaas", "cn=payments,ou=acme,o=dcaas", ""} {
			_, err := s.GetAppByDN(ctx, dn)
			wantErr(t, fmt.Sprintf("GetAppByDN(%q)", dn), err, store.ErrNotFound)
		}
	}},
}
