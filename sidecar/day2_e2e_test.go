package sidecar_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// Day 2: a fleet that runs for a year untouched. These tests compress the
// year: certificates of seconds, clocks that jump.

// TestCertificateRenewal: a sidecar renews its identity and wrapping
// certificates at two thirds of their lifetime over mTLS with the current
// ones and keeps serving across it; its mTLS listener presents the new
// certificate at once; the expiry is a metric and a status field; a
// revoked instance's renewal stops it.
func TestCertificateRenewal(t *testing.T) {
	reg := prometheus.NewRegistry()
	const ttl = 3 * time.Second
	f := newFixture(t, func(c *sidecar.Config) { c.Reg = reg; c.HealthInterval = 100 * time.Millisecond },
		func(o *kms.Options) { o.Config.InstanceCertTTL = ttl })
	a := f.main(t)
	dks := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	ref := api.KeyRef{KeyID: dks[0].KeyID}

	var st api.Status
	f.do(t, "GET", "/v1/status", nil, &st)
	if !st.Enrolled || st.IdentityNotAfter == nil {
		t.Fatalf("status = %+v, want enrolled with identity_not_after", st)
	}
	first := *st.IdentityNotAfter
	if got := expiryMetric(t, reg, "identity"); !got.Equal(first.Truncate(time.Second)) {
		t.Errorf(`dcaas_cert_expiry_timestamp_seconds{kind="identity"} = %v, want %v`, got, first)
	}
	firstWrap := f.sc.WrappingCertificatePEM()
	// Serve the mTLS listener too: its certificate must follow renewals.
	mtls := e2e.ServeMutualTLS(t, f.sc)

	// Encrypt all along: renewal never interrupts service.
	var cts [][]byte
	eventually(t, "renewed the identity", func() error {
		cts = append(cts, mustEncrypt(t, a.call(t), ref, []byte("across renewal"), nil).Ciphertext)
		f.do(t, "GET", "/v1/status", nil, &st)
		if !st.IdentityNotAfter.After(first) {
			return fmt.Errorf("identity_not_after still %v", st.IdentityNotAfter)
		}
		return nil
	})
	// When it renewed is read from the certificates, not from this test's
	// clock (a loaded machine can run the test late): the new one was
	// issued at the renewal, so its expiry less the first one's is when,
	// into the first lifetime, the sidecar renewed (both are whole seconds
	// on the wire, hence the second of slack).
	if gap := st.IdentityNotAfter.Sub(first); gap < ttl/2-time.Second || gap > ttl+time.Second {
		t.Errorf("renewed %v into a %v identity: want at about two thirds of it, before it expired", gap, ttl)
	}
	if n := counterValue(t, reg, "dcaas_sidecar_certificate_renewals_total", "ok"); n != 1 {
		t.Errorf("%v renewals counted after the first renewal, want 1", n)
	}
	for _, ct := range cts {
		mustDecrypt(t, a.call(t), api.KeyRef{}, ct, nil, []byte("across renewal"))
	}
	if f.sc.WrappingCertificatePEM() == firstWrap {
		t.Error("the wrapping certificate was not renewed with the identity")
	}
	if got := expiryMetric(t, reg, "identity"); !got.Equal(st.IdentityNotAfter.Truncate(time.Second)) {
		t.Errorf("expiry metric after renewal = %v, want %v", got, st.IdentityNotAfter)
	}
	// The listener presents the renewed certificate.
	leaf := serverLeaf(t, f, mtls)
	if !leaf.NotAfter.Equal(st.IdentityNotAfter.Truncate(time.Second)) {
		t.Errorf("mTLS listener presents a certificate expiring %v, want the renewed %v", leaf.NotAfter, st.IdentityNotAfter)
	}
	// The old wrapping certificate still rewraps (until it expires), and so
	// does the new one: a custodian racing a renewal is not refused.
	for _, pem := range []string{firstWrap, f.sc.WrappingCertificatePEM()} {
		var w api.WrappedKeys
		f.cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dks[0].EKB}, WrappingCertPEM: pem}, &w)
		f.do(t, "POST", "/v1/keys/import", &w, nil)
	}
	// Several renewals in a row: the sidecar outlives many lifetimes.
	second := *st.IdentityNotAfter
	eventually(t, "renewed again", func() error {
		f.do(t, "GET", "/v1/status", nil, &st)
		if !st.IdentityNotAfter.After(second) {
			return fmt.Errorf("identity_not_after still %v", st.IdentityNotAfter)
		}
		return nil
	})
	if n := counterValue(t, reg, "dcaas_sidecar_certificate_renewals_total", "ok"); n < 2 {
		t.Errorf("%v renewals counted after the second renewal, want 2 (or more, on a slow machine)", n)
	}

	if e, r := gaugeValue(t, reg, "dcaas_sidecar_enrolled"), gaugeValue(t, reg, "dcaas_sidecar_revoked"); e != 1 || r != 0 {
		t.Errorf("dcaas_sidecar_enrolled = %v, dcaas_sidecar_revoked = %v while serving; want 1, 0", e, r)
	}
	// Revoked: the next renewal or poll stops the sidecar, and it no longer
	// calls itself enrolled (a readiness probe on "enrolled" fails).
	f.cust.MustDo(t, "DELETE", "/v1/instances/"+a.id, nil, nil)
	eventually(t, "stopped after revocation", func() error {
		f.do(t, "GET", "/v1/status", nil, &st)
		if !st.Revoked || st.Enrolled || st.KeysLoaded != 0 {
			return fmt.Errorf("status = %+v, want revoked, not enrolled, with no keys", st)
		}
		return nil
	})
	if e, r := gaugeValue(t, reg, "dcaas_sidecar_enrolled"), gaugeValue(t, reg, "dcaas_sidecar_revoked"); e != 0 || r != 1 {
		t.Errorf("dcaas_sidecar_enrolled = %v, dcaas_sidecar_revoked = %v once revoked; want 0, 1", e, r)
	}
	_, err := encrypt(a.call(t), ref, []byte("x"), nil)
	kmstest.WantError(t, err, 403, api.CodeRevoked)
	// Issue 15: readiness fails on a revoked instance, naming the check;
	// liveness stays 200 and says so too.
	if code, h, _ := probe(t, f.socket, "/readyz", nil); code != 503 || h.Status != api.HealthNotReady || !h.Revoked || len(h.Failed) != 1 || h.Failed[0] != "enrolled" {
		t.Errorf("/readyz of a revoked sidecar = %d %+v, want 503 not_ready, failed [enrolled], revoked", code, h)
	}
	if code, h, _ := probe(t, f.socket, "/healthz", nil); code != 200 || h.Status != api.HealthOK || h.Ready || !h.Revoked {
		t.Errorf("/healthz of a revoked sidecar = %d %+v, want 200 ok, ready false, revoked", code, h)
	}
}

