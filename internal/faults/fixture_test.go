package faults_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/devenv"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// waitLimit bounds every wait for a state change (a status flip, a
// listener coming back).
const waitLimit = 15 * time.Second

// world is a KMS with tenant acme, custodian payments-api and pipeline
// deployer.
type world struct {
	env       *kmstest.Env
	cust      *kmstest.Client
	creds     api.AppCredentials
	pipe      *kmstest.Client
	pipeCreds api.AppCredentials
}

// newWorld starts the KMS (mutate adjusts its options) and sets up the
// tenant and its apps through the API.
func newWorld(t testing.TB, mutate func(*kms.Options)) *world {
	t.Helper()
	env := kmstest.Start(t, mutate)
	env.Tenant(t, "acme")
	w := &world{env: env}
	w.cust, w.creds = env.App(t, "acme", "payments-api", api.RoleCustodian)
	w.pipe, w.pipeCreds = env.App(t, "acme", "deployer", api.RolePipeline)
	return w
}

// token mints an enrollment token for the custodian, as the pipeline.
func (w *world) token(t testing.TB) string {
	t.Helper()
	return w.pipe.EnrollmentToken(t, w.creds.DN)
}

// side is an in-process sidecar serving on a Unix socket.
type side struct {
	sc     *sidecar.Sidecar
	socket string
	local  *client.Sidecar
}

// startSidecar enrolls a sidecar for the custodian (mutate adjusts its
// Config) and serves it on a Unix socket until the test ends.
func (w *world) startSidecar(t testing.TB, mutate func(*sidecar.Config)) *side {
	t.Helper()
	cfg := e2e.InProcessConfig(t, w.env, w.token(t))
	if mutate != nil {
		mutate(&cfg)
	}
	s := &side{}
	s.sc, s.socket = e2e.ServeSidecar(t, cfg, "")
	// Every request has a deadline, so a hung sidecar fails the test
	// instead of stalling it.
	s.local = devenv.UnixClient(s.socket)
	t.Cleanup(func() { s.local.Close() })
	return s
}

func (s *side) do(t testing.TB, method, path string, in, out any) {
	t.Helper()
	if err := s.local.Do(t.Context(), method, path, in, out); err != nil {
		t.Fatalf("sidecar %s %s: %v", method, path, err)
	}
}

func (s *side) status(t testing.TB) api.Status {
	t.Helper()
	var st api.Status
	s.do(t, "GET", "/v1/status", nil, &st)
	return st
}

// waitStatus asks the sidecar for its status until ok accepts it, for at
// most waitLimit.
func (s *side) waitStatus(t testing.TB, what string, ok func(api.Status) bool) api.Status {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		st := s.status(t)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar status never showed %s within %v; last %+v", what, waitLimit, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// createKeys creates n data keys of type typ as the custodian, from
// workers goroutines, and returns them in no particular order.
func (w *world) createKeys(t testing.TB, n, workers int, typ api.KeyType) []api.DataKey {
	t.Helper()
	out := make([]api.DataKey, n)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := g; i < n; i += workers {
				if err := w.cust.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: typ}, &out[i]); err != nil {
					errs <- fmt.Errorf("creating data key %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return out
}

// rewrapBatch is how many EKBs one rewrap (and one import) carries.
const rewrapBatch = 1000

// load releases the keys to s by the primary flow — the custodian asks
// the KMS to rewrap the EKBs to the sidecar's wrapping certificate and
// imports the result over the socket — rewrapBatch keys at a time.
func (s *side) load(t testing.TB, w *world, dks []api.DataKey) {
	t.Helper()
	var cert api.WrappingCertificate
	s.do(t, "GET", "/v1/wrapping-certificate", nil, &cert)
	for start := 0; start < len(dks); start += rewrapBatch {
		batch := dks[start:min(start+rewrapBatch, len(dks))]
		ekbs := make([][]byte, len(batch))
		for i, dk := range batch {
			ekbs[i] = dk.EKB
		}
		var wrapped api.WrappedKeys
		w.cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: cert.CertPEM}, &wrapped)
		var loaded api.Loaded
		s.do(t, "POST", "/v1/keys/import", &wrapped, &loaded)
		if len(loaded.Loaded) != len(batch) {
			t.Fatalf("imported %d keys of a batch of %d", len(loaded.Loaded), len(batch))
		}
	}
}
