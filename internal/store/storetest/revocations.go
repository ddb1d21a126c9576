package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

func eqRevocation(a, b store.Revocation) bool {
	return a.Seq == b.Seq && a.Tenant == b.Tenant && a.Kind == b.Kind &&
		a.Subject == b.Subject && a.At.Equal(b.At)
}

// feed returns every revocation event of tenant.
func feed(t *testing.T, s store.Store, tenant string) []store.Revocation {
	t.Helper()
	evs, err := s.RevocationsAfter(t.Context(), tenant, 0, 1000)
	check(t, fmt.Sprintf("RevocationsAfter(%q, 0, 1000)", tenant), err)
	return evs
}

// wantFeed fails t unless tenant's events are exactly want.
func wantFeed(t *testing.T, s store.Store, tenant string, want []store.Revocation) {
	t.Helper()
	got := feed(t, s, tenant)
	if !slices.EqualFunc(got, want, eqRevocation) {
		t.Errorf("RevocationsAfter(%q, 0, 1000) = %s, want %s", tenant, show(got), show(want))
	}
}

// wantLast fails t unless LastRevocation is want.
func wantLast(t *testing.T, s store.Store, want int64) {
	t.Helper()
	got, err := s.LastRevocation(t.Context())
	check(t, "LastRevocation()", err)
	if got != want {
		t.Errorf("LastRevocation() = %d, want %d", got, want)
	}
}

// createKeyOf creates a non-retained key id of tenant.
func createKeyOf(t *testing.T, s store.Store, tenant, id string) {
	t.Helper()
	k, v := newKey(id, false)
	k.Tenant = tenant
	check(t, fmt.Sprintf("CreateKey(%s)", id), s.CreateKey(t.Context(), k, v))
}

// createInstanceOf creates an instance id of tenant.
func createInstanceOf(t *testing.T, s store.Store, tenant, id string) {
	t.Helper()
	check(t, fmt.Sprintf("CreateInstance(%s)", id),
		s.CreateInstance(t.Context(), newInstance(id, tenant, "CN=c", at(0))))
}

func keyEvent(seq int64, tenant, id string, when time.Time) store.Revocation {
	return store.Revocation{Seq: seq, Tenant: tenant, Kind: store.RevocationKey, Subject: id, At: when}
}

func instanceEvent(seq int64, tenant, id string, when time.Time) store.Revocation {
	return store.Revocation{Seq: seq, Tenant: tenant, Kind: store.RevocationInstance, Subject: id, At: when}
}

