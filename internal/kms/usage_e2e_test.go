package kms_test

// End-to-end tests of issue 12 at the KMS: usage reports count only for
// the key versions released to the reporting sidecar instance, within
// per-item and per-report bounds, and totals saturate.

import (
	"math"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// twoCustodians is lifecycleWorld with a second custodian of acme,
// ledger, and a sidecar bound to it.
type twoCustodians struct {
	*world
	led     *kmstest.Client
	ledSide *kmstest.FakeSidecar
}

func newTwoCustodians(t *testing.T, max int64) *twoCustodians {
	t.Helper()
	w := lifecycleWorld(t, max)
	led, ledCreds := w.env.App(t, "acme", "ledger", api.RoleCustodian)
	return &twoCustodians{world: w, led: led, ledSide: w.enroll(t, kcrypto.DefaultKEM(), ledCreds.DN)}
}

func report(t *testing.T, c *kmstest.Client, counts ...api.UsageCount) api.UsageAccepted {
	t.Helper()
	var acc api.UsageAccepted
	c.MustDo(t, "POST", "/v1/usage", api.UsageReport{Counts: counts}, &acc)
	return acc
}

// TestUsageReportsOnlyForReleasedKeys reproduces the finding of issue 12:
// a sidecar bound to another custodian reported usage for a retained key
// it was never given, was told the counts were accepted, and pushed the
// key past its safe limit or overflowed its counter so that every later
// read of the key failed.
func TestUsageReportsOnlyForReleasedKeys(t *testing.T) {
	w := newTwoCustodians(t, 0) // the default limit, 2^32
	ret := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	hostile := w.ledSide.Client(t, w.env)

	t.Run("another custodian's key counts nothing", func(t *testing.T) {
		theirs := report(t, hostile, api.UsageCount{KeyID: ret.KeyID, Version: 1, Encryptions: 1 << 32, Bytes: 1 << 55})
		none := report(t, hostile, api.UsageCount{KeyID: "key_doesnotexist", Version: 1, Encryptions: 1 << 32, Bytes: 1 << 55})
		if theirs != (api.UsageAccepted{}) || theirs != none {
			t.Errorf("report for another custodian's key = %+v, for no key = %+v; want both accepted 0", theirs, none)
		}
		info := keyInfo(t, w.cust, ret.KeyID)
		if v := info.Versions[0]; v.Encryptions != 0 || v.Bytes != 0 || info.RotationDue {
			t.Errorf("owner's key after the hostile report = %+v, want nothing counted", info)
		}
		if _, err := centralEncrypt(w.cust, api.KeyRef{KeyID: ret.KeyID}, []byte("x")); err != nil {
			t.Errorf("owner's encrypt after the hostile report = %v", err)
		}
	})

	t.Run("items are bounded", func(t *testing.T) {
		// Released to the owner's sidecar, so its reports count.
		got, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, ret.EKB)
		if err != nil {
			t.Fatal(err)
		}
		w.side.Unwrap(t, &got)[0].Wipe()
		side := w.side.Client(t, w.env)
		for name, counts := range map[string][]api.UsageCount{
			"more encryptions than a version may make": {{KeyID: ret.KeyID, Version: 1, Encryptions: 1<<32 + 1}},
			"bytes without an encryption":              {{KeyID: ret.KeyID, Version: 1, Bytes: 1}},
			"more bytes than the encryptions can hold": {{KeyID: ret.KeyID, Version: 1, Encryptions: 1, Bytes: 1<<36 + 1}},
			"one version twice":                        {{KeyID: ret.KeyID, Version: 1, Encryptions: 1}, {KeyID: ret.KeyID, Version: 1, Encryptions: 1}},
		} {
			err := side.Do("POST", "/v1/usage", api.UsageReport{Counts: counts}, nil)
			if e := wantErr(err, 400, api.CodeInvalidArgument); e != nil {
				t.Errorf("%s: %v", name, e)
			}
			// The same answer for a key the sidecar does not hold: the
			// bounds are checked before any key is looked up.
			for i := range counts {
				counts[i].KeyID = "key_doesnotexist"
			}
			err = hostile.Do("POST", "/v1/usage", api.UsageReport{Counts: counts}, nil)
			if e := wantErr(err, 400, api.CodeInvalidArgument); e != nil {
				t.Errorf("%s, unknown key: %v", name, e)
			}
		}
		if info := keyInfo(t, w.cust, ret.KeyID); info.Versions[0].Encryptions != 1 {
			t.Errorf("after refused reports: %d encryptions, want the owner's 1", info.Versions[0].Encryptions)
		}
	})

	t.Run("totals saturate", func(t *testing.T) {
		side := w.side.Client(t, w.env)
		for range 3 {
			if acc := report(t, side, api.UsageCount{KeyID: ret.KeyID, Version: 1, Encryptions: 1 << 31, Bytes: math.MaxInt64}); acc.Accepted != 1 {
				t.Fatalf("accepted = %d, want 1", acc.Accepted)
			}
		}
		info := keyInfo(t, w.cust, ret.KeyID)
		if v := info.Versions[0]; v.Bytes != math.MaxInt64 || v.Encryptions != 3<<31+1 {
			t.Errorf("version 1 = %+v, want %d encryptions and the largest int64 of bytes", v, int64(3<<31+1))
		}
		// The owner keeps working: the retained key rotates to version 2.
		r, err := centralEncrypt(w.cust, api.KeyRef{KeyID: ret.KeyID}, []byte("x"))
		if err != nil || r.KeyVersion != 2 {
			t.Errorf("encrypt after saturation = version %d, %v; want version 2 (rotated)", r.KeyVersion, err)
		}
	})
}
