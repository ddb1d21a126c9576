package e2e_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/store/pgtest"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// waitGone polls the sidecar's key list until keyID is no longer in it
// and returns how long that took.
func waitGone(t *testing.T, sc *client.Sidecar, keyID string, limit time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	for {
		keys, err := sc.Keys(t.Context())
		if err != nil {
			t.Fatalf("sidecar Keys: %v", err)
		}
		found := false
		for _, k := range keys {
			found = found || k.KeyID == keyID
		}
		if !found {
			return time.Since(begin)
		}
		if time.Since(begin) > limit {
			t.Fatalf("key %s still loaded in the sidecar %v after it was disabled", keyID, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKMSAndSidecarProcesses runs the fixture's whole single-KMS story: a
// KMS on SQLite, a tenant, a sidecar process, a key loaded by each flow,
// the KMS killed with SIGKILL (the sidecar keeps serving), restarted on
// the same address, and a key disabled there evicted from the sidecar.
func TestKMSAndSidecarProcesses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	k := e2e.StartKMS(t, e2e.KMSConfig{})
	if got := k.Field("store"); got != "sqlite" {
		t.Errorf("ready line %q: store = %q, want sqlite", k.ReadyLine(), got)
	}
	tn := e2e.NewTenant(t, k.Endpoint(t), "acme")
	if tn.Info.Name != "acme" || tn.Info.MasterKeyVersion != 1 {
		t.Fatalf("tenant = %+v, want acme at master key version 1", tn.Info)
	}
	const poll = 100 * time.Millisecond
	sc := tn.StartSidecar(t, e2e.SidecarConfig{PollInterval: poll})
	local := sc.Client(t)
	st, err := local.Status(ctx)
	if err != nil || st.InstanceID != sc.InstanceID() || st.CustodianDN != tn.CustodianCreds.DN {
		t.Fatalf("sidecar Status = %+v, %v; want instance %s bound to %s", st, err, sc.InstanceID(), tn.CustodianCreds.DN)
	}

	dks := tn.DataKeys(t, 2, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	if dks[0].KeyID == dks[1].KeyID {
		t.Fatalf("DataKeys made one key twice: %s", dks[0].KeyID)
	}
	if ids, err := client.LoadByRewrap(ctx, tn.Custodian, local, [][]byte{dks[0].EKB}); err != nil || len(ids) != 1 || ids[0] != dks[0].KeyID {
		t.Fatalf("LoadByRewrap = %v, %v; want [%s]", ids, err, dks[0].KeyID)
	}
	if ids, err := client.LoadByGrant(ctx, tn.Custodian, local, [][]byte{dks[1].EKB}, nil); err != nil || len(ids) != 1 || ids[0] != dks[1].KeyID {
		t.Fatalf("LoadByGrant = %v, %v; want [%s]", ids, err, dks[1].KeyID)
	}
	ct, err := local.Encrypt(ctx, api.KeyRef{KeyID: dks[1].KeyID}, []byte("card 4111"), nil)
	if err != nil {
		t.Fatal(err)
	}

	url := k.URL()
	k.Kill9(t)
	if pt, err := local.Decrypt(ctx, api.KeyRef{}, ct.Ciphertext, nil); err != nil || !bytes.Equal(pt, []byte("card 4111")) {
		t.Fatalf("Decrypt with the KMS killed = %q, %v", pt, err)
	}
	k.Restart(t)
	if k.URL() != url {
		t.Errorf("restarted KMS at %s, want the old address %s", k.URL(), url)
	}
	// The custodian's client, made before the kill, reaches the new
	// process: same address, same CA, same credentials.
	if err := tn.Custodian.DisableKey(ctx, dks[0].KeyID); err != nil {
		t.Fatalf("DisableKey after the restart: %v", err)
	}
	took := waitGone(t, local, dks[0].KeyID, 20*poll+10*time.Second)
	t.Logf("disabled key evicted after %v (poll interval %v)", took, poll)
	_, err = local.Encrypt(ctx, api.KeyRef{KeyID: dks[0].KeyID}, []byte("x"), nil)
	if !errors.Is(err, client.ErrNotFound) && !errors.Is(err, client.ErrRevoked) {
		t.Errorf("Encrypt with the evicted key = %v, want not_found or revoked", err)
	}
	sc.Stop(t)
	k.Stop(t)
}

// TestSidecarWaitsAndEnrolls runs the fixture's enrollment story with
// the binary: a sidecar started without a token serves but waits; `dcaas
// sidecar enroll` as the custodian enrolls it; killed with SIGKILL and
// restarted on its data dir it waits again, naming the instance it held,
// and enrolling it again revokes that instance; a clean stop retires the
// new one.
func TestSidecarWaitsAndEnrolls(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	k := e2e.StartKMS(t, e2e.KMSConfig{})
	tn := e2e.NewTenant(t, k.Endpoint(t), "acme")
	sc := tn.StartSidecar(t, e2e.SidecarConfig{Waiting: true})
	if sc.InstanceID() != "" || !strings.Contains(sc.ReadyLine(), "enrolled=false") {
		t.Fatalf("a sidecar started without a token: instance %q, ready line %q", sc.InstanceID(), sc.ReadyLine())
	}
	local := sc.Client(t, client.WithRetry(1, 0, 0))
	if st, err := local.Status(ctx); err != nil || st.Enrolled || st.InstanceID != "" {
		t.Fatalf("Status before enrollment = %+v, %v; want not enrolled", st, err)
	}
	if _, err := local.Encrypt(ctx, api.KeyRef{KeyID: "key_x"}, []byte("x"), nil); !errors.Is(err, client.ErrNotEnrolled) {
		t.Fatalf("Encrypt before enrollment = %v, want not_enrolled", err)
	}

	out := tn.EnrollSidecar(t, sc)
	first := sc.InstanceID()
	if !strings.Contains(out, "instance="+first) {
		t.Errorf("dcaas sidecar enroll printed %q, want the instance %s", out, first)
	}
	st, err := local.Status(ctx)
	if err != nil || !st.Enrolled || st.InstanceID != first || st.CustodianDN != tn.CustodianCreds.DN {
		t.Fatalf("Status after enrollment = %+v, %v; want instance %s bound to %s", st, err, first, tn.CustodianCreds.DN)
	}
	dk := tn.DataKeys(t, 1, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})[0]
	if ids, err := client.LoadByRewrap(ctx, tn.Custodian, local, [][]byte{dk.EKB}); err != nil || len(ids) != 1 {
		t.Fatalf("LoadByRewrap after enrollment = %v, %v", ids, err)
	}

	sc.Kill9(t)
	sc.Restart(t)
	if st, err := local.Status(ctx); err != nil || st.Enrolled || st.PreviousInstanceID != first {
		t.Fatalf("Status after a restart = %+v, %v; want waiting, previous instance %s", st, err, first)
	}
	out = tn.EnrollSidecar(t, sc)
	second := sc.InstanceID()
	if second == first || second == "" {
		t.Fatalf("instance after re-enrolling = %q, want a new one (was %s)", second, first)
	}
	if !strings.Contains(out, "revoked the sidecar's previous instance "+first) {
		t.Errorf("dcaas sidecar enroll after the restart printed %q, want the revocation of %s", out, first)
	}
	revoked := func(id string) bool {
		t.Helper()
		list, err := tn.Custodian.ListInstances(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range list {
			if in.InstanceID == id {
				return in.Revoked
			}
		}
		t.Fatalf("instance %s is not listed: %+v", id, list)
		return false
	}
	if !revoked(first) {
		t.Errorf("instance %s of the killed sidecar is not revoked after re-enrollment", first)
	}
	if revoked(second) {
		t.Fatalf("the serving instance %s is revoked", second)
	}
	// A clean stop retires a software-enclave instance (--retire-on-exit
	// is on by default): its identity dies with the process.
	sc.Stop(t)
	if !revoked(second) {
		t.Errorf("instance %s is still live after its sidecar stopped", second)
	}
	k.Stop(t)
}

// TestLaunchKMSReportsEarlyExit: a KMS that cannot start is an error with
// its stderr, not a hang or a failed test.
func TestLaunchKMSReportsEarlyExit(t *testing.T) {
	t.Parallel()
	k, err := e2e.LaunchKMS(t, e2e.KMSConfig{Flags: []string{"--log-level", "loud"}})
	if err == nil || k != nil {
		t.Fatalf("LaunchKMS with a bad flag = %v, %v; want an error", k, err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte("--log-level")) {
		t.Errorf("LaunchKMS error %q does not carry the child's complaint about --log-level", err)
	}
}

// TestHAProxyInFrontOfReplicas: two replicas on one PostgreSQL database
// behind HAProxy. Calls through HAProxy keep working while one replica is
// killed and after it came back; HAProxy's health checks see both.
func TestHAProxyInFrontOfReplicas(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs two KMS processes on PostgreSQL and HAProxy; skipped in -short mode")
	}
	ctx := t.Context()
	reps := e2e.StartReplicas(t, 2, pgtest.DSN(t))
	a, b := reps[0], reps[1]
	if !bytes.Equal(a.ReadFile(t, "ca.pem"), b.ReadFile(t, "ca.pem")) {
		t.Fatal("the replicas have different CAs")
	}
	lb := e2e.StartHAProxy(t, a, b)
	tn := e2e.NewTenant(t, lb.Endpoint(), "acme")
	check := func(when string) {
		t.Helper()
		for i := range 4 { // round robin: both replicas, twice
			if _, err := tn.Custodian.CreateDataKey(ctx, api.CreateDataKeyRequest{Type: api.KeyAES256GCM}); err != nil {
				t.Fatalf("%s: CreateDataKey %d through HAProxy: %v", when, i, err)
			}
		}
	}
	check("both up")
	b.Kill9(t)
	killed := time.Now()
	down := lb.WaitBackend(t, b, false)
	t.Logf("HAProxy marked B down %v after SIGKILL", down.Sub(killed).Round(time.Millisecond))
	check("B down")
	b.Restart(t)
	restarted := time.Now()
	up := lb.WaitBackend(t, b, true)
	t.Logf("HAProxy marked B up %v after it was ready again", up.Sub(restarted).Round(time.Millisecond))
	check("B back")
}
