package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/dcaas/dcaas/sidecar"
)

// ServeSidecar runs a sidecar inside the test process, for tests that need
// what only the library offers (a settable clock, an enclave or a logger
// of their own): it creates it with sidecar.New(cfg), which enrolls, and
// serves it on a Unix socket at socket ("": one in t.TempDir()) until t
// ends, when it stops serving and closes the sidecar. It returns the
// sidecar and the socket's path. StartSidecar runs the real process.
func ServeSidecar(t testing.TB, cfg sidecar.Config, socket string) (*sidecar.Sidecar, string) {
	t.Helper()
	sc, err := sidecar.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("sidecar.New: %v", err)
	}
	t.Cleanup(func() { sc.Close() })
	if socket == "" {
		socket = filepath.Join(t.TempDir(), "sidecar.sock")
	}
	ln, err := sidecar.ListenUnix(socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sc.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return sc, socket
}
