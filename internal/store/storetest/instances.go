package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

func newInstance(id, tenant, custodianDN string, enrolled time.Time) store.Instance {
	return store.Instance{
		ID:             id,
		Tenant:         tenant,
		CustodianDN:    custodianDN,
		Enclave:        "software",
		CertSerial:     "c-" + id,
		WrappingSerial: "w-" + id,
		WrappingKEM:    "mlkem768-x25519",
		WrappingPublic: []byte("public key of " + id),
		EnrolledAt:     enrolled,
	}
}

var instancesTests = []test{
	{"CreateInstance/RoundTrip", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		revoked := newInstance("i-2", "acme", "CN=b", at(time.Second))
		revoked.RevokedAt = ptr(at(time.Hour))
		revoked.Enclave = "tpm"
		for _, in := range []store.Instance{newInstance("i-1", "acme", "CN=a", at(0)), revoked} {
			check(t, fmt.Sprintf("CreateInstance(%s)", in.ID), s.CreateInstance(ctx, in))
			got, err := s.GetInstance(ctx, in.ID)
			wantEqual(t, fmt.Sprintf("GetInstance(%s)", in.ID), got, err, in, eqInstance)
		}
	}},
	{"CreateInstance/Exists", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		in := newInstance("i-1", "acme", "CN=a", at(0))
		check(t, "CreateInstance(i-1)", s.CreateInstance(ctx, in))
		wantErr(t, "CreateInstance(i-1) again", s.CreateInstance(ctx, newInstance("i-1", "globex", "CN=b", at(1))), store.ErrExists)
		got, err := s.GetInstance(ctx, "i-1")
		wantEqual(t, "GetInstance(i-1) after a refused CreateInstance", got, err, in, eqInstance)
	}},
	{"GetInstance/NotFound", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateInstance(i-1)", s.CreateInstance(ctx, newInstance("i-1", "acme", "CN=a", at(0))))
		for _, id := range []string{"i-2", "I-1", ""} {
			_, err := s.GetInstance(ctx, id)
			wantErr(t, fmt.Sprintf("GetInstance(%q)", id), err, store.ErrNotFound)
		}
	}},
	{"ListInstances", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		all := []store.Instance{ // inserted out of order on purpose
			newInstance("a", "acme", "CN=one", at(3*time.Second)),
			newInstance("b", "acme", "CN=two", at(1*time.Second)),
			newInstance("c", "globex", "CN=one", at(2*time.Second)),
			newInstance("d", "acme", "CN=one", at(0)),
			newInstance("e", "acme", "CN=one", at(3*time.Second)), // same time as a: id breaks the tie
		}
		all[1].RevokedAt = ptr(at(time.Hour))
		byID := map[string]store.Instance{}
		for _, in := range all {
			check(t, fmt.Sprintf("CreateInstance(%s)", in.ID), s.CreateInstance(ctx, in))
			byID[in.ID] = in
		}
		for _, c := range []struct {
			tenant, dn string
			want       []string
		}{
			{"", "", []string{"d", "b", "c", "a", "e"}},
			{"acme", "", []string{"d", "b", "a", "e"}},
			{"globex", "", []string{"c"}},
			{"acme", "CN=one", []string{"d", "a", "e"}},
			{"", "CN=one", []string{"d", "c", "a", "e"}},
			{"", "CN=two", []string{"b"}},
			{"globex", "CN=two", nil},
			{"initech", "", nil},
			{"", "CN=three", nil},
		} {
			call := fmt.Sprintf("ListInstances(%q, %q)", c.tenant, c.dn)
			got, err := s.ListInstances(ctx, c.tenant, c.dn)
			check(t, call, err)
			var ids []string
			for _, in := range got {
				ids = append(ids, in.ID)
				if !eqInstance(in, byID[in.ID]) {
					t.Errorf("%s returned %s, want %s", call, show(in), show(byID[in.ID]))
				}
			}
			if !slices.Equal(ids, c.want) {
				t.Errorf("%s = %q, want %q", call, ids, c.want)
			}
		}
	}},
	{"RevokeInstance", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateInstance(i-1)", s.CreateInstance(ctx, newInstance("i-1", "acme", "CN=a", at(0))))
		check(t, "CreateInstance(i-2)", s.CreateInstance(ctx, newInstance("i-2", "acme", "CN=a", at(0))))
		first := at(time.Hour)
		check(t, "RevokeInstance(i-1)", s.RevokeInstance(ctx, "i-1", first))
		check(t, "RevokeInstance(i-1) again", s.RevokeInstance(ctx, "i-1", at(2*time.Hour)))
		got, err := s.GetInstance(ctx, "i-1")
		check(t, "GetInstance(i-1)", err)
		if !timePtrEqual(got.RevokedAt, &first) {
			t.Errorf("GetInstance(i-1).RevokedAt = %s, want the first revocation %s", show(got.RevokedAt), show(first))
		}
		got, err = s.GetInstance(ctx, "i-2")
		check(t, "GetInstance(i-2)", err)
		if got.RevokedAt != nil {
			t.Errorf("GetInstance(i-2).RevokedAt = %s, want nil", show(got.RevokedAt))
		}
		// One event, from the call that changed the row.
		wantFeed(t, s, "acme", []store.Revocation{instanceEvent(1, "acme", "i-1", first)})
		wantLast(t, s, 1)
	}},
	{"RevokeInstance/NotFound", func(t *testing.T, s store.Store) {
		for _, id := range []string{"i-9", ""} {
			wantErr(t, fmt.Sprintf("RevokeInstance(%q)", id), s.RevokeInstance(t.Context(), id, t0), store.ErrNotFound)
		}
		wantLast(t, s, 0)
	}},
}
