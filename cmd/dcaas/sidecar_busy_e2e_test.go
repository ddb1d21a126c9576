package main_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/e2e"
)

// TestSidecarBusyPortKeepsToken: a sidecar whose --metrics-listen or
// --listen address is taken exits before it enrolls, so its token is not
// burnt and no instance is left registered (it used to enroll first and
// exit after); the same token then enrolls the sidecar on a free port.
func TestSidecarBusyPortKeepsToken(t *testing.T) {
	t.Parallel()
	bin := e2e.Binary(t)
	env, cust, token := startKMSWithToken(t, "payments-api")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, env.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--metrics-listen", "--listen"} {
		dir := t.TempDir()
		cmd := exec.Command(bin, "sidecar", "serve", "--kms", env.URL, "--ca", caFile, "--data-dir", dir, flag, busy.Addr().String())
		cmd.Env = append(os.Environ(), "DCAAS_ENROLL_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "address already in use") || !strings.Contains(string(out), flag) {
			t.Fatalf("sidecar serve %s on a busy port = %v:\n%s\nwant it to exit naming %s and the busy address", flag, err, out, flag)
		}
		if _, err := os.Stat(filepath.Join(dir, "enrollment.json")); err == nil {
			t.Errorf("%s busy: the sidecar wrote an enrollment before exiting", flag)
		}
	}
	var list api.Instances
	cust.MustDo(t, "GET", "/v1/instances", nil, &list)
	if len(list.Instances) != 0 {
		t.Fatalf("instances registered by sidecars that exited: %+v", list.Instances)
	}
	// The token was not spent: it enrolls a sidecar now.
	sc := e2e.StartSidecar(t, e2e.SidecarConfig{KMSURL: env.URL, CAPEM: env.CAPEM, Token: token})
	if sc.InstanceID() == "" {
		t.Fatalf("the token did not enroll a sidecar after the failed starts: %s", sc.ReadyLine())
	}
}
