package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/e2e"
)

// TestEnrollWatchRecoversKill9: `dcaas sidecar enroll --watch` as an
// operator runs it next to a sidecar process: it enrolls the waiting
// sidecar and loads its EKB store; after the sidecar is killed with
// SIGKILL and started again, it enrolls the new process, reloads the keys
// and revokes the dead instance by itself; when the sidecar is revoked, it
// exits non-zero.
func TestEnrollWatchRecoversKill9(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	k := e2e.StartKMS(t, e2e.KMSConfig{})
	ep := k.Endpoint(t)
	tn := e2e.NewTenant(t, ep, "acme")
	store := client.EKBStore{Dir: t.TempDir()}
	dks := tn.DataKeys(t, 2, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	for _, dk := range dks {
		if err := store.Put(dk.KeyID, dk.Version, dk.EKB); err != nil {
			t.Fatal(err)
		}
	}
	sc := tn.StartSidecar(t, e2e.SidecarConfig{Waiting: true, PollInterval: 200 * time.Millisecond})

	dir := t.TempDir()
	for name, b := range map[string][]byte{"ca.pem": ep.CAPEM, "cert.pem": []byte(tn.CustodianCreds.CertPEM), "key.pem": []byte(tn.CustodianCreds.KeyPEM)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	agent := exec.Command(e2e.Binary(t), "sidecar", "enroll", "--socket", sc.Socket(),
		"--kms", ep.URLs[0], "--ca", filepath.Join(dir, "ca.pem"),
		"--cert", filepath.Join(dir, "cert.pem"), "--key", filepath.Join(dir, "key.pem"),
		"--store", store.Dir, "--watch", "200ms")
	var out, errOut e2e.LogBuffer
	agent.Stdout, agent.Stderr = &out, &errOut
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	t.Cleanup(func() {
		_ = agent.Process.Kill()
		<-exited
	})
	local := sc.Client(t)
	waitFor := func(what string, ok func() error) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := ok()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v\nagent stdout:\n%s\nagent stderr:\n%s", what, err, out.String(), errOut.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	loaded := func() error {
		st, err := local.Status(ctx)
		if err != nil {
			return err
		}
		if !st.Enrolled || st.KeysLoaded != len(dks) {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	}
	waitFor("the agent enrolls and loads the sidecar", loaded)
	first, err := local.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := local.Encrypt(ctx, api.KeyRef{KeyID: dks[0].KeyID}, []byte("before the crash"), nil)
	if err != nil {
		t.Fatal(err)
	}

	sc.Kill9(t)
	sc.Restart(t)
	waitFor("the agent enrolls and reloads the restarted sidecar", func() error {
		if err := loaded(); err != nil {
			return err
		}
		if !strings.Contains(out.String(), "revoked the sidecar's previous instance "+first.InstanceID) {
			return fmt.Errorf("the dead instance %s is not revoked yet", first.InstanceID)
		}
		return nil
	})
	if pt, err := local.Decrypt(ctx, api.KeyRef{}, ct.Ciphertext, nil); err != nil || string(pt) != "before the crash" {
		t.Fatalf("decrypt after the crash = %q, %v", pt, err)
	}
	if n := strings.Count(out.String(), "enrolled the sidecar: instance="); n != 2 {
		t.Errorf("the agent enrolled %d times, want 2:\n%s", n, out.String())
	}

	// Revoked: the agent says so and exits non-zero.
	now, err := local.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Custodian.RevokeInstance(ctx, now.InstanceID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err == nil || !strings.Contains(errOut.String(), "revoked") {
			t.Errorf("the agent of a revoked sidecar exited with %v, stderr:\n%s", err, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the agent keeps running for a revoked sidecar:\n%s", errOut.String())
	}
}