// gaugeValue reads the unlabelled gauge name from reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// expiryMetric reads dcaas_cert_expiry_timestamp_seconds{kind} from reg.
func expiryMetric(t *testing.T, reg *prometheus.Registry, kind string) time.Time {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dcaas_cert_expiry_timestamp_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return time.Unix(int64(m.GetGauge().GetValue()), 0)
				}
			}
		}
	}
	t.Fatalf("no dcaas_cert_expiry_timestamp_seconds{kind=%q}", kind)
	return time.Time{}
}

// counterValue reads a counter with an outcome label from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// serverLeaf connects to a sidecar's mTLS listener as its custodian and
// returns the certificate it presents.
func serverLeaf(t *testing.T, f *fixture, addr string) *x509.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair([]byte(f.creds.CertPEM), []byte(f.creds.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(f.env.CAPEM)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: f.sc.ServerName(), Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatalf("dial the mTLS listener: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestRotationReachesSidecars: within one poll interval of a new version
// — made by the owner, by the rotation period, or because the usage
// neared the safe limit — the sidecar that holds the key encrypts with it
// and still decrypts the older versions. The custodian does nothing.
func TestRotationReachesSidecars(t *testing.T) {
	clock := kmstest.NewClock()
	const limit = 8
	f := newFixture(t, func(c *sidecar.Config) { c.Now = clock.Now; c.MaxEncryptions = limit },
		func(o *kms.Options) {
			o.Now = clock.Now
			o.Config.MaxEncryptions = limit
			o.Config.RotationCheckInterval = 50 * time.Millisecond
		})
	a := f.main(t)
	other := f.startSidecar(t, f.creds.DN, func(c *sidecar.Config) { c.Now = clock.Now; c.MaxEncryptions = limit })

	waitVersion := func(s *side, keyID string, want int) {
		t.Helper()
		eventually(t, fmt.Sprintf("sidecar %s holds version %d of %s", s.id, want, keyID), func() error {
			for _, k := range s.keys(t) {
				if k.KeyID == keyID && k.Version == want {
					return nil
				}
			}
			return fmt.Errorf("loaded: %+v", s.keys(t))
		})
	}
	currentVersion := func(s *side, keyID string) int {
		t.Helper()
		ct := mustEncrypt(t, s.call(t), api.KeyRef{KeyID: keyID}, []byte("x"), nil).Ciphertext
		_, v, err := format.PeekCiphertextKey(ct)
		if err != nil {
			t.Fatal(err)
		}
		return int(v)
	}

	t.Run("by the owner", func(t *testing.T) {
		dk := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})[0]
		f.grantLoad(t, other, dk)
		ct1 := mustEncrypt(t, a.call(t), api.KeyRef{KeyID: dk.KeyID}, []byte("under v1"), nil).Ciphertext
		var v2 api.DataKey
		f.cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/versions", api.NewVersionRequest{EKB: dk.EKB}, &v2)
		for _, s := range []*side{a, other} {
			waitVersion(s, dk.KeyID, 2)
			if v := currentVersion(s, dk.KeyID); v != 2 {
				t.Errorf("sidecar %s encrypts with version %d after the rotation, want 2", s.id, v)
			}
			mustDecrypt(t, s.call(t), api.KeyRef{}, ct1, nil, []byte("under v1"))
		}
	})
	t.Run("by period", func(t *testing.T) {
		dk := f.load(t, api.CreateDataKeyRequest{Type: api.KeyHMACSHA256, RotationPeriodSeconds: 3600})[0]
		tag := mustMAC(t, a, dk.KeyID, "m")
		clock.Advance(time.Hour + time.Minute) // the KMS's rotator notices
		waitVersion(a, dk.KeyID, 2)
		var info api.DataKeyInfo
		f.cust.MustDo(t, "GET", "/v1/datakeys/"+dk.KeyID, nil, &info)
		if info.CurrentVersion != 2 {
			t.Errorf("the KMS's current version = %d, want 2", info.CurrentVersion)
		}
		// A MAC with version 1 still verifies with its version.
		var ok api.ValidResponse
		a.must(t, "POST", "/v1/crypto/mac/verify", api.MACVerifyRequest{KeyRef: api.KeyRef{KeyID: dk.KeyID}, Message: []byte("m"), MAC: tag, KeyVersion: 1}, &ok)
		if !ok.Valid {
			t.Error("a version-1 MAC no longer verifies after the rotation")
		}
	})
	t.Run("by usage", func(t *testing.T) {
		dk := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})[0]
		var cts [][]byte
		for range limit - limit/4 { // three quarters of the safe limit: rotation due
			cts = append(cts, mustEncrypt(t, a.call(t), api.KeyRef{KeyID: dk.KeyID}, []byte("p"), nil).Ciphertext)
		}
		// The sidecar reports its count at its next poll; the rotator
		// rotates; the sidecar fetches version 2 at the poll after.
		waitVersion(a, dk.KeyID, 2)
		if v := currentVersion(a, dk.KeyID); v != 2 {
			t.Errorf("encrypts with version %d after the usage rotation, want 2", v)
		}
		for _, ct := range cts {
			mustDecrypt(t, a.call(t), api.KeyRef{}, ct, nil, []byte("p"))
		}
	})
	t.Run("retired versions are not delivered", func(t *testing.T) {
		dk := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})[0]
		var v2 api.DataKey
		f.cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/versions", api.NewVersionRequest{EKB: dk.EKB}, &v2)
		waitVersion(a, dk.KeyID, 2)
		f.cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/min-decryption-version", api.MinDecryptionVersionRequest{Version: 2}, nil)
		eventually(t, "version 1 evicted", func() error {
			for _, k := range a.keys(t) {
				if k.KeyID == dk.KeyID && k.Version == 1 {
					return fmt.Errorf("version 1 still loaded")
				}
			}
			return nil
		})
	})
}

