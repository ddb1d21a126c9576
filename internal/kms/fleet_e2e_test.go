package kms_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store"
)

// actions counts the audit records of env's log by action.
func actions(t *testing.T, env *kmstest.Env) map[string]int {
	t.Helper()
	recs, err := env.Server().Store.AuditAfter(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range recs {
		out[r.Action]++
	}
	return out
}

// TestQuietPolls: revocation polls that deliver nothing are answered with
// no audit record and no write of their own; the fleet view shows them at
// once, and they are stored for all instances together, with one audit
// record, when the KMS flushes them (here: when it stops). A poll that
// delivers an event is audited and stored with it; a refused poll is
// audited. The log verifies throughout.
func TestQuietPolls(t *testing.T) {
	env := kmstest.Start(t, func(o *kms.Options) { o.Config.PollFlushInterval = time.Hour })
	env.Tenant(t, "acme")
	cust, _ := env.App(t, "acme", "payments-api", api.RoleCustodian)
	dk := cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	sc := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	var tok api.EnrollmentToken
	cust.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{}, &tok)
	sc.Enroll(t, env.Anonymous(), tok.Token)
	id := sc.Enrollment.InstanceID
	cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dk.EKB}, WrappingCertPEM: sc.Enrollment.WrappingCertPEM}, nil)
	side := sc.Client(t, env)
	stored := func() store.Instance {
		t.Helper()
		in, err := env.Server().Store.GetInstance(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	fleetPoll := func() (*time.Time, *int) {
		t.Helper()
		var fleet api.Fleet
		env.Admin.MustDo(t, "GET", "/v1/tenants/acme/instances", nil, &fleet)
		return fleet.Instances[0].LastPollAt, fleet.Instances[0].KeysLoaded
	}

	before := actions(t, env)
	var feed api.RevocationFeed
	for range 20 {
		side.MustDo(t, "GET", "/v1/revocations?keys_loaded=1&since="+feed.Cursor, nil, &feed)
	}
	if got := actions(t, env); got["revocations.read"] != before["revocations.read"] || len(got) != len(before) {
		t.Fatalf("20 polls that delivered nothing: audit actions %v, before %v; want no new record", got, before)
	}
	if in := stored(); in.LastPollAt != nil {
		t.Fatalf("a quiet poll was written at once: last_poll_at %v", in.LastPollAt)
	}
	if at, n := fleetPoll(); at == nil || n == nil || *n != 1 {
		t.Fatalf("fleet view after quiet polls: last poll %v, keys %v; want them shown", at, n)
	}

	// A poll that delivers an event (the key, disabled) is audited, and
	// stores the poll with it.
	cust.MustDo(t, "DELETE", "/v1/datakeys/"+dk.KeyID, nil, nil)
	side.MustDo(t, "GET", "/v1/revocations?keys_loaded=1&since="+feed.Cursor, nil, &feed)
	if len(feed.Keys) != 1 || feed.Keys[0] != dk.KeyID {
		t.Fatalf("feed after the disable: %+v", feed)
	}
	if got := actions(t, env)["revocations.read"]; got != before["revocations.read"]+1 {
		t.Fatalf("a poll that delivered an event: %d revocations.read records, want %d", got, before["revocations.read"]+1)
	}
	eventful := stored().LastPollAt
	if eventful == nil {
		t.Fatal("the poll that delivered an event was not stored")
	}

	// Quiet again; stopping the KMS flushes them, in one transaction with
	// one record.
	for range 3 {
		side.MustDo(t, "GET", "/v1/revocations?keys_loaded=0&since="+feed.Cursor, nil, &feed)
	}
	lastQuiet, _ := fleetPoll()
	env.Restart()
	in := stored()
	if in.LastPollAt == nil || !in.LastPollAt.Equal(*lastQuiet) || in.KeysLoaded == nil || *in.KeysLoaded != 0 || in.LastPollAt.Before(*eventful) {
		t.Fatalf("after the flush: last_poll_at %v keys %v; want the last quiet poll %v with 0 keys", in.LastPollAt, in.KeysLoaded, lastQuiet)
	}
	if got := actions(t, env)["instances.polled"]; got != 1 {
		t.Fatalf("%d instances.polled records after one flush, want 1", got)
	}

	// A refused poll is audited.
	env.Admin.MustDo(t, "DELETE", "/v1/instances/"+id, nil, nil)
	refused := actions(t, env)["revocations.read"]
	if err := side.Do("GET", "/v1/revocations", nil, nil); api.CodeOf(err) == "" {
		t.Fatalf("a revoked instance's poll: %v, want refused", err)
	}
	if got := actions(t, env)["revocations.read"]; got != refused+1 {
		t.Fatalf("a refused poll: %d revocations.read records, want %d", got, refused+1)
	}
	if _, err := audit.Verify(context.Background(), env.Server().Store, env.Server().KMS.AuditKey()); err != nil {
		t.Fatalf("the audit log: %v", err)
	}
}

// TestLapsedInstancesDeleted: an instance whose identity certificate
// expired more than Config.LapsedInstanceRetention ago is deleted by the
// janitor with its release records, each with an audit record
// (instance.deleted); a live instance stays, and the log verifies.
func TestLapsedInstancesDeleted(t *testing.T) {
	clock := kmstest.NewClock()
	env := kmstest.Start(t, func(o *kms.Options) {
		o.Now = clock.Now
		o.Config.InstanceCertTTL = time.Hour
		o.Config.LapsedInstanceRetention = 30 * time.Minute
		o.Config.JanitorInterval = 20 * time.Millisecond
	})
	env.Tenant(t, "acme")
	cust, _ := env.App(t, "acme", "payments-api", api.RoleCustodian)
	dk := cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	enroll := func() *kmstest.FakeSidecar {
		sc := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
		var tok api.EnrollmentToken
		cust.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{}, &tok)
		sc.Enroll(t, env.Anonymous(), tok.Token)
		cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dk.EKB}, WrappingCertPEM: sc.Enrollment.WrappingCertPEM}, nil)
		return sc
	}
	old := enroll()
	clock.Advance(time.Hour + 31*time.Minute) // old's certificates expired 31 min ago
	live := enroll()
	ctx := context.Background()
	eventually(t, "the lapsed instance deleted", func() bool {
		_, err := env.Server().Store.GetInstance(ctx, old.Enrollment.InstanceID)
		return errors.Is(err, store.ErrNotFound)
	})
	if got, err := env.Server().Store.ReleasedVersions(ctx, old.Enrollment.InstanceID, []string{dk.KeyID}); err != nil || len(got) != 0 {
		t.Fatalf("the lapsed instance's releases: %v, %v; want none", got, err)
	}
	var fleet api.Fleet
	env.Admin.MustDo(t, "GET", "/v1/tenants/acme/instances", nil, &fleet)
	if len(fleet.Instances) != 1 || fleet.Instances[0].InstanceID != live.Enrollment.InstanceID || fleet.Instances[0].KeysReleased != 1 {
		t.Fatalf("fleet after the sweep: %+v, want only the live instance with its release", fleet.Instances)
	}
	recs, err := env.Server().Store.AuditAfter(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, r := range recs {
		if r.Action == "instance.deleted" {
			deleted = append(deleted, r.KeyID)
		}
	}
	if len(deleted) != 1 || deleted[0] != old.Enrollment.InstanceID {
		t.Fatalf("instance.deleted records: %v, want one for %s", deleted, old.Enrollment.InstanceID)
	}
	if _, err := audit.Verify(ctx, env.Server().Store, env.Server().KMS.AuditKey()); err != nil {
		t.Fatalf("the audit log: %v", err)
	}
}
