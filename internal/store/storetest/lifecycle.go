package storetest

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// versionEvent is the feed event SetMinDecryptionVersion appends.
func versionEvent(seq int64, tenant, id string, floor int, when time.Time) store.Revocation {
	return store.Revocation{Seq: seq, Tenant: tenant, Kind: store.RevocationKeyVersion,
		Subject: fmt.Sprintf("%s:%d", id, floor), At: when}
}

// keyWithVersions creates key id (tenant acme) with versions 1..n.
func keyWithVersions(t *testing.T, s store.Store, id string, n int) store.Key {
	t.Helper()
	ctx := t.Context()
	k, v := newKey(id, false)
	check(t, fmt.Sprintf("CreateKey(%s)", id), s.CreateKey(ctx, k, v))
	for ver := 2; ver <= n; ver++ {
		check(t, fmt.Sprintf("AddKeyVersion(%s, %d)", id, ver),
			s.AddKeyVersion(ctx, store.KeyVersion{KeyID: id, Version: ver, CreatedAt: at(time.Duration(ver) * time.Hour)}))
	}
	k.CurrentVersion = n
	return k
}

// wantUsage fails t unless version ver of id has these totals.
func wantUsage(t *testing.T, s store.Store, id string, ver int, encs, bytes int64) {
	t.Helper()
	v, err := s.GetKeyVersion(t.Context(), id, ver)
	check(t, fmt.Sprintf("GetKeyVersion(%s, %d)", id, ver), err)
	if v.Encryptions != encs || v.Bytes != bytes {
		t.Errorf("GetKeyVersion(%s, %d) usage = %d encryptions, %d bytes; want %d, %d", id, ver, v.Encryptions, v.Bytes, encs, bytes)
	}
}

