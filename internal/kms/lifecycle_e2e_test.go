package kms_test

// End-to-end tests of the key lifecycle of issue 8 at the KMS: usage
// limits on the central path and in release, usage reports from sidecars,
// min_decryption_version, rotation periods (warnings for EKB keys,
// automatic rotation of retained keys) and translate after a rotation.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// lifecycleWorld is newWorld with a safe limit of max encryptions per
// version.
func lifecycleWorld(t *testing.T, max int64) *world {
	t.Helper()
	clock := kmstest.NewClock()
	env := kmstest.Start(t, func(o *kms.Options) {
		o.Now = clock.Now
		o.Config.MaxEncryptions = max
	})
	env.Tenant(t, "acme")
	cust, creds := env.App(t, "acme", "payments-api", api.RoleCustodian)
	pipe, _ := env.App(t, "acme", "deployer", api.RolePipeline)
	w := &world{env: env, clock: clock, cust: cust, custCreds: creds, pipe: pipe}
	w.side = w.enroll(t, kcrypto.DefaultKEM(), creds.DN)
	return w
}

func centralEncrypt(c *kmstest.Client, ref api.KeyRef, pt []byte) (api.EncryptResponse, error) {
	var out api.EncryptResponse
	err := c.Do("POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: ref, Plaintext: pt}, &out)
	return out, err
}

func centralDecrypt(c *kmstest.Client, ref api.KeyRef, ct []byte) ([]byte, error) {
	var out api.DecryptResponse
	err := c.Do("POST", "/v1/crypto/decrypt", api.DecryptRequest{KeyRef: ref, Ciphertext: ct}, &out)
	return out.Plaintext, err
}

func keyInfo(t *testing.T, c *kmstest.Client, id string) api.DataKeyInfo {
	t.Helper()
	var info api.DataKeyInfo
	c.MustDo(t, "GET", "/v1/datakeys/"+id, nil, &info)
	return info
}

// TestCentralUsageLimit: the central path counts every encryption per
// version, warns from three quarters of the limit, refuses past it, and
// refuses to release the current version past it; a new version starts
// again and the old one still decrypts and is released with its count.
func TestCentralUsageLimit(t *testing.T) {
	w := lifecycleWorld(t, 8)
	dk := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	ref := api.KeyRef{EKB: dk.EKB}
	var cts [][]byte
	for i := 1; i <= 8; i++ {
		r, err := centralEncrypt(w.cust, ref, []byte("0123456789"))
		if err != nil {
			t.Fatalf("encryption %d: %v", i, err)
		}
		// The warning reflects the count before the request: due at 6.
		if wantWarn := i > 6; (r.Warning != "") != wantWarn || (wantWarn && !strings.Contains(r.Warning, "Rotation of key "+dk.KeyID+" is due")) {
			t.Errorf("encryption %d: warning %q, want one: %v", i, r.Warning, wantWarn)
		}
		cts = append(cts, r.Ciphertext)
	}
	_, err := centralEncrypt(w.cust, ref, []byte("one too many"))
	kmstest.WantError(t, err, 403, api.CodeUsageLimitExceeded)
	if pt, err := centralDecrypt(w.cust, ref, cts[0]); err != nil || string(pt) != "0123456789" {
		t.Fatalf("decrypt past the limit = %q, %v; want the plaintext", pt, err)
	}
	info := keyInfo(t, w.cust, dk.KeyID)
	if info.EncryptionLimit != 8 || !info.RotationDue || len(info.Versions) != 1 || info.Versions[0].Encryptions != 8 || info.Versions[0].Bytes != 80 {
		t.Fatalf("key info = %+v, want 8 of 8 encryptions, 80 bytes, rotation due", info)
	}
	_, err = w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, dk.EKB)
	kmstest.WantError(t, err, 403, api.CodeUsageLimitExceeded)

	// Rotate: version 2 encrypts; in one batch, counting stops at the
	// limit within the request.
	var v2 api.DataKey
	w.cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/versions", api.NewVersionRequest{EKB: dk.EKB}, &v2)
	ops := make([]api.BatchItem, 10)
	for i := range ops {
		ops[i] = api.BatchItem{Op: api.OpEncrypt, EKB: v2.EKB, Plaintext: []byte("x")}
	}
	var batch api.BatchResponse
	w.cust.MustDo(t, "POST", "/v1/crypto/batch", api.BatchRequest{Ops: ops}, &batch)
	for i, r := range batch.Results {
		refused := r.Error != nil && r.Error.Code == api.CodeUsageLimitExceeded
		if refused != (i >= 8) {
			t.Errorf("batch item %d = %+v; want refused: %v", i, r, i >= 8)
		}
	}
	info = keyInfo(t, w.cust, dk.KeyID)
	if info.CurrentVersion != 2 || info.Versions[1].Encryptions != 8 || info.Versions[0].Encryptions != 8 {
		t.Fatalf("key info after the batch = %+v", info)
	}
	// Version 1 is no longer current: it is released, with its count.
	got, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, dk.EKB)
	if err != nil || len(got.Keys) != 1 {
		t.Fatalf("rewrap of version 1 = %+v, %v; want one key", got, err)
	}
	w.side.Unwrap(t, &got)[0].Wipe() // fills in what the batch binds
	if got.Keys[0].Encryptions != 8 {
		t.Fatalf("rewrap of version 1 carries %d encryptions, want it released with 8", got.Keys[0].Encryptions)
	}
	_, err = centralEncrypt(w.cust, ref, []byte("old version"))
	kmstest.WantError(t, err, 403, api.CodeUsageLimitExceeded)

	t.Run("signing keys are not counted", func(t *testing.T) {
		ed := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyEd25519})
		for i := 0; i < 10; i++ {
			w.cust.MustDo(t, "POST", "/v1/crypto/sign", api.SignRequest{KeyRef: api.KeyRef{EKB: ed.EKB}, Message: []byte("m")}, nil)
		}
		if info := keyInfo(t, w.cust, ed.KeyID); info.EncryptionLimit != 0 || info.RotationDue || info.Versions[0].Encryptions != 0 {
			t.Errorf("ed25519 key info = %+v, want no limit and no count", info)
		}
	})
}

