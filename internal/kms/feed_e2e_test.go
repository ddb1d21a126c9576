package kms_test

// End-to-end tests of issue 12 at the KMS: the revocation feed tells a
// sidecar only about the keys released to it and about itself, and a
// release racing a revocation is refused rather than missed.

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// TestRevocationFeedOnlyForHolders: a sidecar's revocation feed carries
// the events of the keys released to it and of its own instance, not the
// ids of other custodians' keys or of other sidecars.
func TestRevocationFeedOnlyForHolders(t *testing.T) {
	w := newTwoCustodians(t, 0)
	mine, hostile := w.side.Client(t, w.env), w.ledSide.Client(t, w.env)
	var first, firstLed api.RevocationFeed
	mine.MustDo(t, "GET", "/v1/revocations", nil, &first)
	hostile.MustDo(t, "GET", "/v1/revocations", nil, &firstLed)

	held := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	other := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	got, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, held.EKB)
	if err != nil {
		t.Fatal(err)
	}
	w.side.Unwrap(t, &got)[0].Wipe()
	for _, dk := range []api.DataKey{held, other} {
		var v2 api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/versions", api.NewVersionRequest{EKB: dk.EKB}, &v2)
		w.cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/min-decryption-version", api.MinDecryptionVersionRequest{Version: 2}, nil)
		w.cust.MustDo(t, "DELETE", "/v1/datakeys/"+dk.KeyID, nil, nil)
	}
	third := w.enroll(t, kcrypto.DefaultKEM(), w.custCreds.DN)
	w.cust.MustDo(t, "DELETE", "/v1/instances/"+third.Enrollment.InstanceID, nil, nil)

	var feed api.RevocationFeed
	mine.MustDo(t, "GET", "/v1/revocations?since="+first.Cursor, nil, &feed)
	if len(feed.Keys) != 1 || feed.Keys[0] != held.KeyID ||
		len(feed.KeyVersions) != 1 || feed.KeyVersions[0].KeyID != held.KeyID ||
		len(feed.Rotated) != 1 || feed.Rotated[0].KeyID != held.KeyID {
		t.Errorf("the holder's feed = %+v, want the events of %s only", feed, held.KeyID)
	}
	if len(feed.Instances) != 0 {
		t.Errorf("the holder's feed lists instances %v, want none (not its own)", feed.Instances)
	}
	var led api.RevocationFeed
	hostile.MustDo(t, "GET", "/v1/revocations?since="+firstLed.Cursor, nil, &led)
	if len(led.Keys)+len(led.KeyVersions)+len(led.Rotated)+len(led.Instances) != 0 {
		t.Errorf("another custodian's sidecar reads %+v, want nothing", led)
	}
	if led.Cursor != feed.Cursor {
		t.Errorf("cursors = %s and %s, want both past the last event", led.Cursor, feed.Cursor)
	}
}

// racingStore runs before just ahead of the next transaction that records
// releases: what another request commits between a release's checks and
// its record. The record commits in one transaction with the call's audit
// record, which on SQLite holds the only write connection, so the racing
// write cannot run inside it: the transaction is given up when it reaches
// RecordReleases, the racing write runs, and the transaction runs again
// from its start, as if the write had come just before it.
type racingStore struct {
	store.Store
	mu     sync.Mutex
	before func(refs []store.KeyRef)
}

func (s *racingStore) InTx(ctx context.Context, fn func(tx store.Tx) error) error {
	rt := &racingTx{s: s}
	err := s.Store.InTx(ctx, func(tx store.Tx) error {
		rt.Tx = tx
		return fn(rt)
	})
	if rt.raced == nil {
		return err
	}
	rt.raced(rt.refs)
	return s.Store.InTx(ctx, fn)
}

// racingTx gives up its transaction at RecordReleases when a race is set.
type racingTx struct {
	store.Tx
	s     *racingStore
	raced func(refs []store.KeyRef)
	refs  []store.KeyRef
}

var errRaced = errors.New("test: the transaction is given up for a racing write")

func (t *racingTx) RecordReleases(ctx context.Context, instanceID string, refs []store.KeyRef, at time.Time) error {
	t.s.mu.Lock()
	f := t.s.before
	t.s.mu.Unlock()
	if f != nil {
		t.raced, t.refs = f, refs
		return errRaced
	}
	return t.Tx.RecordReleases(ctx, instanceID, refs, at)
}

// TestReleaseRacingARevocation: a key disabled, or a version retired,
// after a release's checks but before its record would reach a sidecar
// that never hears of it (its feed skipped the event, the key not being
// released to it yet). The KMS checks again after the record and refuses.
func TestReleaseRacingARevocation(t *testing.T) {
	db, err := sqlstore.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "kms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rs := &racingStore{Store: db}
	env := kmstest.Start(t, func(o *kms.Options) { o.Store = rs })
	env.Tenant(t, "acme")
	cust, creds := env.App(t, "acme", "payments-api", api.RoleCustodian)
	pipe, _ := env.App(t, "acme", "deployer", api.RolePipeline)
	w := &world{env: env, cust: cust, custCreds: creds, pipe: pipe}
	side := w.enroll(t, kcrypto.DefaultKEM(), creds.DN)
	race := func(f func(id string) error) {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		rs.before = func(refs []store.KeyRef) {
			rs.mu.Lock()
			rs.before = nil
			rs.mu.Unlock()
			if err := f(refs[0].KeyID); err != nil {
				t.Error(err)
			}
		}
	}

	dk := w.dataKey(t, cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	race(func(id string) error { return db.DisableKey(context.Background(), id, time.Now()) })
	_, err = w.rewrap(cust, side.Enrollment.WrappingCertPEM, dk.EKB)
	kmstest.WantError(t, err, 403, api.CodeRevoked)

	dk = w.dataKey(t, cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	var v2 api.DataKey
	cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/versions", api.NewVersionRequest{EKB: dk.EKB}, &v2)
	race(func(id string) error { return db.SetMinDecryptionVersion(context.Background(), id, 2, time.Now()) })
	_, err = w.rewrap(cust, side.Enrollment.WrappingCertPEM, dk.EKB, v2.EKB)
	kmstest.WantError(t, err, 403, api.CodeRevoked)
	// Without a race the release goes through.
	got, err := w.rewrap(cust, side.Enrollment.WrappingCertPEM, v2.EKB)
	if err != nil || len(got.Keys) != 1 {
		t.Fatalf("rewrap of version 2 = %+v, %v", got, err)
	}
}
