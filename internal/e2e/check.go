package e2e

import (
	"slices"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// AckedKey is a data key whose creation the KMS acknowledged, with the
// type that was asked for.
type AckedKey struct {
	api.DataKey
	Type api.KeyType
}

// CheckReleases has the KMS release keys to the fake sidecar side —
// rewrap rewraps EKBs to side's wrapping certificate, through whichever
// client and replica the test means — 500 at a time, unwraps them there,
// and checks that they are the acknowledged keys: same ids, versions and
// requested types, and signing keys matching the public keys published at
// creation.
func CheckReleases(t testing.TB, side *kmstest.FakeSidecar, rewrap func(ekbs [][]byte) (*api.WrappedKeys, error), keys []AckedKey) {
	t.Helper()
	const chunk = 500
	start := 0
	for batch := range slices.Chunk(keys, chunk) {
		ekbs := make([][]byte, len(batch))
		for i, k := range batch {
			ekbs[i] = k.EKB
		}
		got, err := rewrap(ekbs)
		if err != nil {
			t.Fatalf("rewrap of %d acknowledged EKBs (from %d) to instance %s: %v", len(ekbs), start, side.Enrollment.InstanceID, err)
		}
		if len(got.Keys) != len(batch) {
			t.Fatalf("rewrap returned %d keys, want %d", len(got.Keys), len(batch))
		}
		deks := side.Unwrap(t, got)
		for i, k := range batch {
			g := got.Keys[i]
			if g.KeyID != k.KeyID || g.Version != k.Version || g.Metadata.Type != k.Type {
				t.Errorf("rewrapped key %d = %s v%d %s, want %s v%d %s", start+i, g.KeyID, g.Version, g.Metadata.Type, k.KeyID, k.Version, k.Type)
			}
			if k.Type.Signing() {
				kmstest.CheckPublicKey(t, k.Type, deks[i].Expose(), k.PublicKeyPEM)
			}
			deks[i].Wipe()
		}
		start += len(batch)
	}
}

// AuditLog reads the whole audit log through admin's SDK client. Reading
// the log is audited too, so a page never comes back empty: the log is
// read once a page holds nothing but records of the reader's own earlier
// reads ("audit.read"); those pages' records are returned too.
func AuditLog(t testing.TB, admin *client.KMS) []api.AuditRecord {
	t.Helper()
	var out []api.AuditRecord
	var after int64
	for range 100000 {
		page, err := admin.Audit(t.Context(), after)
		if err != nil {
			t.Fatalf("GET /v1/audit?after=%d: %v", after, err)
		}
		done := true
		for _, r := range page.Records {
			if r.Action != "audit.read" {
				done = false
			}
			after = r.Seq
		}
		out = append(out, page.Records...)
		if done {
			return out
		}
	}
	t.Fatal("GET /v1/audit does not come to an end")
	return nil
}
