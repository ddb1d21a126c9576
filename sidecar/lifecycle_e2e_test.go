package sidecar_test

// End-to-end tests of the key lifecycle of issue 8 in sidecars: the safe
// encryption limit per key version (counted locally, reported to the KMS,
// enforced by both), per-load policy limits, retired versions evicted from
// sidecars, and translate after a rotation and across policies.

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

func translate(c requester, ct []byte, to string) (api.EncryptResponse, error) {
	var out api.EncryptResponse
	err := c("POST", "/v1/crypto/translate", api.TranslateRequest{Ciphertext: ct, ToKeyID: to}, &out)
	return out, err
}

func datakeyInfo(t testing.TB, c *kmstest.Client, id string) api.DataKeyInfo {
	t.Helper()
	var info api.DataKeyInfo
	c.MustDo(t, "GET", "/v1/datakeys/"+id, nil, &info)
	return info
}

// TestSidecarUsageLimit: a sidecar refuses to encrypt with a version past
// its safe limit (usage_limit_exceeded, telling the custodian to rotate)
// and reports its counts; the KMS then refuses to encrypt with that
// version or release it as current; after a rotation, translate moves old
// ciphertexts to the new version, and a sidecar that loads the exhausted
// version decrypts with it but never encrypts.
func TestSidecarUsageLimit(t *testing.T) {
	const limit = 5
	f := newFixture(t, func(c *sidecar.Config) { c.MaxEncryptions = limit }, func(o *kms.Options) { o.Config.MaxEncryptions = limit })
	a := f.main(t)
	dk := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	f.grantLoad(t, a, dk)
	ref := api.KeyRef{KeyID: dk.KeyID}
	pt := []byte("card 4111 1111 1111 1111")
	var cts [][]byte
	for i := 0; i < limit; i++ {
		cts = append(cts, mustEncrypt(t, a.call(t), ref, pt, nil).Ciphertext)
	}
	_, err := encrypt(a.call(t), ref, pt, nil)
	kmstest.WantError(t, err, 403, api.CodeUsageLimitExceeded)
	if _, err := f.sc.EncryptAppend(nil, dk.KeyID, pt, nil); api.CodeOf(err) != api.CodeUsageLimitExceeded {
		t.Fatalf("library EncryptAppend past the limit = %v, want %s", err, api.CodeUsageLimitExceeded)
	}
	var batch api.BatchResponse
	a.must(t, "POST", "/v1/crypto/batch", api.BatchRequest{Ops: []api.BatchItem{{Op: api.OpEncrypt, KeyID: dk.KeyID, Plaintext: pt}}}, &batch)
	if e := batch.Results[0].Error; e == nil || e.Code != api.CodeUsageLimitExceeded {
		t.Fatalf("batch encrypt past the limit = %+v", batch.Results[0])
	}
	mustDecrypt(t, a.call(t), api.KeyRef{}, cts[0], nil, pt)
	if ks := a.keys(t); len(ks) != 1 || ks[0].Encryptions != limit {
		t.Fatalf("GET /v1/keys = %+v, want %d encryptions", ks, limit)
	}

	// The sidecar reports at its next poll.
	eventually(t, "reported to the KMS", func() error {
		if info := datakeyInfo(t, f.cust, dk.KeyID); info.Versions[0].Encryptions != limit || info.Versions[0].Bytes != int64(limit*len(pt)) || !info.RotationDue {
			return fmt.Errorf("key info %+v", info)
		}
		return nil
	})
	_, err = encrypt(f.cust.Do, api.KeyRef{EKB: dk.EKB}, pt, nil)
	kmstest.WantError(t, err, 403, api.CodeUsageLimitExceeded)
	var cert api.WrappingCertificate
	a.must(t, "GET", "/v1/wrapping-certificate", nil, &cert)
	err = f.cust.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dk.EKB}, WrappingCertPEM: cert.CertPEM}, nil)
	kmstest.WantError(t, err, 403, api.CodeUsageLimitExceeded)

	// Rotate, load version 2, and translate old ciphertexts to it.
	var v2 api.DataKey
	f.cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/versions", api.NewVersionRequest{EKB: dk.EKB}, &v2)
	f.grantLoad(t, a, v2)
	for _, ct := range cts[:2] {
		tr, err := translate(a.call(t), ct, dk.KeyID)
		if err != nil || tr.KeyVersion != 2 {
			t.Fatalf("translate = v%d, %v; want version 2", tr.KeyVersion, err)
		}
		mustDecrypt(t, a.call(t), api.KeyRef{}, tr.Ciphertext, nil, pt)
	}
	eventually(t, "version 2's count reported", func() error {
		if info := datakeyInfo(t, f.cust, dk.KeyID); len(info.Versions) != 2 || info.Versions[1].Encryptions != 2 || info.RotationDue {
			return fmt.Errorf("key info %+v", info)
		}
		return nil
	})

	// Another sidecar gets version 1 (no longer current, so released) with
	// its count: it decrypts, and refuses to encrypt from the start.
	b := f.startSidecar(t, f.creds.DN, func(c *sidecar.Config) { c.MaxEncryptions = limit })
	var bcert api.WrappingCertificate
	b.must(t, "GET", "/v1/wrapping-certificate", nil, &bcert)
	var wrapped api.WrappedKeys
	f.cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dk.EKB}, WrappingCertPEM: bcert.CertPEM}, &wrapped)
	if got := batchEncryptions(t, &wrapped); got[0] != limit {
		t.Fatalf("rewrap of version 1 carries %d encryptions, want %d", got[0], limit)
	}
	b.must(t, "POST", "/v1/keys/import", &wrapped, nil)
	mustDecrypt(t, b.call(t), api.KeyRef{}, cts[4], nil, pt)
	_, err = encrypt(b.call(t), ref, pt, nil)
	kmstest.WantError(t, err, 403, api.CodeUsageLimitExceeded)

	t.Run("sealed keys count on", func(t *testing.T) {
		s := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		f.grantLoad(t, a, s)
		mustEncrypt(t, a.call(t), api.KeyRef{KeyID: s.KeyID}, pt, nil)
		mustEncrypt(t, a.call(t), api.KeyRef{KeyID: s.KeyID}, pt, nil)
		var sealed api.SealResponse
		a.must(t, "POST", "/v1/keys/seal", api.SealRequest{KeyIDs: []string{s.KeyID}}, &sealed)
		blob := api.KeyRef{SealedKey: sealed.Sealed[0].SealedKey}
		for i := 0; i < limit-2; i++ {
			mustEncrypt(t, a.call(t), blob, pt, nil)
		}
		_, err := encrypt(a.call(t), blob, pt, nil)
		kmstest.WantError(t, err, 403, api.CodeUsageLimitExceeded)
		eventually(t, "the sealed key's count reported", func() error {
			if info := datakeyInfo(t, f.cust, s.KeyID); info.Versions[0].Encryptions != limit {
				return fmt.Errorf("key info %+v", info)
			}
			return nil
		})
	})
}

