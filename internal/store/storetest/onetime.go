package storetest

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// newOneTime returns an unused secret of kind, named by label, that expires
// an hour after t0.
func newOneTime(kind, label string) store.OneTimeSecret {
	h := sha256.Sum256([]byte(label))
	return store.OneTimeSecret{
		Hash:      h[:],
		Kind:      kind,
		Tenant:    "acme",
		Subject:   "CN=payments,OU=acme,O=dcaas",
		Payload:   []byte(`{"instance":"i-1"}`),
		CreatedBy: "CN=pipeline,OU=acme,O=dcaas",
		CreatedAt: at(0),
		ExpiresAt: at(time.Hour),
	}
}

var oneTimeTests = []test{
	{"PutOneTime/Exists", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		o := newOneTime(store.OneTimeGrant, "g1")
		check(t, "PutOneTime(g1)", s.PutOneTime(ctx, o))
		other := newOneTime(store.OneTimeEnrollToken, "g1")
		wantErr(t, "PutOneTime(g1) again", s.PutOneTime(ctx, other), store.ErrExists)
		// The first one is unchanged.
		_, err := s.ConsumeOneTime(ctx, store.OneTimeGrant, o.Hash, at(time.Minute))
		check(t, "ConsumeOneTime(grant, g1)", err)
	}},
	{"PutOneTime/EmptyHash", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		for _, h := range [][]byte{nil, {}} {
			o := newOneTime(store.OneTimeGrant, "g1")
			o.Hash = h
			if err := s.PutOneTime(ctx, o); err == nil {
				t.Errorf("PutOneTime(hash %#v) = nil, want an error", h)
			}
			_, err := s.ConsumeOneTime(ctx, o.Kind, h, at(time.Minute))
			wantErr(t, fmt.Sprintf("ConsumeOneTime(hash %#v)", h), err, store.ErrNotFound)
		}
	}},
	{"ConsumeOneTime/RoundTrip", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		noPayload := newOneTime(store.OneTimeChallenge, "c1")
		noPayload.Payload = nil
		noPayload.Tenant, noPayload.Subject = "", ""
		for _, o := range []store.OneTimeSecret{newOneTime(store.OneTimeEnrollToken, "t1"), noPayload} {
			check(t, fmt.Sprintf("PutOneTime(%s)", o.Kind), s.PutOneTime(ctx, o))
			now := at(time.Minute + time.Nanosecond)
			got, err := s.ConsumeOneTime(ctx, o.Kind, o.Hash, now)
			check(t, fmt.Sprintf("ConsumeOneTime(%s)", o.Kind), err)
			want := o
			want.UsedAt = &now
			if !eqOneTime(got, want) {
				t.Errorf("ConsumeOneTime(%s) = %s, want %s", o.Kind, show(got), show(want))
			}
		}
	}},
	{"ConsumeOneTime/Used", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		o := newOneTime(store.OneTimeGrant, "g1")
		check(t, "PutOneTime(g1)", s.PutOneTime(ctx, o))
		_, err := s.ConsumeOneTime(ctx, o.Kind, o.Hash, at(time.Minute))
		check(t, "ConsumeOneTime(g1)", err)
		_, err = s.ConsumeOneTime(ctx, o.Kind, o.Hash, at(2*time.Minute))
		wantErr(t, "ConsumeOneTime(g1) again", err, store.ErrUsed)
		// Used takes precedence over expired.
		_, err = s.ConsumeOneTime(ctx, o.Kind, o.Hash, at(2*time.Hour))
		wantErr(t, "ConsumeOneTime(g1) again, after expiry", err, store.ErrUsed)
	}},
	{"ConsumeOneTime/StoredUsed", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		o := newOneTime(store.OneTimeImport, "i1")
		o.UsedAt = ptr(at(time.Second))
		check(t, "PutOneTime(i1, used)", s.PutOneTime(ctx, o))
		_, err := s.ConsumeOneTime(ctx, o.Kind, o.Hash, at(time.Minute))
		wantErr(t, "ConsumeOneTime(i1)", err, store.ErrUsed)
	}},
	{"ConsumeOneTime/NotFound", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		o := newOneTime(store.OneTimeGrant, "g1")
		check(t, "PutOneTime(g1)", s.PutOneTime(ctx, o))
		unknown := sha256.Sum256([]byte("unknown"))
		for _, c := range []struct {
			name string
			kind string
			hash []byte
		}{
			{"other kind", store.OneTimeEnrollToken, o.Hash},
			{"unknown hash", store.OneTimeGrant, unknown[:]},
			{"short hash", store.OneTimeGrant, o.Hash[:16]},
			{"nil hash", store.OneTimeGrant, nil},
			{"empty kind", "", o.Hash},
		} {
			_, err := s.ConsumeOneTime(ctx, c.kind, c.hash, at(time.Minute))
			wantErr(t, fmt.Sprintf("ConsumeOneTime(%s)", c.name), err, store.ErrNotFound)
		}
		// None of that used it up.
		_, err := s.ConsumeOneTime(ctx, o.Kind, o.Hash, at(time.Minute))
		check(t, "ConsumeOneTime(g1)", err)
	}},
	{"ConsumeOneTime/Expired", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		o := newOneTime(store.OneTimeChallenge, "c1")
		check(t, "PutOneTime(c1)", s.PutOneTime(ctx, o))
		for _, now := range []time.Time{o.ExpiresAt, o.ExpiresAt.Add(time.Nanosecond), o.ExpiresAt.Add(time.Hour)} {
			_, err := s.ConsumeOneTime(ctx, o.Kind, o.Hash, now)
			wantErr(t, fmt.Sprintf("ConsumeOneTime(c1, ExpiresAt%+v)", now.Sub(o.ExpiresAt)), err, store.ErrExpired)
		}
		// The refusals left it unused: a clock just before expiry still
		// consumes it.
		now := o.ExpiresAt.Add(-time.Nanosecond)
		got, err := s.ConsumeOneTime(ctx, o.Kind, o.Hash, now)
		check(t, "ConsumeOneTime(c1, ExpiresAt-1ns)", err)
		if !timePtrEqual(got.UsedAt, &now) {
			t.Errorf("ConsumeOneTime(c1, ExpiresAt-1ns).UsedAt = %s, want %s", show(got.UsedAt), show(now))
		}
	}},
	{"ConsumeOneTime/Concurrent", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		o := newOneTime(store.OneTimeGrant, "g1")
		check(t, "PutOneTime(g1)", s.PutOneTime(ctx, o))
		const n = 100
		errs := together(n, func(int) error {
			_, err := s.ConsumeOneTime(ctx, o.Kind, o.Hash, at(time.Minute))
			return err
		})
		if won := succeeded(t, "ConsumeOneTime", errs, store.ErrUsed); won != 1 {
			t.Errorf("%d of %d concurrent ConsumeOneTime calls succeeded, want exactly 1", won, n)
		}
	}},
	{"DeleteExpiredOneTime", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		cutoff := at(time.Hour)
		expiries := map[string]time.Time{
			"long ago":  cutoff.Add(-time.Hour),
			"just":      cutoff.Add(-time.Nanosecond),
			"at cutoff": cutoff,
			"later":     cutoff.Add(time.Hour),
		}
		secrets := map[string]store.OneTimeSecret{}
		for label, exp := range expiries {
			o := newOneTime(store.OneTimeGrant, label)
			o.ExpiresAt = exp
			if label == "just" {
				o.UsedAt = ptr(at(0))
			}
			check(t, fmt.Sprintf("PutOneTime(%s)", label), s.PutOneTime(ctx, o))
			secrets[label] = o
		}
		n, err := s.DeleteExpiredOneTime(ctx, cutoff)
		check(t, "DeleteExpiredOneTime(cutoff)", err)
		if n != 2 {
			t.Errorf("DeleteExpiredOneTime(cutoff) = %d, want 2", n)
		}
		n, err = s.DeleteExpiredOneTime(ctx, cutoff)
		check(t, "DeleteExpiredOneTime(cutoff) again", err)
		if n != 0 {
			t.Errorf("DeleteExpiredOneTime(cutoff) again = %d, want 0", n)
		}
		for label, want := range map[string]error{
			"long ago":  store.ErrNotFound,
			"just":      store.ErrNotFound,
			"at cutoff": store.ErrExpired, // still there
			"later":     nil,
		} {
			_, err := s.ConsumeOneTime(ctx, store.OneTimeGrant, secrets[label].Hash, cutoff)
			wantOutcome(t, fmt.Sprintf("ConsumeOneTime(%s)", label), err, want)
		}
	}},
}