// TestUsageReports: sidecars add their counts at POST /v1/usage; the KMS
// skips keys it does not register, did not release to the sidecar or that
// belong to another tenant, and then refuses what the totals forbid.
func TestUsageReports(t *testing.T) {
	w := lifecycleWorld(t, 10)
	dk := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	released, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, dk.EKB)
	if err != nil {
		t.Fatal(err)
	}
	w.side.Unwrap(t, &released)[0].Wipe()
	side := w.side.Client(t, w.env)
	w.env.Tenant(t, "globex")
	gx, _ := w.env.App(t, "globex", "payments-api", api.RoleCustodian)
	other := w.dataKey(t, gx, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})

	var acc api.UsageAccepted
	side.MustDo(t, "POST", "/v1/usage", api.UsageReport{Counts: []api.UsageCount{
		{KeyID: dk.KeyID, Version: 1, Encryptions: 6, Bytes: 600},
		{KeyID: dk.KeyID, Version: 2, Encryptions: 1},           // no such version
		{KeyID: "key_seed_derived", Version: 1, Encryptions: 1}, // not registered
		{KeyID: other.KeyID, Version: 1, Encryptions: 5},        // another tenant's
	}}, &acc)
	if acc.Accepted != 1 {
		t.Fatalf("accepted = %d, want 1", acc.Accepted)
	}
	side.MustDo(t, "POST", "/v1/usage", api.UsageReport{Counts: []api.UsageCount{{KeyID: dk.KeyID, Version: 1, Encryptions: 3, Bytes: 3}}}, &acc)
	info := keyInfo(t, w.cust, dk.KeyID)
	if v := info.Versions[0]; v.Encryptions != 9 || v.Bytes != 603 || !info.RotationDue {
		t.Fatalf("key info = %+v, want 9 encryptions, 603 bytes, rotation due", info)
	}
	if info := keyInfo(t, gx, other.KeyID); info.Versions[0].Encryptions != 0 {
		t.Fatalf("globex key counted %d encryptions from an acme sidecar", info.Versions[0].Encryptions)
	}
	// The central path adds the last one and refuses the next.
	if _, err := centralEncrypt(w.cust, api.KeyRef{EKB: dk.EKB}, []byte("10th")); err != nil {
		t.Fatal(err)
	}
	_, err = centralEncrypt(w.cust, api.KeyRef{EKB: dk.EKB}, []byte("11th"))
	kmstest.WantError(t, err, 403, api.CodeUsageLimitExceeded)

	t.Run("refusals", func(t *testing.T) {
		kmstest.WantError(t, w.cust.Do("POST", "/v1/usage", api.UsageReport{}, nil), 403, api.CodeForbidden)
		for name, c := range map[string]api.UsageCount{
			"no key id":      {Version: 1, Encryptions: 1},
			"version 0":      {KeyID: dk.KeyID, Encryptions: 1},
			"negative":       {KeyID: dk.KeyID, Version: 1, Encryptions: -1},
			"negative bytes": {KeyID: dk.KeyID, Version: 1, Bytes: -1},
			"absurdly many":  {KeyID: dk.KeyID, Version: 1, Encryptions: 1 << 50},
		} {
			err := side.Do("POST", "/v1/usage", api.UsageReport{Counts: []api.UsageCount{c}}, nil)
			if e := wantErr(err, 400, api.CodeInvalidArgument); e != nil {
				t.Errorf("%s: %v", name, e)
			}
		}
		kmstest.WantError(t, side.Do("POST", "/v1/usage", json.RawMessage(`{"counts":[],"extra":1}`), nil), 400, api.CodeUnknownField)
	})
}