func mustMAC(t *testing.T, s *side, keyID, msg string) []byte {
	t.Helper()
	var out api.MACResponse
	s.must(t, "POST", "/v1/crypto/mac", api.MACRequest{KeyRef: api.KeyRef{KeyID: keyID}, Message: []byte(msg)}, &out)
	return out.MAC
}

// TestRevocationSticks: a key the sidecar saw revoked cannot come back
// through a saved rewrap answer, a grant, or a sealed blob; a rewrap
// answer past its expiry is refused; seal keeps every version.
func TestRevocationSticks(t *testing.T) {
	clock := kmstest.NewClock()
	f := newFixture(t, func(c *sidecar.Config) { c.Now = clock.Now }, func(o *kms.Options) { o.Now = clock.Now })
	a := f.main(t)
	var cert api.WrappingCertificate
	f.do(t, "GET", "/v1/wrapping-certificate", nil, &cert)
	rewrap := func(dks ...api.DataKey) *api.WrappedKeys {
		var ekbs [][]byte
		for _, dk := range dks {
			ekbs = append(ekbs, dk.EKB)
		}
		var w api.WrappedKeys
		f.cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: cert.CertPEM}, &w)
		return &w
	}

	// revokeRefused deletes dk at the KMS and waits until the sidecar
	// refuses ref (dk by id, or a sealed blob of it): encrypting with ref
	// answers revoked.
	revokeRefused := func(t *testing.T, dk api.DataKey, ref api.KeyRef) {
		t.Helper()
		f.cust.MustDo(t, "DELETE", "/v1/datakeys/"+dk.KeyID, nil, nil)
		eventually(t, "revoked", func() error {
			_, err := encrypt(a.call(t), ref, []byte("x"), nil)
			if api.CodeOf(err) != api.CodeRevoked {
				return fmt.Errorf("encrypt = %v, want revoked", err)
			}
			return nil
		})
	}

	t.Run("saved rewrap answer after a revocation", func(t *testing.T) {
		dk := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		saved := rewrap(dk)
		a.must(t, "POST", "/v1/keys/import", saved, nil)
		revokeRefused(t, dk, api.KeyRef{KeyID: dk.KeyID})
		kmstest.WantError(t, a.try(t, "POST", "/v1/keys/import", saved, nil), 403, api.CodeRevoked)
		// A fresh rewrap made before the disable, from another answer,
		// fares no better.
		if _, err := encrypt(a.call(t), api.KeyRef{KeyID: dk.KeyID}, []byte("x"), nil); api.CodeOf(err) != api.CodeRevoked {
			t.Errorf("the revoked key works again: %v", err)
		}
	})
	// Issue 15: a key evicted because the KMS revoked it answered 404
	// "not loaded" to a management call instead of revoked.
	t.Run("managing an evicted revoked key", func(t *testing.T) {
		dk := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		a.must(t, "POST", "/v1/keys/import", rewrap(dk), nil)
		revokeRefused(t, dk, api.KeyRef{KeyID: dk.KeyID})
		kmstest.WantError(t, a.try(t, "DELETE", "/v1/keys/"+dk.KeyID, nil, nil), 403, api.CodeRevoked)
		kmstest.WantError(t, a.try(t, "POST", "/v1/keys/seal", api.SealRequest{KeyIDs: []string{dk.KeyID}}, nil), 403, api.CodeRevoked)
		// A key that was never here is still 404.
		kmstest.WantError(t, a.try(t, "DELETE", "/v1/keys/key_nothere", nil, nil), 404, api.CodeNotFound)
	})
	t.Run("sealed blob of a revoked key", func(t *testing.T) {
		dk := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		a.must(t, "POST", "/v1/keys/import", rewrap(dk), nil)
		var sealed api.SealResponse
		a.must(t, "POST", "/v1/keys/seal", api.SealRequest{KeyIDs: []string{dk.KeyID}}, &sealed)
		revokeRefused(t, dk, api.KeyRef{SealedKey: sealed.Sealed[0].SealedKey})
	})
	t.Run("expired answer", func(t *testing.T) {
		dk := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		w := rewrap(dk)
		if w.ExpiresAt == nil || w.ExpiresAt.Sub(clock.Now()) > 11*time.Minute {
			t.Fatalf("expires_at = %v, want about 10 minutes from now", w.ExpiresAt)
		}
		clock.Advance(10*time.Minute + time.Second)
		kmstest.WantError(t, a.try(t, "POST", "/v1/keys/import", w, nil), 410, api.CodeExpired)
		a.must(t, "POST", "/v1/keys/import", rewrap(dk), nil) // a fresh one loads
	})
	t.Run("evicted, then the same answer again", func(t *testing.T) {
		dk := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		w := rewrap(dk)
		a.must(t, "POST", "/v1/keys/import", w, nil)
		a.must(t, "POST", "/v1/keys/import", w, nil) // a retry: harmless
		a.must(t, "DELETE", "/v1/keys/"+dk.KeyID, nil, nil)
		kmstest.WantError(t, a.try(t, "POST", "/v1/keys/import", w, nil), 409, api.CodeAlreadyUsed)
	})
	t.Run("seal keeps every version", func(t *testing.T) {
		dk := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		var v2 api.DataKey
		f.cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/versions", api.NewVersionRequest{EKB: dk.EKB}, &v2)
		a.must(t, "POST", "/v1/keys/import", rewrap(dk), nil)
		ct1 := mustEncrypt(t, a.call(t), api.KeyRef{KeyID: dk.KeyID}, []byte("v1"), nil).Ciphertext
		a.must(t, "POST", "/v1/keys/import", rewrap(v2), nil)
		var sealed api.SealResponse
		a.must(t, "POST", "/v1/keys/seal", api.SealRequest{KeyIDs: []string{dk.KeyID}}, &sealed)
		if len(sealed.Sealed) != 2 || sealed.Sealed[0].Version != 1 || sealed.Sealed[1].Version != 2 {
			t.Fatalf("seal = %+v, want versions 1 and 2", sealed.Sealed)
		}
		mustDecrypt(t, a.call(t), api.KeyRef{SealedKey: sealed.Sealed[0].SealedKey}, ct1, nil, []byte("v1"))
		ct2 := mustEncrypt(t, a.call(t), api.KeyRef{SealedKey: sealed.Sealed[1].SealedKey}, []byte("v2"), nil).Ciphertext
		if _, v, _ := format.PeekCiphertextKey(ct2); v != 2 {
			t.Errorf("the newest blob encrypts with version %d, want 2", v)
		}
	})
}