// TestSidecarPolicyLimits: a key policy's limits bound each load: lease
// age, operations and bytes; past one the sidecar answers "expired" and
// the custodian reloads.
func TestSidecarPolicyLimits(t *testing.T) {
	clock := kmstest.NewClock()
	// One clock for both: the KMS dates what it seals to the sidecar, which
	// checks the date against its own clock.
	f := newFixture(t, func(c *sidecar.Config) { c.Now = clock.Now; c.LeaseTTL = 24 * time.Hour }, func(o *kms.Options) { o.Now = clock.Now })
	a := f.main(t)
	withLimits := func(l api.UsageLimits) *api.Policy {
		return &api.Policy{
			Rules:  []api.PolicyRule{{Principals: []string{f.creds.DN}, Actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt, api.ActionMAC}}},
			Limits: &l,
		}
	}

	t.Run("operations", func(t *testing.T) {
		dk := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Policy: withLimits(api.UsageLimits{MaxOperations: 3})})
		if dk.Metadata.Policy.Limits == nil || dk.Metadata.Policy.Limits.MaxOperations != 3 {
			t.Fatalf("metadata policy = %+v, want the limits bound", dk.Metadata.Policy)
		}
		f.grantLoad(t, a, dk)
		ref := api.KeyRef{KeyID: dk.KeyID}
		var ct api.EncryptResponse
		for i := 0; i < 3; i++ {
			ct = mustEncrypt(t, a.call(t), ref, []byte("x"), nil)
		}
		_, err := encrypt(a.call(t), ref, []byte("x"), nil)
		kmstest.WantError(t, err, 410, api.CodeExpired)
		mustDecrypt(t, a.call(t), api.KeyRef{}, ct.Ciphertext, nil, []byte("x")) // not limited
		// Stateless mode cannot count per load: refused.
		err = a.try(t, "POST", "/v1/keys/seal", api.SealRequest{KeyIDs: []string{dk.KeyID}}, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
		f.grantLoad(t, a, dk) // the custodian reloads
		mustEncrypt(t, a.call(t), ref, []byte("x"), nil)
	})

	t.Run("bytes", func(t *testing.T) {
		dk := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyHMACSHA256, Policy: withLimits(api.UsageLimits{MaxBytes: 100})})
		f.grantLoad(t, a, dk)
		mac := func(n int) error {
			return a.try(t, "POST", "/v1/crypto/mac", api.MACRequest{KeyRef: api.KeyRef{KeyID: dk.KeyID}, Message: make([]byte, n)}, nil)
		}
		if err := mac(60); err != nil {
			t.Fatal(err)
		}
		kmstest.WantError(t, mac(41), 410, api.CodeExpired)
		if err := mac(40); err != nil {
			t.Fatalf("MAC of the last 40 bytes = %v", err)
		}
	})

	t.Run("lease", func(t *testing.T) {
		dk := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Policy: withLimits(api.UsageLimits{MaxLeaseSeconds: 3600})})
		f.grantLoad(t, a, dk)
		for _, k := range a.keys(t) {
			if k.KeyID == dk.KeyID && (k.LeaseExpiresAt == nil || !k.LeaseExpiresAt.Equal(clock.Now().Add(time.Hour))) {
				t.Fatalf("lease = %v, want capped at an hour from the load", k.LeaseExpiresAt)
			}
		}
		ct := mustEncrypt(t, a.call(t), api.KeyRef{KeyID: dk.KeyID}, []byte("x"), nil)
		clock.Advance(time.Hour) // the polls keep renewing; the cap holds
		_, err := decrypt(a.call(t), api.KeyRef{}, ct.Ciphertext, nil)
		kmstest.WantError(t, err, 410, api.CodeExpired)
		f.grantLoad(t, a, dk)
		mustDecrypt(t, a.call(t), api.KeyRef{}, ct.Ciphertext, nil, []byte("x"))
	})

	t.Run("invalid limits", func(t *testing.T) {
		for _, l := range []api.UsageLimits{{MaxOperations: -1}, {MaxBytes: -1}, {MaxLeaseSeconds: -1}, {MaxLeaseSeconds: 11 * 365 * 24 * 3600}} {
			err := f.cust.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Policy: withLimits(l)}, nil)
			kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
		}
	})
}

