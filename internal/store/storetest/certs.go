package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

func newCert(serial, kind, subject string) store.Cert {
	return store.Cert{
		Serial:   serial,
		Kind:     kind,
		Tenant:   "acme",
		Subject:  subject,
		NotAfter: at(90 * 24 * time.Hour),
	}
}

// wantRevokedAt fails t unless the certificate of each serial in want has
// the RevokedAt want maps it to (nil: not revoked).
func wantRevokedAt(t *testing.T, s store.Store, want map[string]*time.Time) {
	t.Helper()
	for serial, revokedAt := range want {
		got, err := s.GetCert(t.Context(), serial)
		check(t, fmt.Sprintf("GetCert(%s)", serial), err)
		if !timePtrEqual(got.RevokedAt, revokedAt) {
			t.Errorf("GetCert(%s).RevokedAt = %s, want %s", serial, show(got.RevokedAt), show(revokedAt))
		}
	}
}

var certsTests = []test{
	{"PutCert/RoundTrip", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		revoked := newCert("0a1b2c", store.CertApp, "payments")
		revoked.RevokedAt = ptr(at(time.Hour))
		server := newCert("ff00", store.CertServer, "kms.example")
		server.Tenant = ""
		for _, c := range []store.Cert{newCert("01", store.CertInstance, "i-1"), revoked, server} {
			check(t, fmt.Sprintf("PutCert(%s)", c.Serial), s.PutCert(ctx, c))
			got, err := s.GetCert(ctx, c.Serial)
			wantEqual(t, fmt.Sprintf("GetCert(%s)", c.Serial), got, err, c, eqCert)
		}
	}},
	{"PutCert/Exists", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		c := newCert("01", store.CertInstance, "i-1")
		check(t, "PutCert(01)", s.PutCert(ctx, c))
		wantErr(t, "PutCert(01) again", s.PutCert(ctx, newCert("01", store.CertWrapping, "i-2")), store.ErrExists)
		got, err := s.GetCert(ctx, "01")
		wantEqual(t, "GetCert(01) after a refused PutCert", got, err, c, eqCert)
	}},
	{"GetCertIdentity", func(t *testing.T, s store.Store) {
		// An app's certificate comes with its app, one whose app is gone
		// without, another kind's never; the cert as GetCert has it.
		ctx := t.Context()
		app := newApp("acme", "payments")
		check(t, "CreateApp(acme, payments)", s.CreateApp(ctx, app))
		admin := store.App{Name: "root", Role: "admin", DN: "CN=root,O=dcaas", CreatedAt: at(2)}
		check(t, "CreateApp(admin)", s.CreateApp(ctx, admin))
		adminCert := newCert("0c", store.CertApp, "root")
		adminCert.Tenant = ""
		revoked := newCert("0b", store.CertApp, "payments")
		revoked.RevokedAt = ptr(at(time.Hour))
		sameName := newCert("0e", store.CertInstance, "payments") // an instance named like the app
		for _, tt := range []struct {
			cert store.Cert
			app  *store.App
		}{
			{newCert("0a", store.CertApp, "payments"), &app},
			{revoked, &app},
			{adminCert, &admin},
			{newCert("0d", store.CertApp, "gone"), nil},
			{sameName, nil},
		} {
			check(t, "PutCert("+tt.cert.Serial+")", s.PutCert(ctx, tt.cert))
			got, gotApp, err := s.GetCertIdentity(ctx, tt.cert.Serial)
			check(t, "GetCertIdentity("+tt.cert.Serial+")", err)
			if !eqCert(got, tt.cert) {
				t.Errorf("GetCertIdentity(%s) cert = %s, want %s", tt.cert.Serial, show(got), show(tt.cert))
			}
			switch {
			case tt.app == nil && gotApp != nil:
				t.Errorf("GetCertIdentity(%s) app = %s, want none", tt.cert.Serial, show(*gotApp))
			case tt.app != nil && (gotApp == nil || !eqApp(*gotApp, *tt.app)):
				t.Errorf("GetCertIdentity(%s) app = %v, want %s", tt.cert.Serial, gotApp, show(*tt.app))
			}
		}
		_, _, err := s.GetCertIdentity(ctx, "ff")
		wantErr(t, "GetCertIdentity(unknown)", err, store.ErrNotFound)
	}},
	{"GetCert/NotFound", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "PutCert(01)", s.PutCert(ctx, newCert("01", store.CertInstance, "i-1")))
		for _, serial := range []string{"02", "1", ""} {
			_, err := s.GetCert(ctx, serial)
			wantErr(t, fmt.Sprintf("GetCert(%q)", serial), err, store.ErrNotFound)
		}
	}},
	{"RevokeCertsOf", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		earlier := at(time.Minute)
		revokedBefore := newCert("05", store.CertInstance, "i-1")
		revokedBefore.RevokedAt = &earlier
		certs := []store.Cert{
			newCert("01", store.CertInstance, "i-1"),
			newCert("02", store.CertInstance, "i-1"),
			newCert("03", store.CertWrapping, "i-1"),
			newCert("04", store.CertInstance, "i-2"),
			revokedBefore,
		}
		for _, c := range certs {
			check(t, fmt.Sprintf("PutCert(%s)", c.Serial), s.PutCert(ctx, c))
		}
		when := at(time.Hour)
		check(t, "RevokeCertsOf(instance, i-1)", s.RevokeCertsOf(ctx, store.CertInstance, "i-1", when))
		// A second call changes nothing.
		check(t, "RevokeCertsOf(instance, i-1) again", s.RevokeCertsOf(ctx, store.CertInstance, "i-1", at(2*time.Hour)))
		// Nothing to revoke is not an error.
		check(t, "RevokeCertsOf(instance, i-9)", s.RevokeCertsOf(ctx, store.CertInstance, "i-9", when))

		wantRevokedAt(t, s, map[string]*time.Time{"01": &when, "02": &when, "03": nil, "04": nil, "05": &earlier})
	}},
	{"RevokeCert", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		earlier := at(time.Minute)
		revokedBefore := newCert("03", store.CertApp, "payments")
		revokedBefore.RevokedAt = &earlier
		for _, c := range []store.Cert{newCert("01", store.CertApp, "payments"), newCert("02", store.CertApp, "payments"), revokedBefore} {
			check(t, fmt.Sprintf("PutCert(%s)", c.Serial), s.PutCert(ctx, c))
		}
		when := at(time.Hour)
		check(t, "RevokeCert(01)", s.RevokeCert(ctx, "01", when))
		// Idempotent: the first time stays.
		check(t, "RevokeCert(01) again", s.RevokeCert(ctx, "01", at(2*time.Hour)))
		check(t, "RevokeCert(03)", s.RevokeCert(ctx, "03", when))
		for _, serial := range []string{"99", "", "1"} {
			wantErr(t, fmt.Sprintf("RevokeCert(%q)", serial), s.RevokeCert(ctx, serial, when), store.ErrNotFound)
		}
		wantRevokedAt(t, s, map[string]*time.Time{"01": &when, "02": nil, "03": &earlier})
	}},
	{"ListCerts", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		mk := func(serial, kind, tenant, subject string, notAfter time.Duration) store.Cert {
			c := newCert(serial, kind, subject)
			c.Tenant, c.NotAfter = tenant, at(notAfter)
			return c
		}
		revoked := mk("0b", store.CertApp, "acme", "payments", 2*time.Hour)
		revoked.RevokedAt = ptr(at(time.Minute))
		certs := []store.Cert{
			mk("0c", store.CertApp, "acme", "payments", 3*time.Hour),
			mk("0a", store.CertApp, "acme", "payments", time.Hour),
			revoked,
			mk("0d", store.CertApp, "acme", "payments", 3*time.Hour), // same NotAfter as 0c: by serial
			mk("0e", store.CertApp, "globex", "payments", time.Hour), // another tenant's app of that name
			mk("0f", store.CertInstance, "acme", "payments", time.Hour),
			mk("10", store.CertApp, "acme", "deployer", time.Hour),
			mk("11", store.CertApp, "", "admin", time.Hour),
		}
		for _, c := range certs {
			check(t, fmt.Sprintf("PutCert(%s)", c.Serial), s.PutCert(ctx, c))
		}
		for _, tt := range []struct {
			kind, tenant, subject string
			want                  []string
		}{
			{store.CertApp, "acme", "payments", []string{"0a", "0b", "0c", "0d"}},
			{store.CertApp, "globex", "payments", []string{"0e"}},
			{store.CertInstance, "acme", "payments", []string{"0f"}},
			{store.CertApp, "", "admin", []string{"11"}},
			{store.CertApp, "acme", "nobody", nil},
		} {
			got, err := s.ListCerts(ctx, tt.kind, tt.tenant, tt.subject)
			call := fmt.Sprintf("ListCerts(%s, %q, %s)", tt.kind, tt.tenant, tt.subject)
			check(t, call, err)
			if len(got) != len(tt.want) {
				t.Fatalf("%s = %d certificates, want %v", call, len(got), tt.want)
			}
			for i, c := range got {
				var want store.Cert
				for _, w := range certs {
					if w.Serial == tt.want[i] {
						want = w
					}
				}
				if !eqCert(c, want) {
					t.Errorf("%s[%d] = %s, want %s", call, i, show(c), show(want))
				}
			}
		}
		// RevokedAppCerts: the revoked ones not expired at now only, of the
		// app with that DN.
		expired := mk("0g", store.CertApp, "acme", "payments", 30*time.Minute)
		expired.RevokedAt = ptr(at(time.Minute))
		check(t, "PutCert(0g)", s.PutCert(ctx, expired))
		check(t, "RevokeCert(0d)", s.RevokeCert(ctx, "0d", at(2*time.Minute)))
		acme, globex := newApp("acme", "payments"), newApp("globex", "payments")
		check(t, "CreateApp(acme, payments)", s.CreateApp(ctx, acme))
		check(t, "CreateApp(globex, payments)", s.CreateApp(ctx, globex))
		got, err := s.RevokedAppCerts(ctx, acme.DN, at(time.Hour))
		check(t, "RevokedAppCerts", err)
		if !slices.Equal(got, []string{"0b", "0d"}) {
			t.Errorf("RevokedAppCerts(acme/payments) = %v, want 0b and 0d (0g expired)", got)
		}
		for _, dn := range []string{globex.DN, "CN=nobody,O=acme"} {
			if got, err := s.RevokedAppCerts(ctx, dn, at(time.Hour)); err != nil || len(got) != 0 {
				t.Errorf("RevokedAppCerts(%s) = %v, %v; want none", dn, got, err)
			}
		}
	}},
}