// TestZeroTouchRestart: a sidecar started without a token waits, serving
// only its status; its custodian's SDK enrolls it and reloads its keys
// from the EKB store, skipping what the KMS no longer releases.
func TestZeroTouchRestart(t *testing.T) {
	f := newFixture(t, nil)
	kc, err := client.NewKMS([]string{f.env.URL}, f.env.CAPEM, []byte(f.creds.CertPEM), []byte(f.creds.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	store := client.EKBStore{Dir: t.TempDir()}
	keep, gone := f.storedKeys(t, &store)

	// A sidecar that restarted: no token.
	dir := t.TempDir()
	first, sc := f.startSidecarWaiting(t, dir)
	st, err := sc.Status(t.Context())
	if err != nil || st.Enrolled {
		t.Fatalf("status of a sidecar started without a token = %+v, %v; want enrolled false", st, err)
	}
	if _, err := sc.Encrypt(t.Context(), api.KeyRef{KeyID: keep.KeyID}, []byte("x"), nil); !strings.Contains(fmt.Sprint(err), string(api.CodeNotEnrolled)) {
		t.Errorf("encrypt before enrollment = %v, want not_enrolled", err)
	}
	enrolled, err := client.EnsureEnrolled(t.Context(), kc, sc)
	if err != nil || !enrolled {
		t.Fatalf("EnsureEnrolled = %v, %v; want enrolled now", enrolled, err)
	}
	if again, err := client.EnsureEnrolled(t.Context(), kc, sc); err != nil || again {
		t.Fatalf("EnsureEnrolled again = %v, %v; want nothing to do", again, err)
	}
	ids, skipped, err := client.LoadStore(t.Context(), kc, sc, store)
	if err != nil {
		t.Fatalf("LoadStore = %v", err)
	}
	if len(ids) != 1 || ids[0] != keep.KeyID || len(skipped) != 1 || skipped[0].KeyID != gone.KeyID {
		t.Fatalf("LoadStore = %v, skipped %+v; want %s loaded and %s skipped", ids, skipped, keep.KeyID, gone.KeyID)
	}
	keys, err := sc.Keys(t.Context())
	if err != nil || len(keys) != 2 {
		t.Fatalf("loaded versions = %+v, %v; want both versions of %s", keys, err, keep.KeyID)
	}
	ct, err := sc.Encrypt(t.Context(), api.KeyRef{KeyID: keep.KeyID}, []byte("after restart"), nil)
	if err != nil || ct.KeyVersion != 2 {
		t.Fatalf("encrypt after the restart = %+v, %v; want version 2", ct, err)
	}

	// It restarts again on the same data dir: the new instance replaces
	// the old one, which its custodian revokes (its keys died with it).
	old := first.InstanceID()
	first.Close()
	_, sc2 := f.startSidecarWaiting(t, dir)
	if st, _ := sc2.Status(t.Context()); st == nil || st.PreviousInstanceID != old {
		t.Fatalf("status after the restart = %+v, want previous_instance_id %s", st, old)
	}
	if enrolled, err := client.EnsureEnrolled(t.Context(), kc, sc2); err != nil || !enrolled {
		t.Fatalf("EnsureEnrolled after the second restart = %v, %v", enrolled, err)
	}
	list, err := kc.ListInstances(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		if in.InstanceID == old && !in.Revoked {
			t.Errorf("the previous instance %s is still live after the restart", old)
		}
	}
}

// startSidecarWaiting starts a sidecar without a token on dataDir (""
// for a new one), serving its own socket, and returns it and an SDK
// client of that socket (closed when t ends).
func (f *fixture) startSidecarWaiting(t *testing.T, dataDir string) (*sidecar.Sidecar, *client.Sidecar) {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	sc, socket := e2e.ServeSidecar(t, sidecar.Config{
		KMSURL: f.env.URL, CAPEM: f.env.CAPEM, DataDir: dataDir,
		Logger: quietLogger(), HealthInterval: 50 * time.Millisecond,
	}, "")
	c, err := client.NewSidecarUnix(socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return sc, c
}

// storedKeys makes what the EKB store of a restarted sidecar holds in
// the zero-touch tests: keep, an AES-256-GCM key, in two versions, and
// gone, an Ed25519 key that is then disabled; all three EKBs are put in
// store.
func (f *fixture) storedKeys(t *testing.T, store *client.EKBStore) (keep, gone api.DataKey) {
	t.Helper()
	var keep2 api.DataKey
	f.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &keep)
	f.cust.MustDo(t, "POST", "/v1/datakeys/"+keep.KeyID+"/versions", api.NewVersionRequest{EKB: keep.EKB}, &keep2)
	f.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyEd25519}, &gone)
	for _, dk := range []api.DataKey{keep, keep2, gone} {
		if err := store.Put(dk.KeyID, dk.Version, dk.EKB); err != nil {
			t.Fatal(err)
		}
	}
	f.cust.MustDo(t, "DELETE", "/v1/datakeys/"+gone.KeyID, nil, nil)
	return keep, gone
}

