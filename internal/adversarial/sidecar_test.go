package adversarial_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// A2, a compromised sidecar, calling the KMS with its own identity (issue
// 12): what it reports and what it reads must stay within the keys that
// were released to it. The attacker holds everything the sidecar process
// does, so it is played by a kmstest.FakeSidecar enrolled with a token
// for ledger, a custodian of acme that payments-api's keys do not name.

// hostileSidecar enrolls a sidecar bound to dn and returns its KMS
// client: the compromised process's mTLS identity.
func (w *world) hostileSidecar(t *testing.T, dn string) (*kmstest.FakeSidecar, *kmstest.Client) {
	t.Helper()
	s := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	s.Enroll(t, w.env.Anonymous(), w.token(t, dn))
	return s, s.Client(t, w.env)
}

func usage(c *kmstest.Client, counts ...api.UsageCount) (api.UsageAccepted, error) {
	var acc api.UsageAccepted
	err := c.Do("POST", "/v1/usage", api.UsageReport{Counts: counts}, &acc)
	return acc, err
}

// TestHostileSidecarReportsUsage: a sidecar of another custodian reports
// usage for a retained key it was never given, as in issue 12, where the
// KMS answered 200 accepted and the key was pushed to its usage limit or
// its counter overflowed so that every read of it failed. Nothing counts,
// the answer is the one for a key that does not exist, and the owner's
// key keeps working; the owner's own sidecar still reports.
func TestHostileSidecarReportsUsage(t *testing.T) {
	w := newWorld(t)
	key := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	honest := w.sidecar(t, w.payCreds.DN, "", func(c *sidecar.Config) { c.HealthInterval = 50 * time.Millisecond })
	honest.load(t, w.pay, key)
	_, hostile := w.hostileSidecar(t, w.ledCreds.DN)

	t.Run("the finding's report", func(t *testing.T) {
		counts := make([]api.UsageCount, 300)
		for i := range counts {
			counts[i] = api.UsageCount{KeyID: key.KeyID, Version: 1, Encryptions: 1, Bytes: 1 << 55}
		}
		acc, err := usage(hostile, counts...)
		if err == nil && acc.Accepted != 0 {
			t.Fatalf("300 counts of 2^55 bytes for another custodian's key: accepted %d", acc.Accepted)
		}
		if err != nil {
			wantOneOf(t, err, apiErr{400, api.CodeInvalidArgument})
		}
	})
	t.Run("the safe limit in one report", func(t *testing.T) {
		for _, c := range []api.UsageCount{
			{KeyID: key.KeyID, Version: 1, Encryptions: 1 << 32, Bytes: 1 << 40},
			{KeyID: key.KeyID, Version: 1, Encryptions: 1<<32 - 1},
		} {
			theirs, err := usage(hostile, c)
			if err != nil {
				t.Fatalf("report %+v: %v", c, err)
			}
			c.KeyID = "key_doesnotexist"
			none, err := usage(hostile, c)
			if err != nil {
				t.Fatalf("report %+v: %v", c, err)
			}
			if theirs != none || theirs.Accepted != 0 {
				t.Errorf("answer for another custodian's key %+v, for no key %+v; want both accepted 0", theirs, none)
			}
		}
	})
	t.Run("out of bounds", func(t *testing.T) {
		// Refused whatever the key: the bounds are checked first.
		for _, id := range []string{key.KeyID, "key_doesnotexist"} {
			_, err := usage(hostile, api.UsageCount{KeyID: id, Version: 1, Encryptions: 1<<32 + 1})
			wantOneOf(t, err, apiErr{400, api.CodeInvalidArgument})
			_, err = usage(hostile, api.UsageCount{KeyID: id, Version: 1, Encryptions: 1, Bytes: 1 << 62})
			wantOneOf(t, err, apiErr{400, api.CodeInvalidArgument})
		}
	})

	// The owner's key is untouched and works everywhere.
	var info api.DataKeyInfo
	w.pay.MustDo(t, "GET", "/v1/datakeys/"+key.KeyID, nil, &info)
	if v := info.Versions[0]; v.Encryptions != 0 || v.Bytes != 0 || info.RotationDue || info.CurrentVersion != 1 {
		t.Fatalf("the owner's key after the hostile reports = %+v, want nothing counted", info)
	}
	var ct api.EncryptResponse
	w.pay.MustDo(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: key.KeyID}, Plaintext: []byte("central")}, &ct)
	mustRewrap(t, w.pay, honest.cert, key.EKB)
	for range 3 {
		honest.must(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: key.KeyID}, Plaintext: []byte("local")}, nil)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		w.pay.MustDo(t, "GET", "/v1/datakeys/"+key.KeyID, nil, &info)
		if info.Versions[0].Encryptions == 4 { // one central, three in the sidecar
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the owner's sidecar's reports did not arrive: %+v", info.Versions[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHostileSidecarReadsTheFeed: the revocation feed told every sidecar
// of the tenant the ids of other custodians' live keys and of other
// sidecars (issue 12). A sidecar now reads only the events of keys
// released to it and of itself.
func TestHostileSidecarReadsTheFeed(t *testing.T) {
	w := newWorld(t)
	_, hostile := w.hostileSidecar(t, w.ledCreds.DN)
	var start api.RevocationFeed
	hostile.MustDo(t, "GET", "/v1/revocations", nil, &start)

	key := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	var v2 api.DataKey
	w.pay.MustDo(t, "POST", "/v1/datakeys/"+key.KeyID+"/versions", api.NewVersionRequest{EKB: key.EKB}, &v2)
	w.pay.MustDo(t, "POST", "/v1/datakeys/"+key.KeyID+"/min-decryption-version", api.MinDecryptionVersionRequest{Version: 2}, nil)
	w.pay.MustDo(t, "DELETE", "/v1/datakeys/"+key.KeyID, nil, nil)
	other := w.sidecar(t, w.payCreds.DN, "", nil)
	w.pay.MustDo(t, "DELETE", "/v1/instances/"+other.id, nil, nil)

	var feed api.RevocationFeed
	hostile.MustDo(t, "GET", "/v1/revocations?since="+start.Cursor, nil, &feed)
	if n := len(feed.Keys) + len(feed.KeyVersions) + len(feed.Rotated) + len(feed.Instances); n != 0 {
		t.Errorf("the feed of a sidecar that holds none of it = %+v, want no key or instance", feed)
	}
	if feed.Cursor == start.Cursor {
		t.Errorf("cursor stayed at %s: it must move past the events left out", feed.Cursor)
	}
	// Its own revocation still reaches it: it is refused from then on.
	hs, hc := w.hostileSidecar(t, w.ledCreds.DN)
	w.led.MustDo(t, "DELETE", "/v1/instances/"+hs.Enrollment.InstanceID, nil, nil)
	kmstest.WantError(t, hc.Do("GET", "/v1/revocations", nil, nil), 403, api.CodeRevoked)
}

// TestHostileSidecarProbesKeyIDs: a compromised sidecar (and its
// custodian) cannot tell another custodian's key from a key that does not
// exist by naming it: refresh, usage, grant and load give one answer.
func TestHostileSidecarProbesKeyIDs(t *testing.T) {
	w := newWorld(t)
	hs, hostile := w.hostileSidecar(t, w.ledCreds.DN)
	key := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	pub, err := kcrypto.MarshalKEMPublicKey(hs.KEMKey.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string]string{}
	for _, id := range []string{key.KeyID, "key_doesnotexist"} {
		var out api.WrappedKeys
		hostile.MustDo(t, "POST", "/v1/keys/refresh", api.RefreshRequest{Keys: []api.KeyVersionRef{{KeyID: id, Version: 1}}, Recipient: pub}, &out)
		if len(out.Keys) != 0 {
			t.Errorf("refresh of %s = %+v, want nothing", id, out.Keys)
		}
		err := w.led.Do("POST", "/v1/grants", api.GrantRequest{InstanceID: hs.Enrollment.InstanceID, KeyIDs: []string{id}}, nil)
		wantOneOf(t, err, apiErr{404, api.CodeNotFound})
		answers[id] = strings.ReplaceAll(kmstest.APIError(err).Message, id, "<id>")
	}
	if a, b := answers[key.KeyID], answers["key_doesnotexist"]; a != b {
		t.Errorf("grant for another custodian's key: %q\nfor no key: %q\nwant one answer", a, b)
	}
}
