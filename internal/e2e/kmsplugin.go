package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
	"github.com/dcaas/dcaas/sidecar/kmsplugin"
)

// PluginWorld is what the KMS v2 plugin's tests (sidecar/kmsplugin and
// its apiservertest module) run on: an in-process KMS (kmstest) with
// tenant acme, its custodian app "kube-apiserver", and that custodian's
// in-process sidecar (EnrolledSidecar) with one AES-256-GCM data key
// loaded.
type PluginWorld struct {
	Env     *kmstest.Env
	Cust    *kmstest.Client
	Sidecar *sidecar.Sidecar
	Key     api.DataKey
}

// StartPluginWorld starts a PluginWorld; everything in it stops when t
// ends.
func StartPluginWorld(t testing.TB) *PluginWorld {
	t.Helper()
	env := kmstest.Start(t, nil)
	env.Tenant(t, "acme")
	cust, creds := env.App(t, "acme", "kube-apiserver", api.RoleCustodian)
	pipe, _ := env.App(t, "acme", "deployer", api.RolePipeline)
	w := &PluginWorld{Env: env, Cust: cust, Sidecar: EnrolledSidecar(t, env, pipe, creds.DN)}
	w.Key = cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	LoadKeys(t, cust, w.Sidecar, w.Key.EKB)
	return w
}

// ServePlugin serves a KMS v2 plugin of sc with cfg on a fresh socket in
// t.TempDir() until t ends, when it stops serving, and returns the
// socket's path.
func ServePlugin(t testing.TB, sc kmsplugin.Sidecar, cfg kmsplugin.Config) string {
	t.Helper()
	p, err := kmsplugin.New(sc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kms.sock")
	ln, err := kmsplugin.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return path
}