// TestKMSReplicasFailover: a sidecar given several KMS URLs enrolls,
// polls, loads and renews through whichever answers.
func TestKMSReplicasFailover(t *testing.T) {
	dead := "https://127.0.0.1:1" // nothing listens there
	f := newFixture(t, func(c *sidecar.Config) {
		c.KMSURLs = []string{dead, c.KMSURL}
		c.KMSURL = ""
		c.HealthInterval = 100 * time.Millisecond
	}, func(o *kms.Options) { o.Config.InstanceCertTTL = 3 * time.Second })
	a := f.main(t)
	dk := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	f.grantLoad(t, a, dk)
	mustEncrypt(t, a.call(t), api.KeyRef{KeyID: dk.KeyID}, []byte("x"), nil)
	var st api.Status
	f.do(t, "GET", "/v1/status", nil, &st)
	first := *st.IdentityNotAfter
	eventually(t, "renewed through the live replica", func() error {
		f.do(t, "GET", "/v1/status", nil, &st)
		if !st.IdentityNotAfter.After(first) || !st.KMSReachable {
			return fmt.Errorf("status = %+v", st)
		}
		return nil
	})
	f.cust.MustDo(t, "DELETE", "/v1/datakeys/"+dk.KeyID, nil, nil)
	eventually(t, "revocation seen through the live replica", func() error {
		if _, err := encrypt(a.call(t), api.KeyRef{KeyID: dk.KeyID}, []byte("x"), nil); api.CodeOf(err) != api.CodeRevoked {
			return fmt.Errorf("encrypt = %v", err)
		}
		return nil
	})
}
