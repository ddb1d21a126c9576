package kms_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/seal/file"
	"github.com/dcaas/dcaas/internal/secret"
)

// breakableSealer is the real file sealer whose Open fails with
// seal.ErrOpen while broken is set: what a wrong root key or an HSM that
// lost the key looks like from the KMS.
type breakableSealer struct {
	seal.Sealer
	broken atomic.Bool
}

func (b *breakableSealer) Open(ctx context.Context, sealed, aad []byte) (*secret.Bytes, error) {
	if b.broken.Load() {
		return nil, seal.ErrOpen
	}
	return b.Sealer.Open(ctx, sealed, aad)
}

// TestSealFailureIsLoggedAndNotReady (issue 15): a 503 caused by a seal
// that cannot open a tenant's master key wrote no log line. Now the
// request logs an error naming the tenant (no secret), /readyz answers
// 503 naming the seal check (/healthz stays 200 and says ready false), each
// change of the seal check is logged once, and its recovery shows at the
// next probe. Every request also has its one request line.
func TestSealFailureIsLoggedAndNotReady(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kms")
	fs, err := file.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	sealer := &breakableSealer{Sealer: fs}
	logs := &e2e.LogBuffer{}
	env := kmstest.Start(t, func(o *kms.Options) {
		o.DataDir = dir
		o.Sealer = sealer
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		o.Config.SealCheckInterval = time.Hour // a success is reused: the failure must force a re-check
	})
	env.Tenant(t, "acme")
	cust, creds := env.App(t, "acme", "payments-api", api.RoleCustodian)
	anon := env.Anonymous()
	if code, h := e2e.HealthAt(t, anon.HTTP, anon.Base+"/readyz"); code != 200 || h.Status != api.HealthOK || len(h.Checks) != 2 || h.Seal != "file" {
		t.Fatalf("/readyz = %d %+v", code, h)
	}
	// A restart empties the KMS's cache of unsealed master keys.
	env.Restart()
	sealer.broken.Store(true)
	err = cust.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)
	kmstest.WantError(t, err, 503, api.CodeUnavailable)
	failed := logs.Lines("a request failed: the root of trust could not open")
	if len(failed) != 1 || failed[0]["tenant"] != "acme" || failed[0]["action"] != "datakey.create" || failed[0]["level"] != "ERROR" {
		t.Fatalf("seal failure lines = %v, want one error naming tenant acme", failed)
	}
	for range 3 {
		code, h := e2e.HealthAt(t, anon.HTTP, anon.Base+"/readyz")
		if code != 503 || h.Status != api.HealthNotReady || len(h.Failed) != 1 || h.Failed[0] != "seal" {
			t.Fatalf("/readyz with a broken seal = %d %+v, want 503 failed [seal]", code, h)
		}
	}
	if code, h := e2e.HealthAt(t, anon.HTTP, anon.Base+"/healthz"); code != 200 || h.Status != api.HealthOK || h.Ready {
		t.Errorf("/healthz with a broken seal = %d %+v, want 200 ok, ready false", code, h)
	}
	if n := len(logs.Lines("the KMS root of trust cannot open its stored material")); n != 1 {
		t.Errorf("the seal check's failure was logged %d times, want once", n)
	}
	sealer.broken.Store(false)
	if code, h := e2e.HealthAt(t, anon.HTTP, anon.Base+"/readyz"); code != 200 || h.Status != api.HealthOK {
		t.Errorf("/readyz after the seal recovered = %d %+v", code, h)
	}
	if n := len(logs.Lines("the KMS root of trust opens its stored material again")); n != 1 {
		t.Errorf("the seal's recovery was logged %d times, want once", n)
	}
	cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, nil)

	// The request lines: route pattern, status, the caller's DN.
	var sawFail, sawProbe bool
	for _, l := range logs.Lines("request") {
		switch l["route"] {
		case "POST /v1/datakeys":
			if l["status"] == 503.0 && l["caller"] == creds.DN && l["request_id"] != "" && l["method"] == "POST" {
				sawFail = true
			}
		case "GET /readyz":
			sawProbe = sawProbe || l["status"] == 503.0
		}
	}
	if !sawFail || !sawProbe {
		t.Errorf("request lines: the failed create %t, a 503 probe %t", sawFail, sawProbe)
	}
}