// TestSidecarRetiredVersions: raising a key's min_decryption_version
// evicts the versions below it from every sidecar at its next poll; they
// no longer decrypt, and a stale release of them is refused.
func TestSidecarRetiredVersions(t *testing.T) {
	f := newFixture(t, nil)
	a := f.main(t)
	ret := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	id := ret.KeyID
	ct1 := mustEncrypt(t, f.cust.Do, api.KeyRef{KeyID: id}, []byte("under v1"), nil)
	f.cust.MustDo(t, "POST", "/v1/datakeys/"+id+"/versions", api.NewVersionRequest{EKB: ret.EKB}, nil)
	ct2 := mustEncrypt(t, f.cust.Do, api.KeyRef{KeyID: id}, []byte("under v2"), nil)
	if ct1.KeyVersion != 1 || ct2.KeyVersion != 2 {
		t.Fatalf("central encryptions under v%d and v%d, want 1 and 2", ct1.KeyVersion, ct2.KeyVersion)
	}
	var cert api.WrappingCertificate
	a.must(t, "GET", "/v1/wrapping-certificate", nil, &cert)
	var stale api.WrappedKeys // a release of v1 from before the retirement
	f.cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{ret.EKB}, WrappingCertPEM: cert.CertPEM}, &stale)

	g := mustGrant(t, f.cust, api.GrantRequest{InstanceID: a.id, KeyIDs: []string{id}})
	if _, err := a.load(t, g, nil, []string{id}); err != nil {
		t.Fatal(err)
	}
	mustDecrypt(t, a.call(t), api.KeyRef{}, ct1.Ciphertext, nil, []byte("under v1"))

	f.cust.MustDo(t, "POST", "/v1/datakeys/"+id+"/min-decryption-version", api.MinDecryptionVersionRequest{Version: 2}, nil)
	eventually(t, "version 1 evicted", func() error {
		if ks := a.keys(t); len(ks) != 1 || ks[0].Version != 2 {
			return fmt.Errorf("loaded %+v, want version 2 only", ks)
		}
		return nil
	})
	_, err := decrypt(a.call(t), api.KeyRef{}, ct1.Ciphertext, nil)
	kmstest.WantError(t, err, 403, api.CodeRevoked)
	mustDecrypt(t, a.call(t), api.KeyRef{}, ct2.Ciphertext, nil, []byte("under v2"))
	err = a.try(t, "POST", "/v1/keys/import", &stale, nil)
	kmstest.WantError(t, err, 403, api.CodeRevoked)
	// Translate cannot rescue a retired ciphertext either.
	_, err = translate(a.call(t), ct1.Ciphertext, id)
	kmstest.WantError(t, err, 403, api.CodeRevoked)
}