var revocationsTests = []test{
	{"Empty", func(t *testing.T, s store.Store) {
		wantFeed(t, s, "acme", nil)
		wantLast(t, s, 0)
	}},
	{"Interleaved", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		createKeyOf(t, s, "acme", "k1")
		createKeyOf(t, s, "globex", "k2")
		createKeyOf(t, s, "acme", "k3")
		createInstanceOf(t, s, "globex", "i-1")
		createInstanceOf(t, s, "acme", "i-2")
		steps := []struct {
			call string
			fn   func(time.Time) error
			ev   store.Revocation // Seq and At filled in below
		}{
			{"DisableKey(k1)", func(w time.Time) error { return s.DisableKey(ctx, "k1", w) },
				keyEvent(0, "acme", "k1", time.Time{})},
			{"RevokeInstance(i-1)", func(w time.Time) error { return s.RevokeInstance(ctx, "i-1", w) },
				instanceEvent(0, "globex", "i-1", time.Time{})},
			{"RevokeInstance(i-2)", func(w time.Time) error { return s.RevokeInstance(ctx, "i-2", w) },
				instanceEvent(0, "acme", "i-2", time.Time{})},
			{"DisableKey(k2)", func(w time.Time) error { return s.DisableKey(ctx, "k2", w) },
				keyEvent(0, "globex", "k2", time.Time{})},
			{"DisableKey(k3)", func(w time.Time) error { return s.DisableKey(ctx, "k3", w) },
				keyEvent(0, "acme", "k3", time.Time{})},
		}
		want := map[string][]store.Revocation{}
		for i, st := range steps {
			// Times run backwards: the feed is ordered by seq, not by At.
			when := at(time.Duration(len(steps)-i) * time.Minute)
			check(t, st.call, st.fn(when))
			ev := st.ev
			ev.Seq, ev.At = int64(i+1), when
			want[ev.Tenant] = append(want[ev.Tenant], ev)
			wantLast(t, s, ev.Seq)
		}
		wantFeed(t, s, "acme", want["acme"])
		wantFeed(t, s, "globex", want["globex"])
		wantFeed(t, s, "initech", nil)
		wantFeed(t, s, "", nil)
	}},
	{"RevocationsAfter/Paging", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		// acme gets seqs 1, 3, 5, 6; globex 2, 4.
		for i, tenant := range []string{"acme", "globex", "acme", "globex", "acme", "acme"} {
			id := fmt.Sprintf("k%d", i+1)
			createKeyOf(t, s, tenant, id)
			check(t, fmt.Sprintf("DisableKey(%s)", id), s.DisableKey(ctx, id, at(time.Duration(i)*time.Second)))
		}
		for _, c := range []struct {
			tenant string
			after  int64
			limit  int
			want   []int64
		}{
			{"acme", 0, 100, []int64{1, 3, 5, 6}},
			{"acme", 0, 2, []int64{1, 3}},
			{"acme", 3, 2, []int64{5, 6}},
			{"acme", 2, 1, []int64{3}},
			{"acme", 4, 10, []int64{5, 6}},
			{"acme", 6, 10, nil},
			{"acme", 99, 10, nil},
			{"acme", -1, 1, []int64{1}},
			{"acme", 0, 0, nil},
			{"acme", 0, -1, nil},
			{"globex", 0, 100, []int64{2, 4}},
			{"globex", 2, 100, []int64{4}},
			{"globex", 1, 1, []int64{2}},
			{"globex", 4, 100, nil},
			{"initech", 0, 100, nil},
		} {
			call := fmt.Sprintf("RevocationsAfter(%q, %d, %d)", c.tenant, c.after, c.limit)
			evs, err := s.RevocationsAfter(ctx, c.tenant, c.after, c.limit)
			check(t, call, err)
			var seqs []int64
			for _, ev := range evs {
				seqs = append(seqs, ev.Seq)
				if ev.Tenant != c.tenant {
					t.Errorf("%s returned %s, of another tenant", call, show(ev))
				}
			}
			if !slices.Equal(seqs, c.want) {
				t.Errorf("%s = seqs %v, want %v", call, seqs, c.want)
			}
		}
		wantLast(t, s, 6)
	}},
	{"NoEventWithoutChange", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		createKeyOf(t, s, "acme", "k1")
		createInstanceOf(t, s, "acme", "i-1")
		check(t, "DisableKey(k1)", s.DisableKey(ctx, "k1", at(time.Minute)))
		check(t, "RevokeInstance(i-1)", s.RevokeInstance(ctx, "i-1", at(2*time.Minute)))
		check(t, "DisableKey(k1) again", s.DisableKey(ctx, "k1", at(time.Hour)))
		check(t, "RevokeInstance(i-1) again", s.RevokeInstance(ctx, "i-1", at(time.Hour)))
		wantErr(t, "DisableKey(nope)", s.DisableKey(ctx, "nope", at(time.Hour)), store.ErrNotFound)
		wantErr(t, "RevokeInstance(nope)", s.RevokeInstance(ctx, "nope", at(time.Hour)), store.ErrNotFound)
		// A key and an instance share no namespace: neither call finds the other.
		wantErr(t, "DisableKey(i-1)", s.DisableKey(ctx, "i-1", at(time.Hour)), store.ErrNotFound)
		wantErr(t, "RevokeInstance(k1)", s.RevokeInstance(ctx, "k1", at(time.Hour)), store.ErrNotFound)
		wantFeed(t, s, "acme", []store.Revocation{
			keyEvent(1, "acme", "k1", at(time.Minute)),
			instanceEvent(2, "acme", "i-1", at(2*time.Minute)),
		})
		wantLast(t, s, 2)
	}},
	{"Concurrent", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		const n = 20
		for i := range n {
			createKeyOf(t, s, "acme", fmt.Sprintf("k%02d", i))
		}
		errs := together(n, func(i int) error {
			return s.DisableKey(ctx, fmt.Sprintf("k%02d", i), at(time.Duration(i)*time.Second))
		})
		for i, err := range errs {
			check(t, fmt.Sprintf("DisableKey(k%02d)", i), err)
		}
		evs := feed(t, s, "acme")
		if len(evs) != n {
			t.Fatalf("RevocationsAfter(acme, 0, 1000) = %d events, want %d", len(evs), n)
		}
		seen := map[string]bool{}
		for i, ev := range evs {
			if ev.Seq != int64(i+1) {
				t.Errorf("event %d has Seq %d, want %d (no gaps, no duplicates)", i, ev.Seq, i+1)
			}
			if seen[ev.Subject] {
				t.Errorf("event %d: a second event for %s", ev.Seq, ev.Subject)
			}
			seen[ev.Subject] = true
			var k int
			if _, err := fmt.Sscanf(ev.Subject, "k%d", &k); err != nil || ev.Kind != store.RevocationKey ||
				!ev.At.Equal(at(time.Duration(k)*time.Second)) {
				t.Errorf("event %d = %s, want a key event at the time its DisableKey gave", ev.Seq, show(ev))
			}
		}
		wantLast(t, s, n)
	}},
	{"Concurrent/SameSubject", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		createKeyOf(t, s, "acme", "k1")
		createInstanceOf(t, s, "acme", "i-1")
		const n = 10
		errs := together(2*n, func(j int) error {
			i := j / 2
			if j%2 == 0 {
				return s.DisableKey(ctx, "k1", at(time.Duration(i)*time.Second))
			}
			return s.RevokeInstance(ctx, "i-1", at(time.Duration(i)*time.Second))
		})
		for i, err := range errs {
			check(t, fmt.Sprintf("call #%d", i), err)
		}
		evs := feed(t, s, "acme")
		if len(evs) != 2 || evs[0].Kind == evs[1].Kind {
			t.Fatalf("RevocationsAfter(acme, 0, 1000) = %s, want one event for k1 and one for i-1", show(evs))
		}
		k, err := s.GetKey(ctx, "k1")
		check(t, "GetKey(k1)", err)
		in, err := s.GetInstance(ctx, "i-1")
		check(t, "GetInstance(i-1)", err)
		kept := map[string]*time.Time{
			store.RevocationKey + "/k1":       k.DisabledAt,
			store.RevocationInstance + "/i-1": in.RevokedAt,
		}
		for _, ev := range evs {
			// The call that won kept its time, and its event says so.
			kept, ok := kept[ev.Kind+"/"+ev.Subject]
			if !ok {
				t.Errorf("event %s, want one for key k1 and one for instance i-1", show(ev))
				continue
			}
			if kept == nil || !ev.At.Equal(*kept) {
				t.Errorf("event %s does not match the stored time %s", show(ev), show(kept))
			}
		}
		wantLast(t, s, 2)
	}},
}