// wantErr is kmstest.WantError returning instead of failing.
func wantErr(err error, status int, code api.Code) error {
	e := kmstest.APIError(err)
	if e == nil || e.Status != status || e.Code != code {
		return fmt.Errorf("error = %v, want %d %s", err, status, code)
	}
	return nil
}

// TestMinDecryptionVersion: the owner retires versions below a minimum; the
// KMS no longer decrypts with them nor releases them, and the revocation
// feed tells sidecars.
func TestMinDecryptionVersion(t *testing.T) {
	w := lifecycleWorld(t, 0)
	side := w.side.Client(t, w.env)
	var feed api.RevocationFeed
	side.MustDo(t, "GET", "/v1/revocations", nil, &feed)
	cursor := feed.Cursor

	ret := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	id := ret.KeyID
	var cts [][]byte // cts[v-1] is under version v
	var ekbs [][]byte
	for v := 1; v <= 3; v++ {
		r, err := centralEncrypt(w.cust, api.KeyRef{KeyID: id}, fmt.Appendf(nil, "under v%d", v))
		if err != nil || r.KeyVersion != v {
			t.Fatalf("encrypt = v%d, %v; want v%d", r.KeyVersion, err, v)
		}
		cts = append(cts, r.Ciphertext)
		if v < 3 {
			var next api.DataKey
			prev := ret.EKB
			if v > 1 {
				prev = ekbs[len(ekbs)-1]
			}
			w.cust.MustDo(t, "POST", "/v1/datakeys/"+id+"/versions", api.NewVersionRequest{EKB: prev}, &next)
			ekbs = append(ekbs, next.EKB)
		}
	}
	// A stale rewrap of version 1, made before the retirement.
	old, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, ret.EKB)
	if err != nil {
		t.Fatal(err)
	}
	w.side.Unwrap(t, &old)[0].Wipe()

	var info api.DataKeyInfo
	w.cust.MustDo(t, "POST", "/v1/datakeys/"+id+"/min-decryption-version", api.MinDecryptionVersionRequest{Version: 2}, &info)
	if info.MinDecryptionVersion != 2 || !info.Versions[0].Retired || info.Versions[1].Retired || info.CurrentVersion != 3 {
		t.Fatalf("after retiring v1: %+v", info)
	}
	_, err = centralDecrypt(w.cust, api.KeyRef{}, cts[0])
	kmstest.WantError(t, err, 403, api.CodeRevoked)
	for v := 2; v <= 3; v++ {
		if pt, err := centralDecrypt(w.cust, api.KeyRef{}, cts[v-1]); err != nil || string(pt) != fmt.Sprintf("under v%d", v) {
			t.Fatalf("decrypt under v%d = %q, %v", v, pt, err)
		}
	}
	_, err = w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, ret.EKB)
	kmstest.WantError(t, err, 403, api.CodeRevoked)
	_, err = centralEncrypt(w.cust, api.KeyRef{EKB: ret.EKB}, []byte("x"))
	kmstest.WantError(t, err, 403, api.CodeRevoked)
	// A load by key id releases the live versions only.
	g := mustGrantKMS(t, w, api.GrantRequest{InstanceID: w.side.Enrollment.InstanceID, KeyIDs: []string{id}})
	pub, err := kcrypto.MarshalKEMPublicKey(w.side.KEMKey.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	var loaded api.WrappedKeys
	side.MustDo(t, "POST", "/v1/keys/load", api.LoadRequest{Grant: g, KeyIDs: []string{id}, Recipient: pub}, &loaded)
	if len(loaded.Keys) != 2 || loaded.Keys[0].Version != 2 || loaded.Keys[1].Version != 3 {
		t.Fatalf("load by key id released %+v, want versions 2 and 3", loaded.Keys)
	}

	// The feed carries the new minimum.
	side.MustDo(t, "GET", "/v1/revocations?since="+cursor, nil, &feed)
	if len(feed.KeyVersions) != 1 || feed.KeyVersions[0] != (api.KeyVersionFloor{KeyID: id, MinDecryptionVersion: 2}) || len(feed.Keys) != 0 {
		t.Fatalf("feed = %+v, want key_versions [%s:2]", feed, id)
	}

	t.Run("refusals", func(t *testing.T) {
		set := func(c *kmstest.Client, v int) error {
			return c.Do("POST", "/v1/datakeys/"+id+"/min-decryption-version", api.MinDecryptionVersionRequest{Version: v}, nil)
		}
		kmstest.WantError(t, set(w.cust, 1), 409, api.CodeConflict)
		kmstest.WantError(t, set(w.cust, 0), 400, api.CodeInvalidArgument)
		kmstest.WantError(t, set(w.cust, 4), 400, api.CodeInvalidArgument)
		rep, _ := w.env.App(t, "acme", "reporting", api.RoleCustodian)
		kmstest.WantError(t, set(rep, 3), 404, api.CodeNotFound)
		kmstest.WantError(t, rep.Do("GET", "/v1/datakeys/"+id, nil, nil), 404, api.CodeNotFound)
		kmstest.WantError(t, set(w.pipe, 3), 403, api.CodeForbidden)
		// The same minimum again is accepted and adds no event.
		if err := set(w.cust, 2); err != nil {
			t.Fatal(err)
		}
		var again api.RevocationFeed
		side.MustDo(t, "GET", "/v1/revocations?since="+feed.Cursor, nil, &again)
		if len(again.KeyVersions) != 0 {
			t.Errorf("setting the same minimum again added %+v to the feed", again.KeyVersions)
		}
		// An admin may retire too.
		w.env.Admin.MustDo(t, "POST", "/v1/datakeys/"+id+"/min-decryption-version", api.MinDecryptionVersionRequest{Version: 3}, &info)
		if info.MinDecryptionVersion != 3 {
			t.Errorf("admin retirement: %+v", info)
		}
	})
}

