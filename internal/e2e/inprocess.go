package e2e

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// InProcessConfig is the configuration of an in-process sidecar of the KMS
// env that enrolls with token: a data dir in t.TempDir(), no logs, and a
// revocation poll every 50 ms (so tests see the KMS's changes quickly).
// Tests adjust the rest.
func InProcessConfig(t testing.TB, env *kmstest.Env, token string) sidecar.Config {
	return sidecar.Config{
		KMSURL:         env.URL,
		CAPEM:          env.CAPEM,
		DataDir:        t.TempDir(),
		EnrollToken:    sidecar.Secret([]byte(token)),
		Logger:         slog.New(slog.DiscardHandler),
		HealthInterval: 50 * time.Millisecond,
	}
}

// ServeSidecar runs a sidecar inside the test process, for tests that need
// what only the library offers (a settable clock, an enclave or a logger
// of their own): it creates it with sidecar.New(cfg), which enrolls, and
// serves it on a Unix socket at socket ("": one in t.TempDir()) until t
// ends, when it stops serving and closes the sidecar. It returns the
// sidecar and the socket's path. StartSidecar runs the real process.
func ServeSidecar(t testing.TB, cfg sidecar.Config, socket string) (*sidecar.Sidecar, string) {
	t.Helper()
	sc := NewSidecar(t, cfg)
	if socket == "" {
		socket = filepath.Join(t.TempDir(), "sidecar.sock")
	}
	ln, err := sidecar.ListenUnix(socket)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, sc, ln)
	return sc, socket
}

// NewSidecar creates an in-process sidecar with sidecar.New(cfg), which
// enrolls, and closes it when t ends; it does not serve it (ServeSidecar
// does).
func NewSidecar(t testing.TB, cfg sidecar.Config) *sidecar.Sidecar {
	t.Helper()
	sc, err := sidecar.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("sidecar.New: %v", err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

// EnrolledSidecar is NewSidecar of a sidecar of env enrolled for the
// custodian dn with a token pipe mints: a data dir in t.TempDir(), no
// logs, and every other setting its default (unlike InProcessConfig's,
// its revocation poll is the default 10 s).
func EnrolledSidecar(t testing.TB, env *kmstest.Env, pipe *kmstest.Client, dn string) *sidecar.Sidecar {
	t.Helper()
	return NewSidecar(t, sidecar.Config{
		KMSURL:      env.URL,
		CAPEM:       env.CAPEM,
		DataDir:     t.TempDir(),
		EnrollToken: sidecar.Secret([]byte(pipe.EnrollmentToken(t, dn))),
		Logger:      slog.New(slog.DiscardHandler),
	})
}

// LoadKeys rewraps ekbs as cust to the in-process sidecar sc and imports
// them into it (the primary flow).
func LoadKeys(t testing.TB, cust *kmstest.Client, sc *sidecar.Sidecar, ekbs ...[]byte) {
	t.Helper()
	var wrapped api.WrappedKeys
	cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: sc.WrappingCertificatePEM()}, &wrapped)
	if _, err := sc.ImportKeys(t.Context(), &wrapped); err != nil {
		t.Fatalf("ImportKeys: %v", err)
	}
}

// ServeMutualTLS serves the in-process sidecar sc on its mutual-TLS
// listener (sidecar.TLSListener) on a loopback port until t ends, when it
// stops serving, and returns the listener's host:port.
func ServeMutualTLS(t testing.TB, sc *sidecar.Sidecar) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := sc.TLSListener(t.Context(), ln)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, sc, tln)
	return ln.Addr().String()
}

// serve runs sc.Serve on ln until t ends; the cleanup waits for it to
// return.
func serve(t testing.TB, sc *sidecar.Sidecar, ln net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sc.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
}
