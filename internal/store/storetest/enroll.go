package storetest

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// enrollTests: enrollment consumes its token and registers the instance
// and its certificates in one transaction; renewal swaps the current
// certificates of a live instance; releases and rotation candidates.
var enrollTests = []test{
	{"EnrollInstance/Atomic", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		tok := newOneTime(store.OneTimeEnrollToken, "tok")
		check(t, "PutOneTime", s.PutOneTime(ctx, tok))
		in := newInstance("i-1", "acme", "CN=a", at(time.Minute))
		certs := []store.Cert{newCert("c-i-1", store.CertInstance, "i-1"), newCert("w-i-1", store.CertWrapping, "i-1")}
		check(t, "EnrollInstance", s.EnrollInstance(ctx, store.OneTimeEnrollToken, tok.Hash, in, certs))
		got, err := s.GetInstance(ctx, "i-1")
		wantEqual(t, "GetInstance", got, err, in, eqInstance)
		for _, c := range certs {
			_, err := s.GetCert(ctx, c.Serial)
			check(t, "GetCert("+c.Serial+")", err)
		}
		_, err = s.ConsumeOneTime(ctx, store.OneTimeEnrollToken, tok.Hash, at(2*time.Minute))
		wantErr(t, "ConsumeOneTime after EnrollInstance", err, store.ErrUsed)

		// The used token: nothing of the second instance is written.
		in2 := newInstance("i-2", "acme", "CN=a", at(3*time.Minute))
		err = s.EnrollInstance(ctx, store.OneTimeEnrollToken, tok.Hash, in2, []store.Cert{newCert("c-i-2", store.CertInstance, "i-2")})
		wantErr(t, "EnrollInstance with a used token", err, store.ErrUsed)
		_, err = s.GetInstance(ctx, "i-2")
		wantErr(t, "GetInstance(i-2)", err, store.ErrNotFound)
		_, err = s.GetCert(ctx, "c-i-2")
		wantErr(t, "GetCert(c-i-2)", err, store.ErrNotFound)
	}},
	{"EnrollInstance/NothingOnFailure", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateInstance(i-1)", s.CreateInstance(ctx, newInstance("i-1", "acme", "CN=a", at(0))))
		check(t, "PutCert(dup)", s.PutCert(ctx, newCert("dup", store.CertApp, "x")))
		for _, tc := range []struct {
			name  string
			in    store.Instance
			certs []store.Cert
			want  error
		}{
			// The instance insert fails after the token and certs: all undone.
			{"duplicate instance", newInstance("i-1", "acme", "CN=a", at(time.Minute)), []store.Cert{newCert("c-new", store.CertInstance, "i-1")}, store.ErrExists},
			// A certificate insert fails after the token: all undone.
			{"duplicate serial", newInstance("i-3", "acme", "CN=a", at(time.Minute)), []store.Cert{newCert("c-i-3", store.CertInstance, "i-3"), newCert("dup", store.CertWrapping, "i-3")}, store.ErrExists},
		} {
			tok := newOneTime(store.OneTimeEnrollToken, tc.name)
			check(t, "PutOneTime", s.PutOneTime(ctx, tok))
			wantErr(t, "EnrollInstance("+tc.name+")", s.EnrollInstance(ctx, store.OneTimeEnrollToken, tok.Hash, tc.in, tc.certs), tc.want)
			if _, err := s.ConsumeOneTime(ctx, store.OneTimeEnrollToken, tok.Hash, at(2*time.Minute)); err != nil {
				t.Errorf("%s: the token was burnt by a failed enrollment: ConsumeOneTime = %v", tc.name, err)
			}
			for _, c := range tc.certs {
				if c.Serial == "dup" {
					continue
				}
				_, err := s.GetCert(ctx, c.Serial)
				wantErr(t, tc.name+": GetCert("+c.Serial+")", err, store.ErrNotFound)
			}
		}
		_, err := s.GetInstance(ctx, "i-3")
		wantErr(t, "GetInstance(i-3)", err, store.ErrNotFound)
	}},
	{"EnrollInstance/TokenRefusals", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		expired := newOneTime(store.OneTimeEnrollToken, "expired")
		grant := newOneTime(store.OneTimeGrant, "grant")
		for _, o := range []store.OneTimeSecret{expired, grant} {
			check(t, "PutOneTime", s.PutOneTime(ctx, o))
		}
		late := newInstance("i-1", "acme", "CN=a", at(2*time.Hour))
		wantErr(t, "expired token", s.EnrollInstance(ctx, store.OneTimeEnrollToken, expired.Hash, late, nil), store.ErrExpired)
		in := newInstance("i-1", "acme", "CN=a", at(time.Minute))
		wantErr(t, "a grant as token", s.EnrollInstance(ctx, store.OneTimeEnrollToken, grant.Hash, in, nil), store.ErrNotFound)
		wantErr(t, "unknown token", s.EnrollInstance(ctx, store.OneTimeEnrollToken, []byte("nope"), in, nil), store.ErrNotFound)
		_, err := s.GetInstance(ctx, "i-1")
		wantErr(t, "GetInstance(i-1)", err, store.ErrNotFound)
		// No token (attestation enrollment): registration alone.
		check(t, "EnrollInstance without a token", s.EnrollInstance(ctx, "", nil, in, nil))
	}},
	{"PeekOneTime", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		tok := newOneTime(store.OneTimeEnrollToken, "tok")
		check(t, "PutOneTime", s.PutOneTime(ctx, tok))
		for i := 0; i < 2; i++ { // peeking changes nothing
			got, err := s.PeekOneTime(ctx, store.OneTimeEnrollToken, tok.Hash, at(time.Minute))
			check(t, "PeekOneTime", err)
			if got.Tenant != tok.Tenant || got.Subject != tok.Subject || !got.ExpiresAt.Equal(tok.ExpiresAt) || got.UsedAt != nil {
				t.Errorf("PeekOneTime = %+v, want %+v", got, tok)
			}
		}
		_, err := s.PeekOneTime(ctx, store.OneTimeGrant, tok.Hash, at(time.Minute))
		wantErr(t, "PeekOneTime(other kind)", err, store.ErrNotFound)
		_, err = s.PeekOneTime(ctx, store.OneTimeEnrollToken, tok.Hash, at(time.Hour))
		wantErr(t, "PeekOneTime(expired)", err, store.ErrExpired)
		_, err = s.ConsumeOneTime(ctx, store.OneTimeEnrollToken, tok.Hash, at(time.Minute))
		check(t, "ConsumeOneTime", err)
		_, err = s.PeekOneTime(ctx, store.OneTimeEnrollToken, tok.Hash, at(time.Minute))
		wantErr(t, "PeekOneTime(used)", err, store.ErrUsed)
		// GetOneTime reads it used (and whatever the time).
		got, err := s.GetOneTime(ctx, store.OneTimeEnrollToken, tok.Hash)
		check(t, "GetOneTime(used)", err)
		if got.UsedAt == nil || !got.UsedAt.Equal(at(time.Minute)) || got.Subject != tok.Subject || !got.ExpiresAt.Equal(tok.ExpiresAt) {
			t.Errorf("GetOneTime = %+v, want it used at %v", got, at(time.Minute))
		}
		_, err = s.GetOneTime(ctx, store.OneTimeGrant, tok.Hash)
		wantErr(t, "GetOneTime(other kind)", err, store.ErrNotFound)
		_, err = s.GetOneTime(ctx, store.OneTimeEnrollToken, nil)
		wantErr(t, "GetOneTime(no hash)", err, store.ErrNotFound)
	}},
	{"RenewInstance", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateInstance", s.CreateInstance(ctx, newInstance("i-1", "acme", "CN=a", at(0))))
		certs := []store.Cert{newCert("c2", store.CertInstance, "i-1"), newCert("w2", store.CertWrapping, "i-1")}
		check(t, "RenewInstance", s.RenewInstance(ctx, "i-1", "c2", "w2", certs))
		got, err := s.GetInstance(ctx, "i-1")
		check(t, "GetInstance", err)
		if got.CertSerial != "c2" || got.WrappingSerial != "w2" {
			t.Errorf("after RenewInstance serials = %s, %s; want c2, w2", got.CertSerial, got.WrappingSerial)
		}
		for _, c := range certs {
			_, err := s.GetCert(ctx, c.Serial)
			check(t, "GetCert("+c.Serial+")", err)
		}
		wantErr(t, "RenewInstance(unknown)", s.RenewInstance(ctx, "i-9", "c9", "w9", nil), store.ErrNotFound)
		check(t, "RevokeInstance", s.RevokeInstance(ctx, "i-1", at(time.Hour)))
		wantErr(t, "RenewInstance(revoked)", s.RenewInstance(ctx, "i-1", "c3", "w3", []store.Cert{newCert("c3", store.CertInstance, "i-1")}), store.ErrConflict)
		_, err = s.GetCert(ctx, "c3")
		wantErr(t, "GetCert(c3) after a refused renewal", err, store.ErrNotFound)
	}},
	{"DeleteLapsedInstances", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		// i-1 and i-3 lapsed (identity certificate expired at 1 h and
		// 2 h), i-2 renewed to a certificate that lives on, i-4 never
		// lapses; i-3 was revoked too.
		for _, c := range []struct {
			id      string
			expires time.Duration
		}{{"i-1", time.Hour}, {"i-2", time.Hour}, {"i-3", 2 * time.Hour}, {"i-4", 90 * 24 * time.Hour}} {
			cert := newCert("c-"+c.id, store.CertInstance, c.id)
			cert.NotAfter = at(c.expires)
			check(t, "EnrollInstance("+c.id+")", s.EnrollInstance(ctx, "", nil, newInstance(c.id, "acme", "CN=a", at(0)), []store.Cert{cert}))
			check(t, "RecordReleases("+c.id+")", s.RecordReleases(ctx, c.id, []store.KeyRef{{KeyID: "k1", Version: 1}, {KeyID: "k2", Version: 1}}, at(0)))
		}
		renewed := newCert("c-i-2-renewed", store.CertInstance, "i-2")
		check(t, "RenewInstance(i-2)", s.RenewInstance(ctx, "i-2", renewed.Serial, "w-i-2", []store.Cert{renewed}))
		check(t, "RevokeInstance(i-3)", s.RevokeInstance(ctx, "i-3", at(30*time.Minute)))

		gone, err := s.DeleteLapsedInstances(ctx, at(90*time.Minute), 10)
		check(t, "DeleteLapsedInstances(90 min)", err)
		if len(gone) != 1 || gone[0].ID != "i-1" || gone[0].Tenant != "acme" {
			t.Fatalf("DeleteLapsedInstances(90 min) = %+v, want i-1 (i-3's certificate lives until 2 h)", gone)
		}
		gone, err = s.DeleteLapsedInstances(ctx, at(3*time.Hour), 10)
		check(t, "DeleteLapsedInstances(3 h)", err)
		if len(gone) != 1 || gone[0].ID != "i-3" || gone[0].RevokedAt == nil {
			t.Fatalf("DeleteLapsedInstances(3 h) = %+v, want the revoked i-3 (i-2 was renewed)", gone)
		}
		for _, id := range []string{"i-1", "i-3"} {
			_, err := s.GetInstance(ctx, id)
			wantErr(t, "GetInstance("+id+") after its deletion", err, store.ErrNotFound)
			_, err = s.GetCert(ctx, "c-"+id)
			wantErr(t, "GetCert(c-"+id+") after its instance's deletion", err, store.ErrNotFound)
			got, err := s.ReleasedVersions(ctx, id, []string{"k1", "k2"})
			check(t, "ReleasedVersions("+id+")", err)
			if len(got) != 0 {
				t.Errorf("releases of the deleted %s stay: %v", id, got)
			}
		}
		for _, serial := range []string{"c-i-2", "c-i-2-renewed", "c-i-4"} {
			_, err := s.GetCert(ctx, serial)
			check(t, "GetCert("+serial+") of a live instance", err)
		}
		for _, id := range []string{"i-2", "i-4"} {
			got, err := s.ReleasedVersions(ctx, id, []string{"k1", "k2"})
			check(t, "ReleasedVersions("+id+")", err)
			if len(got) != 2 {
				t.Errorf("releases of the live %s: %v, want k1 and k2", id, got)
			}
		}
		evs, err := s.RevocationsAfter(ctx, "acme", 0, 10)
		check(t, "RevocationsAfter", err)
		if len(evs) != 1 || evs[0].Subject != "i-3" {
			t.Errorf("revocation events after the deletion: %+v, want i-3's", evs)
		}
		// At most limit at a time.
		for _, id := range []string{"i-5", "i-6", "i-7"} {
			cert := newCert("c-"+id, store.CertInstance, id)
			cert.NotAfter = at(time.Hour)
			check(t, "EnrollInstance("+id+")", s.EnrollInstance(ctx, "", nil, newInstance(id, "acme", "CN=a", at(0)), []store.Cert{cert}))
		}
		gone, err = s.DeleteLapsedInstances(ctx, at(3*time.Hour), 2)
		check(t, "DeleteLapsedInstances(limit 2)", err)
		if len(gone) != 2 || gone[0].ID != "i-5" || gone[1].ID != "i-6" {
			t.Fatalf("DeleteLapsedInstances(limit 2) = %+v, want i-5 and i-6", gone)
		}
	}},
	{"Releases", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "RecordReleases", s.RecordReleases(ctx, "i-1", []store.KeyRef{{KeyID: "k1", Version: 1}, {KeyID: "k1", Version: 3}, {KeyID: "k2", Version: 2}}, at(0)))
		check(t, "RecordReleases again", s.RecordReleases(ctx, "i-1", []store.KeyRef{{KeyID: "k1", Version: 3}}, at(time.Hour)))
		check(t, "RecordReleases(i-2)", s.RecordReleases(ctx, "i-2", []store.KeyRef{{KeyID: "k3", Version: 7}}, at(0)))
		check(t, "RecordReleases(none)", s.RecordReleases(ctx, "i-2", nil, at(0)))
		got, err := s.ReleasedVersions(ctx, "i-1", []string{"k1", "k2", "k3", "k9"})
		check(t, "ReleasedVersions", err)
		if len(got) != 2 || got["k1"] != 3 || got["k2"] != 2 {
			t.Errorf("ReleasedVersions(i-1) = %v, want k1:3 k2:2 (k3 is another instance's)", got)
		}
		many := make([]string, 1200) // more than one query's worth of ids
		for i := range many {
			many[i] = fmt.Sprintf("m%d", i)
		}
		many[1100] = "k3"
		got, err = s.ReleasedVersions(ctx, "i-2", many)
		check(t, "ReleasedVersions(many)", err)
		if len(got) != 1 || got["k3"] != 7 {
			t.Errorf("ReleasedVersions(i-2, 1200 ids) = %v, want k3:7", got)
		}
	}},
	{"AddReleasedUsage", func(t *testing.T, s store.Store) {
		// An instance's report counts only for the versions released to
		// it, of keys of its tenant and of the counted type; everything
		// else is skipped alike.
		ctx := t.Context()
		keyWithVersions(t, s, "k1", 3)
		keyWithVersions(t, s, "k2", 1)
		hm, hv := newKey("k-hmac", false)
		hm.Type = "hmac-sha256"
		check(t, "CreateKey(k-hmac)", s.CreateKey(ctx, hm, hv))
		createKeyOf(t, s, "globex", "k-globex")
		check(t, "RecordReleases(i-1)", s.RecordReleases(ctx, "i-1", []store.KeyRef{
			{KeyID: "k1", Version: 2}, {KeyID: "k1", Version: 3}, {KeyID: "k-hmac", Version: 1},
			{KeyID: "k-globex", Version: 1}, {KeyID: "k-seed", Version: 1},
		}, at(0)))
		check(t, "RecordReleases(i-2)", s.RecordReleases(ctx, "i-2", []store.KeyRef{{KeyID: "k2", Version: 1}}, at(0)))
		n, err := s.AddReleasedUsage(ctx, "acme", "i-1", "aes-256-gcm", []store.KeyUsage{
			{KeyID: "k1", Version: 2, Encryptions: 5, Bytes: 50},
			{KeyID: "k1", Version: 3, Encryptions: math.MaxInt64, Bytes: 1},
			{KeyID: "k1", Version: 3, Encryptions: 1, Bytes: 1},
			{KeyID: "k1", Version: 1, Encryptions: 7},       // not released to i-1
			{KeyID: "k2", Version: 1, Encryptions: 7},       // released to i-2 only
			{KeyID: "k-hmac", Version: 1, Encryptions: 7},   // not a counted type
			{KeyID: "k-globex", Version: 1, Encryptions: 7}, // another tenant's
			{KeyID: "k-seed", Version: 1, Encryptions: 7},   // released, not registered
			{KeyID: "nope", Version: 1, Encryptions: 7},     // unknown
		})
		check(t, "AddReleasedUsage(acme, i-1, …)", err)
		if n != 3 {
			t.Errorf("AddReleasedUsage(acme, i-1, …) = %d, want 3 counts added", n)
		}
		wantUsage(t, s, "k1", 1, 0, 0)
		wantUsage(t, s, "k1", 2, 5, 50)
		wantUsage(t, s, "k1", 3, math.MaxInt64, 2)
		wantUsage(t, s, "k2", 1, 0, 0)
		wantUsage(t, s, "k-hmac", 1, 0, 0)
		wantUsage(t, s, "k-globex", 1, 0, 0)
		if n, err := s.AddReleasedUsage(ctx, "globex", "i-1", "aes-256-gcm", []store.KeyUsage{{KeyID: "k-globex", Version: 1, Encryptions: 1}}); err != nil || n != 1 {
			t.Errorf("AddReleasedUsage(globex, i-1, k-globex) = %d, %v; want 1, nil", n, err)
		}
		if _, err := s.AddReleasedUsage(ctx, "acme", "i-1", "aes-256-gcm", []store.KeyUsage{{KeyID: "k1", Version: 2, Bytes: -1}}); err == nil {
			t.Error("AddReleasedUsage(negative) = nil, want an error")
		}
		wantUsage(t, s, "k1", 2, 5, 50)
	}},
	{"KeysDueForRotation", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		mk := func(id, typ string, period time.Duration, ekb bool, encryptions int64) {
			k, v := newKey(id, false)
			k.Type, k.RotationPeriod = typ, period
			v.Encryptions = encryptions
			if ekb {
				v.EKB = []byte("ekb of " + id)
			} else {
				v.EKB = nil
			}
			check(t, "CreateKey("+id+")", s.CreateKey(ctx, k, v))
		}
		mk("a-period-due", "hmac-sha256", time.Hour, true, 0)
		mk("b-period-young", "hmac-sha256", 3*time.Hour, true, 0)
		mk("c-usage-due", "aes-256-gcm", 0, true, 100)
		mk("d-usage-low", "aes-256-gcm", 0, true, 99)
		mk("e-no-ekb", "aes-256-gcm", time.Hour, false, 500)
		mk("f-other-type-used", "hmac-sha256", 0, true, 500)
		mk("g-disabled", "aes-256-gcm", time.Hour, true, 500)
		check(t, "DisableKey", s.DisableKey(ctx, "g-disabled", at(time.Minute)))
		got, err := s.KeysDueForRotation(ctx, at(2*time.Hour), "aes-256-gcm", 100, 10)
		check(t, "KeysDueForRotation", err)
		var ids []string
		for _, k := range got {
			ids = append(ids, k.KeyID)
		}
		if fmt.Sprint(ids) != "[a-period-due c-usage-due]" {
			t.Errorf("KeysDueForRotation = %v, want [a-period-due c-usage-due]", ids)
		}
		if got, _ := s.KeysDueForRotation(ctx, at(2*time.Hour), "aes-256-gcm", 100, 1); len(got) != 1 {
			t.Errorf("KeysDueForRotation(limit 1) = %d keys", len(got))
		}
		// Once rotated, the new current version is young and unused.
		v2 := store.KeyVersion{KeyID: "a-period-due", Version: 2, EKB: []byte("v2"), CreatedAt: at(2 * time.Hour)}
		check(t, "AddKeyVersion", s.AddKeyVersion(ctx, v2))
		got, err = s.KeysDueForRotation(ctx, at(2*time.Hour+time.Minute), "aes-256-gcm", 100, 10)
		check(t, "KeysDueForRotation after rotation", err)
		if len(got) != 1 || got[0].KeyID != "c-usage-due" {
			t.Errorf("KeysDueForRotation after rotating a = %v, want c-usage-due only", got)
		}
	}},
	{"AddKeyVersion/RotatedEvent", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		createKeyOf(t, s, "acme", "k1")
		before, err := s.LastRevocation(ctx)
		check(t, "LastRevocation", err)
		check(t, "AddKeyVersion", s.AddKeyVersion(ctx, store.KeyVersion{KeyID: "k1", Version: 2, CreatedAt: at(time.Hour)}))
		evs, err := s.RevocationsAfter(ctx, "acme", before, 10)
		check(t, "RevocationsAfter", err)
		if len(evs) != 1 || evs[0].Kind != store.RevocationKeyRotated || evs[0].Subject != "k1:2" || !evs[0].At.Equal(at(time.Hour)) {
			t.Errorf("events after AddKeyVersion = %+v, want one key_rotated k1:2", evs)
		}
		wantErr(t, "AddKeyVersion(stale)", s.AddKeyVersion(ctx, store.KeyVersion{KeyID: "k1", Version: 2, CreatedAt: at(time.Hour)}), store.ErrConflict)
		evs, _ = s.RevocationsAfter(ctx, "acme", before, 10)
		if len(evs) != 1 {
			t.Errorf("a refused AddKeyVersion appended an event: %+v", evs)
		}
	}},
}