func mustGrantKMS(t *testing.T, w *world, req api.GrantRequest) string {
	t.Helper()
	var g api.Grant
	w.cust.MustDo(t, "POST", "/v1/grants", req, &g)
	return g.Grant
}

// TestRotationPeriod: EKB keys report that rotation is due and warn in
// central and rewrap answers; retained keys are rotated by the KMS when
// they are next used, once even under concurrent use.
func TestRotationPeriod(t *testing.T) {
	w := lifecycleWorld(t, 0)
	const hour = int64(3600)
	for _, bad := range []int64{-1, 1, hour - 1, 101 * 365 * 24 * hour} {
		err := w.cust.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM, RotationPeriodSeconds: bad}, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
	}
	dk := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, RotationPeriodSeconds: hour})
	if dk.Metadata.RotationPeriodSeconds != hour {
		t.Fatalf("metadata = %+v, want the rotation period bound", dk.Metadata)
	}
	ret := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, RotationPeriodSeconds: hour, Retain: true})
	ctRet, err := centralEncrypt(w.cust, api.KeyRef{KeyID: ret.KeyID}, []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	if info := keyInfo(t, w.cust, dk.KeyID); info.RotationDue || info.RotationPeriodSeconds != hour {
		t.Fatalf("fresh key info = %+v", info)
	}

	w.clock.Advance(time.Hour)
	t.Run("EKB key: due, warned", func(t *testing.T) {
		if info := keyInfo(t, w.cust, dk.KeyID); !info.RotationDue {
			t.Fatalf("key info an hour later = %+v, want rotation due", info)
		}
		r, err := centralEncrypt(w.cust, api.KeyRef{EKB: dk.EKB}, []byte("x"))
		if err != nil || !strings.Contains(r.Warning, "rotation period") {
			t.Fatalf("central encrypt = %+v, %v; want a rotation warning", r, err)
		}
		got, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, dk.EKB)
		if err != nil || len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0], dk.KeyID) {
			t.Fatalf("rewrap = %+v, %v; want one warning naming the key", got.Warnings, err)
		}
		var v2 api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/versions", api.NewVersionRequest{EKB: dk.EKB}, &v2)
		if v2.Metadata.RotationPeriodSeconds != hour {
			t.Errorf("version 2 metadata = %+v, want the period kept", v2.Metadata)
		}
		if info := keyInfo(t, w.cust, dk.KeyID); info.RotationDue || info.CurrentVersion != 2 {
			t.Fatalf("after rotating: %+v", info)
		}
		if r, err := centralEncrypt(w.cust, api.KeyRef{EKB: v2.EKB}, []byte("x")); err != nil || r.Warning != "" {
			t.Fatalf("encrypt with version 2 = %+v, %v; want no warning", r, err)
		}
	})

	t.Run("retained key: rotated on use, once", func(t *testing.T) {
		var wg sync.WaitGroup
		versions := make([]int, 8)
		errs := make([]error, 8)
		for i := range versions {
			wg.Go(func() {
				r, err := centralEncrypt(w.cust, api.KeyRef{KeyID: ret.KeyID}, []byte("after"))
				versions[i], errs[i] = r.KeyVersion, err
			})
		}
		wg.Wait()
		for i := range versions {
			if errs[i] != nil || versions[i] != 2 {
				t.Errorf("concurrent encrypt %d = v%d, %v; want v2", i, versions[i], errs[i])
			}
		}
		info := keyInfo(t, w.cust, ret.KeyID)
		if info.CurrentVersion != 2 || info.RotationDue {
			t.Fatalf("retained key info = %+v, want version 2, not due", info)
		}
		// Translating moves the old ciphertext to the new version.
		var tr api.EncryptResponse
		w.cust.MustDo(t, "POST", "/v1/crypto/translate", api.TranslateRequest{Ciphertext: ctRet.Ciphertext, ToKeyID: ret.KeyID}, &tr)
		if tr.KeyVersion != 2 || tr.KeyID != ret.KeyID {
			t.Fatalf("translate = %s v%d, want %s v2", tr.KeyID, tr.KeyVersion, ret.KeyID)
		}
		if pt, err := centralDecrypt(w.cust, api.KeyRef{}, tr.Ciphertext); err != nil || string(pt) != "before" {
			t.Fatalf("decrypt translated = %q, %v", pt, err)
		}
		// The automatic rotation is audited.
		var page api.AuditPage
		w.env.Admin.MustDo(t, "GET", "/v1/audit?after=0", nil, &page)
		n := 0
		for _, r := range page.Records {
			if r.Action == "datakey.rotate_automatic" && r.KeyID == ret.KeyID {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d automatic rotation audit records, want 1", n)
		}
	})

	t.Run("retained key: rotated on load", func(t *testing.T) {
		w.clock.Advance(time.Hour)
		g := mustGrantKMS(t, w, api.GrantRequest{InstanceID: w.side.Enrollment.InstanceID, KeyIDs: []string{ret.KeyID}})
		pub, err := kcrypto.MarshalKEMPublicKey(w.side.KEMKey.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		var loaded api.WrappedKeys
		w.side.Client(t, w.env).MustDo(t, "POST", "/v1/keys/load", api.LoadRequest{Grant: g, KeyIDs: []string{ret.KeyID}, Recipient: pub}, &loaded)
		if len(loaded.Keys) != 3 || loaded.Keys[2].Version != 3 || len(loaded.Warnings) != 0 {
			t.Fatalf("load = %d keys (last v%d), warnings %q; want versions 1 to 3, no warning", len(loaded.Keys), loaded.Keys[len(loaded.Keys)-1].Version, loaded.Warnings)
		}
	})
}

// TestRetainedRotationByUsage: a retained key is rotated when its current
// version has made three quarters of its safe encryptions, before any is
// refused.
func TestRetainedRotationByUsage(t *testing.T) {
	w := lifecycleWorld(t, 4) // due at 3
	ret := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	var got []int
	for i := 0; i < 7; i++ {
		r, err := centralEncrypt(w.cust, api.KeyRef{KeyID: ret.KeyID}, []byte("x"))
		if err != nil {
			t.Fatalf("encryption %d: %v", i, err)
		}
		got = append(got, r.KeyVersion)
	}
	if want := []int{1, 1, 1, 2, 2, 2, 3}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("versions used = %v, want %v", got, want)
	}
}