var lifecycleTests = []test{
	{"CreateKey/LifecycleFields", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		k, v := newKey("k1", true)
		k.RotationPeriod = 90*24*time.Hour + time.Nanosecond
		v.Encryptions, v.Bytes = 3, 300
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v))
		got, err := s.GetKey(ctx, "k1")
		check(t, "GetKey(k1)", err)
		if !eqKey(got, k) || got.MinDecryptionVersion != 0 {
			t.Errorf("GetKey(k1) = %s, want %s", show(got), show(k))
		}
		wantUsage(t, s, "k1", 1, 3, 300)
		v2 := store.KeyVersion{KeyID: "k1", Version: 2, CreatedAt: at(time.Hour)}
		check(t, "AddKeyVersion(k1, 2)", s.AddKeyVersion(ctx, v2))
		wantUsage(t, s, "k1", 2, 0, 0)
	}},
	{"SetMinDecryptionVersion", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		keyWithVersions(t, s, "k1", 3)
		keyWithVersions(t, s, "k2", 2)
		// The new versions appended key_rotated events; those of the steps
		// come after them.
		wantEvents := feed(t, s, "acme")
		base := int64(len(wantEvents))
		steps := []struct {
			version int
			want    error // nil: accepted
			floor   int   // MinDecryptionVersion afterwards
			events  int   // key_version events of k1 afterwards
		}{
			{0, store.ErrConflict, 0, 0},
			{4, store.ErrConflict, 0, 0},
			{2, nil, 2, 1},
			{2, nil, 2, 1}, // the same again: no change, no event
			{1, store.ErrConflict, 2, 1},
			{3, nil, 3, 2},
			{-1, store.ErrConflict, 3, 2},
		}
		for i, st := range steps {
			when := at(time.Duration(i) * time.Minute)
			err := s.SetMinDecryptionVersion(ctx, "k1", st.version, when)
			call := fmt.Sprintf("step %d: SetMinDecryptionVersion(k1, %d)", i, st.version)
			if wantOutcome(t, call, err, st.want) && int64(len(wantEvents)) < base+int64(st.events) {
				wantEvents = append(wantEvents, versionEvent(base+int64(st.events), "acme", "k1", st.version, when))
			}
			got, err := s.GetKey(ctx, "k1")
			check(t, "GetKey(k1)", err)
			if got.MinDecryptionVersion != st.floor {
				t.Errorf("after step %d: GetKey(k1).MinDecryptionVersion = %d, want %d", i, got.MinDecryptionVersion, st.floor)
			}
		}
		wantFeed(t, s, "acme", wantEvents)
		other, err := s.GetKey(ctx, "k2")
		check(t, "GetKey(k2)", err)
		if other.MinDecryptionVersion != 0 {
			t.Errorf("GetKey(k2).MinDecryptionVersion = %d, want 0 (untouched)", other.MinDecryptionVersion)
		}
		wantErr(t, "SetMinDecryptionVersion(nope, 1)", s.SetMinDecryptionVersion(ctx, "nope", 1, t0), store.ErrNotFound)
	}},
	{"SetMinDecryptionVersion/FeedOrder", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		keyWithVersions(t, s, "k1", 2)
		setup := feed(t, s, "acme") // version 2's key_rotated event
		if len(setup) != 1 || setup[0].Kind != store.RevocationKeyRotated || setup[0].Subject != "k1:2" {
			t.Fatalf("feed after adding version 2 = %s, want one key_rotated k1:2", show(setup))
		}
		check(t, "SetMinDecryptionVersion(k1, 2)", s.SetMinDecryptionVersion(ctx, "k1", 2, at(time.Minute)))
		check(t, "DisableKey(k1)", s.DisableKey(ctx, "k1", at(time.Hour)))
		wantFeed(t, s, "acme", append(setup,
			versionEvent(2, "acme", "k1", 2, at(time.Minute)),
			keyEvent(3, "acme", "k1", at(time.Hour)),
		))
		wantLast(t, s, 3)
	}},
	{"AddKeyUsage", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		keyWithVersions(t, s, "k1", 2)
		createKeyOf(t, s, "globex", "k-globex")
		n, err := s.AddKeyUsage(ctx, "acme", []store.KeyUsage{
			{KeyID: "k1", Version: 1, Encryptions: 5, Bytes: 500},
			{KeyID: "k1", Version: 2, Encryptions: 1, Bytes: 10},
			{KeyID: "k1", Version: 1, Encryptions: 2, Bytes: 20}, // the same version twice adds twice
			{KeyID: "k1", Version: 3},                            // no such version
			{KeyID: "nope", Version: 1, Encryptions: 9},          // no such key
			{KeyID: "k-globex", Version: 1, Encryptions: 9},      // another tenant's key
		})
		check(t, "AddKeyUsage(acme, …)", err)
		if n != 3 {
			t.Errorf("AddKeyUsage(acme, …) = %d, want 3 counts added", n)
		}
		wantUsage(t, s, "k1", 1, 7, 520)
		wantUsage(t, s, "k1", 2, 1, 10)
		wantUsage(t, s, "k-globex", 1, 0, 0)
		if n, err := s.AddKeyUsage(ctx, "acme", nil); err != nil || n != 0 {
			t.Errorf("AddKeyUsage(acme, nil) = %d, %v; want 0, nil", n, err)
		}
		if _, err := s.AddKeyUsage(ctx, "acme", []store.KeyUsage{{KeyID: "k1", Version: 1, Encryptions: -1}}); err == nil {
			t.Error("AddKeyUsage(negative) = nil, want an error")
		}
		wantUsage(t, s, "k1", 1, 7, 520)
		got, err := s.ListKeyVersions(ctx, "k1")
		check(t, "ListKeyVersions(k1)", err)
		if len(got) != 2 || got[0].Encryptions != 7 || got[0].Bytes != 520 || got[1].Encryptions != 1 {
			t.Errorf("ListKeyVersions(k1) = %s, want the usage totals", show(got))
		}
	}},
	{"AddKeyUsage/Saturates", func(t *testing.T, s store.Store) {
		// Totals stop at the largest int64 instead of overflowing (into a
		// REAL on SQLite, which no read could scan any more; an error on
		// PostgreSQL), and the key still reads and rotates.
		ctx := t.Context()
		k, v := newKey("k1", true) // with its EKB, so it can be due for rotation
		check(t, "CreateKey(k1)", s.CreateKey(ctx, k, v))
		big := store.KeyUsage{KeyID: "k1", Version: 1, Encryptions: math.MaxInt64, Bytes: math.MaxInt64}
		for i, counts := range [][]store.KeyUsage{
			{big},
			{big, {KeyID: "k1", Version: 1, Encryptions: 1, Bytes: 1}},
			{{KeyID: "k1", Version: 1, Encryptions: math.MaxInt64 / 2, Bytes: 1 << 55}},
		} {
			n, err := s.AddKeyUsage(ctx, "acme", counts)
			check(t, fmt.Sprintf("AddKeyUsage(step %d)", i), err)
			if n != len(counts) {
				t.Errorf("AddKeyUsage(step %d) = %d, want %d", i, n, len(counts))
			}
			wantUsage(t, s, "k1", 1, math.MaxInt64, math.MaxInt64)
		}
		if _, err := s.GetKey(ctx, "k1"); err != nil {
			t.Errorf("GetKey(k1) after saturation = %v", err)
		}
		vs, err := s.ListKeyVersions(ctx, "k1")
		check(t, "ListKeyVersions(k1)", err)
		if len(vs) != 1 || vs[0].Encryptions != math.MaxInt64 || vs[0].Bytes != math.MaxInt64 {
			t.Errorf("ListKeyVersions(k1) = %s, want saturated totals", show(vs))
		}
		due, err := s.KeysDueForRotation(ctx, at(0), "aes-256-gcm", 1, 10)
		check(t, "KeysDueForRotation", err)
		if len(due) != 1 || due[0].KeyID != "k1" {
			t.Errorf("KeysDueForRotation = %s, want k1", show(due))
		}
		// 300 counts of 2^55 bytes in one report (the finding): 2^63.
		many := make([]store.KeyUsage, 300)
		keyWithVersions(t, s, "k2", 1)
		for i := range many {
			many[i] = store.KeyUsage{KeyID: "k2", Version: 1, Encryptions: 1, Bytes: 1 << 55}
		}
		_, err = s.AddKeyUsage(ctx, "acme", many)
		check(t, "AddKeyUsage(300 × 2^55 bytes)", err)
		wantUsage(t, s, "k2", 1, 300, math.MaxInt64)
	}},
	{"AddKeyUsage/Concurrent", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		keyWithVersions(t, s, "k1", 2)
		const writers, each = 8, 10
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					// Both versions in both orders: concurrent reports must
					// not deadlock on each other.
					counts := []store.KeyUsage{{KeyID: "k1", Version: 1, Encryptions: 1, Bytes: 3}, {KeyID: "k1", Version: 2, Encryptions: 2}}
					if w%2 == 1 {
						counts[0], counts[1] = counts[1], counts[0]
					}
					if _, err := s.AddKeyUsage(ctx, "acme", counts); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent AddKeyUsage = %v", err)
		}
		wantUsage(t, s, "k1", 1, writers*each, 3*writers*each)
		wantUsage(t, s, "k1", 2, 2*writers*each, 0)
	}},
}
