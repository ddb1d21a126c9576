package sqlstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
)

// pausingStore holds the first transaction that appends an audit record
// of action after the append, before its commit, until resume is closed
// (paused is closed then); and closes appending when a transaction that
// recorded releases reaches its audit append.
type pausingStore struct {
	store.Store
	action                    string
	paused, resume, appending chan struct{}
	pause, appended, resumed  sync.Once
}

func (s *pausingStore) InTx(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.Store.InTx(ctx, func(tx store.Tx) error { return fn(&pausingTx{Tx: tx, s: s}) })
}

func (s *pausingStore) release() { s.resumed.Do(func() { close(s.resume) }) }

type pausingTx struct {
	store.Tx
	s        *pausingStore
	released bool
}

func (t *pausingTx) RecordReleases(ctx context.Context, id string, refs []store.KeyRef, at time.Time) error {
	t.released = true
	return t.Tx.RecordReleases(ctx, id, refs, at)
}

func (t *pausingTx) AppendAudit(ctx context.Context, build func(int64, []byte) (store.AuditRecord, error), sign store.AuditSigner) (store.AuditRecord, error) {
	if t.released {
		t.s.appended.Do(func() { close(t.s.appending) })
	}
	r, err := t.Tx.AppendAudit(ctx, build, sign)
	if err == nil && r.Action == t.s.action {
		t.s.pause.Do(func() {
			close(t.s.paused)
			<-t.s.resume
		})
	}
	return r, err
}

// TestReleaseRacingAnAuditedDisable: a key disabled through the KMS while
// a release of it is under way. The disable's transaction is held after
// its audit record, before its commit; the release passes its first
// checks (the disable is not committed) and records itself. It must still
// be refused: its last check runs after its own audit record, which waits
// for the disable's transaction to end, so it sees the disable — on
// PostgreSQL too, where a check made before the append would see the key
// live, and the sidecar's feed, read between the disable's commit and the
// release's, would skip the event. (On SQLite the release's transaction
// cannot even begin while the disable's is open.)
func TestReleaseRacingAnAuditedDisable(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		ps := &pausingStore{
			Store: b.mustOpen(t, b.fresh(t)), action: "datakey.disable",
			paused: make(chan struct{}), resume: make(chan struct{}), appending: make(chan struct{}),
		}
		never := make(chan time.Time)
		env := kmstest.Start(t, func(o *kms.Options) {
			o.Store = ps
			o.Config.CertTicks, o.Config.AuditCheckpointTicks = never, never
		})
		t.Cleanup(ps.release) // never leave the disable hanging (runs before the KMS stops)
		env.Tenant(t, "acme")
		cust, creds := env.App(t, "acme", "payments-api", api.RoleCustodian)
		pipe, _ := env.App(t, "acme", "deployer", api.RolePipeline)
		side, _ := env.EnrolledFake(t, pipe, creds.DN)
		var dk api.DataKey
		cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)

		disabled := make(chan error, 1)
		go func() { disabled <- cust.Do("DELETE", "/v1/datakeys/"+dk.KeyID, nil, nil) }()
		wait(t, ps.paused, "the disable's transaction to hold its audit record")
		released := make(chan error, 1)
		go func() {
			released <- cust.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dk.EKB}, WrappingCertPEM: side.Enrollment.WrappingCertPEM}, nil)
		}()
		if b.name == "postgres" {
			wait(t, ps.appending, "the release's transaction to reach its audit record")
		}
		ps.release()
		if err := <-disabled; err != nil {
			t.Fatalf("disable: %v", err)
		}
		kmstest.WantError(t, <-released, 403, api.CodeRevoked)
	})
}

// wait waits for ch to close, for at most a minute (a test that would
// hang fails instead).
func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("waited a minute for %s", what)
	}
}