// TestCentralTranslateRefusals: translate needs decrypt on the source and
// encrypt on the target.
func TestCentralTranslateRefusals(t *testing.T) {
	w := lifecycleWorld(t, 0)
	mine := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	ledger, ledgerCreds := w.env.App(t, "acme", "ledger", api.RoleCustodian)
	// ledger's key lets payments-api decrypt, not encrypt.
	theirs := w.dataKey(t, ledger, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true, Policy: &api.Policy{Rules: []api.PolicyRule{
		{Principals: []string{ledgerCreds.DN}, Actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}},
		{Principals: []string{w.custCreds.DN}, Actions: []api.Action{api.ActionDecrypt}},
	}}})
	ct, err := centralEncrypt(w.cust, api.KeyRef{KeyID: mine.KeyID}, []byte("pan"))
	if err != nil {
		t.Fatal(err)
	}
	err = w.cust.Do("POST", "/v1/crypto/translate", api.TranslateRequest{Ciphertext: ct.Ciphertext, ToKeyID: theirs.KeyID}, nil)
	kmstest.WantError(t, err, 403, api.CodePolicyDenied)
	// The other way round is allowed: decrypt theirs, encrypt under mine.
	ct2, err := centralEncrypt(ledger, api.KeyRef{KeyID: theirs.KeyID}, []byte("ledger data"))
	if err != nil {
		t.Fatal(err)
	}
	var tr api.EncryptResponse
	w.cust.MustDo(t, "POST", "/v1/crypto/translate", api.TranslateRequest{Ciphertext: ct2.Ciphertext, ToKeyID: mine.KeyID}, &tr)
	if pt, err := centralDecrypt(w.cust, api.KeyRef{}, tr.Ciphertext); err != nil || !bytes.Equal(pt, []byte("ledger data")) {
		t.Fatalf("decrypt translated = %q, %v", pt, err)
	}
}

