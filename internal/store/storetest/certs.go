package storetest

import (
	"fmt"
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
			check(t, fmt.Sprintf("GetCert(%s)", c.Serial), err)
			if !eqCert(got, c) {
				t.Errorf("GetCert(%s) = %s, want %s", c.Serial, show(got), show(c))
			}
		}
	}},
	{"PutCert/Exists", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		c := newCert("01", store.CertInstance, "i-1")
		check(t, "PutCert(01)", s.PutCert(ctx, c))
		wantErr(t, "PutCert(01) again", s.PutCert(ctx, newCert("01", store.CertWrapping, "i-2")), store.ErrExists)
		got, err := s.GetCert(ctx, "01")
		check(t, "GetCert(01)", err)
		if !eqCert(got, c) {
			t.Errorf("GetCert(01) = %s, want the first %s", show(got), show(c))
		}
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

		want := map[string]*time.Time{"01": &when, "02": &when, "03": nil, "04": nil, "05": &earlier}
		for serial, revokedAt := range want {
			got, err := s.GetCert(ctx, serial)
			check(t, fmt.Sprintf("GetCert(%s)", serial), err)
			if !timePtrEqual(got.RevokedAt, revokedAt) {
				t.Errorf("GetCert(%s).RevokedAt = %s, want %s", serial, show(got.RevokedAt), show(revokedAt))
			}
		}
	}},
}