// TestSidecarTranslate: translate needs decrypt on the source key and
// encrypt on the target; a target the custodian may only decrypt with is
// refused with policy_denied.
func TestSidecarTranslate(t *testing.T) {
	f := newFixture(t, nil)
	a := f.main(t)
	ledger, ledgerCreds := f.env.App(t, "acme", "ledger", api.RoleCustodian)
	mine := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	theirs := dataKey(t, ledger, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Policy: &api.Policy{Rules: []api.PolicyRule{
		{Principals: []string{ledgerCreds.DN}, Actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}},
		{Principals: []string{f.creds.DN}, Actions: []api.Action{api.ActionDecrypt}},
	}}})
	f.grantLoad(t, a, mine, theirs)
	pt := []byte("iban DE89 3704 0044 0532 0130 00")
	ct := mustEncrypt(t, a.call(t), api.KeyRef{KeyID: mine.KeyID}, pt, nil)
	_, err := translate(a.call(t), ct.Ciphertext, theirs.KeyID)
	kmstest.WantError(t, err, 403, api.CodePolicyDenied)

	// ledger's ciphertext moves to payments-api's own key.
	fromLedger := mustEncrypt(t, ledger.Do, api.KeyRef{EKB: theirs.EKB}, pt, nil)
	tr, err := translate(a.call(t), fromLedger.Ciphertext, mine.KeyID)
	if err != nil || tr.KeyID != mine.KeyID || bytes.Equal(tr.Ciphertext, fromLedger.Ciphertext) {
		t.Fatalf("translate to own key = %+v, %v", tr, err)
	}
	mustDecrypt(t, a.call(t), api.KeyRef{}, tr.Ciphertext, nil, pt)
}

// batchEncryptions reads the encryption counts a rewrap answer's batch
// binds to its keys.
func batchEncryptions(t testing.TB, w *api.WrappedKeys) []int64 {
	t.Helper()
	b, err := format.ParseWrappedBatch(w.Batch)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, k := range b.Keys {
		out = append(out, k.Encryptions)
	}
	return out
}

// TestUsageReportedEveryMinute: a sidecar that encrypts between every two
// revocation polls reports its counts to the KMS at every sixth poll (once
// a minute at the default 10 s), not at every poll, since each report is
// an audited write at the KMS; the KMS's totals still reach every
// encryption. (A count near the safe limit is reported at once:
// TestSidecarUsageLimit's small limit makes every count urgent.)
func TestUsageReportedEveryMinute(t *testing.T) {
	f := newFixture(t, nil) // the default safe limit; a poll every 50 ms
	dk := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})[0]
	count := func(route string) int { return strings.Count(f.logs.String(), `"route":"`+route+`"`) }
	polls0, reports0 := count("GET /v1/revocations"), count("POST /v1/usage")
	encrypted := 0
	for count("GET /v1/revocations") < polls0+24 {
		mustEncrypt(t, f.main(t).call(t), api.KeyRef{KeyID: dk.KeyID}, []byte("pan"), nil)
		encrypted++
		seen := count("GET /v1/revocations")
		eventually(t, "the next poll", func() error {
			if count("GET /v1/revocations") == seen {
				return fmt.Errorf("no poll since %d", seen)
			}
			return nil
		})
	}
	polls, reports := count("GET /v1/revocations")-polls0, count("POST /v1/usage")-reports0
	if reports > polls/6+2 {
		t.Fatalf("%d usage reports in %d polls, encrypting between every two; want one every sixth poll", reports, polls)
	}
	eventually(t, "every encryption reported", func() error {
		if got := datakeyInfo(t, f.cust, dk.KeyID).Versions[0].Encryptions; got != int64(encrypted) {
			return fmt.Errorf("the KMS counts %d encryptions, want %d", got, encrypted)
		}
		return nil
	})
}