// TestCentralRemembersOpeningOnly: the central path remembers the EKBs it
// opened, never their verdict: an EKB used a moment ago is refused at once
// once its key is disabled, expired or denied to the caller by policy, and
// another tenant's custodian bringing the same bytes is refused.
func TestCentralRemembersOpeningOnly(t *testing.T) {
	w := lifecycleWorld(t, 0)
	live := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	exp := time.Hour
	at := w.clock.Now().Add(exp)
	short := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, ExpiresAt: &at})
	for _, dk := range []api.DataKey{live, short} {
		for range 2 { // the second one comes from the cache
			if _, err := centralEncrypt(w.cust, api.KeyRef{EKB: dk.EKB}, []byte("x")); err != nil {
				t.Fatalf("encrypt with %s = %v", dk.KeyID, err)
			}
		}
	}
	w.cust.MustDo(t, "DELETE", "/v1/datakeys/"+live.KeyID, nil, nil)
	if _, err := centralEncrypt(w.cust, api.KeyRef{EKB: live.EKB}, []byte("x")); api.CodeOf(err) != api.CodeRevoked {
		t.Errorf("encrypt with a disabled key opened a moment ago = %v, want revoked", err)
	}
	w.clock.Advance(exp + time.Second)
	if _, err := centralEncrypt(w.cust, api.KeyRef{EKB: short.EKB}, []byte("x")); api.CodeOf(err) != api.CodeExpired {
		t.Errorf("encrypt with an expired key opened a moment ago = %v, want expired", err)
	}
	w.env.Tenant(t, "other")
	stranger, _ := w.env.App(t, "other", "payments-api", api.RoleCustodian)
	if _, err := centralEncrypt(stranger, api.KeyRef{EKB: short.EKB}, []byte("x")); api.CodeOf(err) != api.CodeWrongTenant {
		t.Errorf("another tenant's custodian with the same EKB = %v, want wrong_tenant", err)
	}
}
