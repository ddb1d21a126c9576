package sidecar_test

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/sidecar"
)

// TestEnrollmentAgent: the agent of `dcaas sidecar enroll --watch` keeps
// a sidecar enrolled and loaded with its EKB store across everything that
// can go wrong between two rounds: the KMS out of reach while enrolling
// and in the middle of a reload (retried the next round), a key the KMS
// refuses (skipped once, not hammered), an evicted key or an EKB added to
// the store (loaded the next round), and a restart after which someone
// else enrolled the sidecar (the agent, with no memory, still revokes the
// dead previous instance and loads the keys).
func TestEnrollmentAgent(t *testing.T) {
	f := newFixture(t, nil)
	proxy := e2e.NewCutProxy(t, func() (net.Conn, error) { return net.Dial("tcp", f.env.URL[len("https://"):]) })
	kc, err := client.NewKMS([]string{"https://" + proxy.Addr()}, f.env.CAPEM, []byte(f.creds.CertPEM), []byte(f.creds.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Close() })
	store := &client.EKBStore{Dir: t.TempDir()}
	put := func(dk api.DataKey) {
		t.Helper()
		if err := store.Put(dk.KeyID, dk.Version, dk.EKB); err != nil {
			t.Fatal(err)
		}
	}
	keep, gone := f.storedKeys(t, store)

	dir := t.TempDir()
	first, sc := f.startSidecarWaiting(t, dir)
	agent := &client.Agent{KMS: kc, Sidecar: sc, Store: store}
	held := func(s *client.Sidecar) []string {
		t.Helper()
		keys, err := s.Keys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range keys {
			out = append(out, fmt.Sprintf("%s/%d", k.KeyID, k.Version))
		}
		return out
	}
	both := []string{keep.KeyID + "/1", keep.KeyID + "/2"}

	// The KMS out of reach: the round fails and enrolls nothing.
	proxy.Cut()
	if r, err := agent.Reconcile(t.Context()); err == nil || r.Enrolled != "" {
		t.Fatalf("round with the KMS out of reach = %+v, %v; want an error", r, err)
	}
	// Back: enrolled and loaded, the disabled key skipped.
	proxy.Restore()
	r, err := agent.Reconcile(t.Context())
	if err != nil || r.Enrolled == "" || r.Enrolled != first.InstanceID() || len(r.Skipped) != 1 || r.Skipped[0].KeyID != gone.KeyID {
		t.Fatalf("round after the KMS came back = %+v, %v; want enrolled, %s skipped", r, err, gone.KeyID)
	}
	if got := held(sc); !slices.Equal(got, both) {
		t.Fatalf("sidecar holds %v, want %v", got, both)
	}
	// Nothing to do: the refused key is not asked for again.
	if r, err := agent.Reconcile(t.Context()); err != nil || r.Enrolled != "" || len(r.Loaded)+len(r.Skipped)+len(r.Revoked) != 0 {
		t.Fatalf("idle round = %+v, %v; want nothing done", r, err)
	}

	// An evicted key comes back; an EKB added to the store is loaded.
	if err := sc.Evict(t.Context(), keep.KeyID); err != nil {
		t.Fatal(err)
	}
	var added api.DataKey
	f.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyHMACSHA256}, &added)
	put(added)
	if r, err := agent.Reconcile(t.Context()); err != nil || !slices.Equal(r.Loaded, []string{keep.KeyID, added.KeyID}) && !slices.Equal(r.Loaded, []string{added.KeyID, keep.KeyID}) {
		t.Fatalf("round after an eviction and an added EKB = %+v, %v; want both loaded", r, err)
	}

	// A reload cut by the KMS going away is retried the next round.
	if err := sc.Evict(t.Context(), keep.KeyID); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	if r, err := agent.Reconcile(t.Context()); err == nil || len(r.Loaded) != 0 {
		t.Fatalf("reload with the KMS out of reach = %+v, %v; want an error", r, err)
	}
	proxy.Restore()
	if r, err := agent.Reconcile(t.Context()); err != nil || !slices.Equal(r.Loaded, []string{keep.KeyID}) {
		t.Fatalf("round after the cut reload = %+v, %v; want %s loaded", r, err, keep.KeyID)
	}
	if got := held(sc); !slices.Contains(got, keep.KeyID+"/2") {
		t.Fatalf("sidecar holds %v after the retried reload", got)
	}

	// The sidecar restarts on its data dir and is enrolled by someone else
	// (an agent that died right after): a new agent, with no memory,
	// revokes the dead instance and loads the keys.
	old := first.InstanceID()
	first.Close()
	second, sc2 := f.startSidecarWaiting(t, dir)
	tok, err := kc.CreateEnrollmentToken(t.Context(), api.CreateTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc2.Enroll(t.Context(), tok.Token); err != nil {
		t.Fatal(err)
	}
	fresh := &client.Agent{KMS: kc, Sidecar: sc2, Store: store}
	r, err = fresh.Reconcile(t.Context())
	if err != nil || r.Enrolled != "" || !slices.Equal(r.Revoked, []string{old}) || len(r.Loaded) != 2 {
		t.Fatalf("new agent's round = %+v, %v; want %s revoked and two keys loaded", r, err, old)
	}
	var list api.Instances
	f.cust.MustDo(t, "GET", "/v1/instances", nil, &list)
	for _, in := range list.Instances {
		if in.InstanceID == old && !in.Revoked {
			t.Errorf("previous instance %s is not revoked", old)
		}
	}
	// Revoked once: the next rounds leave it alone.
	if r, err := fresh.Reconcile(t.Context()); err != nil || len(r.Revoked) != 0 {
		t.Fatalf("round after the revocation = %+v, %v", r, err)
	}
	_ = second
	// A revoked sidecar stops the agent.
	f.cust.MustDo(t, "DELETE", "/v1/instances/"+second.InstanceID(), nil, nil)
	eventually(t, "the agent stops for a revoked sidecar", func() error {
		if _, err := fresh.Reconcile(t.Context()); !errors.Is(err, client.ErrRevoked) {
			return errors.New("not yet revoked")
		}
		return nil
	})
}

// TestRetireOnClose: a software-enclave sidecar that stops for good
// revokes its own instance (a deleted pod leaves nothing registered);
// without the option its instance stays live (a TPM sidecar comes back).
func TestRetireOnClose(t *testing.T) {
	f := newFixture(t, nil)
	for _, retire := range []bool{true, false} {
		var tok api.EnrollmentToken
		f.cust.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{}, &tok)
		sc, err := sidecar.New(t.Context(), sidecar.Config{
			KMSURL: f.env.URL, CAPEM: f.env.CAPEM, DataDir: t.TempDir(), EnrollToken: sidecar.Secret([]byte(tok.Token)),
			Logger: quietLogger(), RetireOnClose: retire,
		})
		if err != nil {
			t.Fatal(err)
		}
		id := sc.InstanceID()
		if err := sc.Close(); err != nil {
			t.Fatal(err)
		}
		var list api.Instances
		f.cust.MustDo(t, "GET", "/v1/instances", nil, &list)
		found := false
		for _, in := range list.Instances {
			if in.InstanceID == id {
				found = true
				if in.Revoked != retire {
					t.Errorf("RetireOnClose %t: instance %s revoked = %t after Close", retire, id, in.Revoked)
				}
			}
		}
		if !found {
			t.Errorf("instance %s not listed", id)
		}
	}
}
