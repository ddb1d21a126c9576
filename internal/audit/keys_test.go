package audit

import (
	"errors"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
)

var newKey = mustKey(0x33)

// rotated returns a log of 30 records: 10 signed by testKey, the rotation
// to newKey (record 11, signed by testKey), 3 records a lagging replica
// signed by testKey, 5 by newKey, the retirement of testKey (record 20,
// by newKey), then 10 by newKey. It returns the store and the Log, which
// signs with newKey.
func rotated(t *testing.T) (*memAudit, *Log) {
	t.Helper()
	m := filled(t, 10)
	ctx := t.Context()
	clk := clock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	old := New(testKey, clk)
	l := New(testKey, clk)
	mustAppend := func(l *Log, ev Event) {
		t.Helper()
		if _, err := l.Append(ctx, m, ev); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(l, Event{Caller: "CN=admin,O=dcaas", Role: "admin", Action: ActionKeyRotated, KeyID: RotatedKeyID(newKey.Public()), Outcome: "ok"})
	l.SetKey(newKey)
	for i := range 3 {
		mustAppend(old, event(100+i)) // another replica, not switched yet
	}
	for i := range 5 {
		mustAppend(l, event(200+i))
	}
	mustAppend(l, Event{Caller: "CN=admin,O=dcaas", Role: "admin", Action: ActionKeyRetired, KeyID: testKey.Public().ID(), Outcome: "ok"})
	l.Retire(testKey.Public().ID())
	for i := range 10 {
		mustAppend(l, event(300+i))
	}
	if len(m.records) != 30 {
		t.Fatalf("%d records", len(m.records))
	}
	return m, l
}

// resign signs record i of rs again with key (its hash unchanged).
func resign(rs []store.AuditRecord, i int, key *kcrypto.LogKey) {
	rs[i].Sig = key.Sign(recordSigInput(rs[i].Seq, rs[i].Hash))
}

// TestVerifyKeyRotation: a log whose audit key was rotated verifies with
// the first key alone: the rotation record, signed by a trusted key,
// brings the new key in; the old one signs until its retirement record
// and never after. Someone without a trusted key cannot bring one in, nor
// can a retired key sign again.
func TestVerifyKeyRotation(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(rs []store.AuditRecord) []store.AuditRecord
		wantSeq int64 // the *BrokenError's record; 0: intact
	}{
		{"intact", func(rs []store.AuditRecord) []store.AuditRecord { return rs }, 0},
		{"the old key signs after the rotation, before its retirement", func(rs []store.AuditRecord) []store.AuditRecord {
			resign(rs, 16, testKey)
			return rs
		}, 0},
		{"the old key signs after its retirement", func(rs []store.AuditRecord) []store.AuditRecord {
			resign(rs, 24, testKey)
			return rs
		}, 25},
		{"the new key signs before the rotation", func(rs []store.AuditRecord) []store.AuditRecord {
			resign(rs, 7, newKey)
			return rs
		}, 8},
		{"the rotation unsigned (covered by a later signature)", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[10].Sig = nil
			return rs
		}, 11},
		{"a rotation to another key, signed by it, chained in", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[10].KeyID = RotatedKeyID(otherKey.Public())
			return rechain(rs, 10, otherKey)
		}, 11},
		{"a rotation to another key, signed by the old key after its retirement", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[25].Action, rs[25].KeyID, rs[25].Role = ActionKeyRotated, RotatedKeyID(otherKey.Public()), "admin"
			rs[25].Hash = recordHash(rs[25])
			rechain(rs, 26, otherKey)
			resign(rs, 25, testKey)
			return rs
		}, 26},
		{"the retirement of a key the log does not trust", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[19].KeyID = otherKey.Public().ID()
			return rechain(rs, 19, newKey)
		}, 20},
		{"a rotation naming no key", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[10].KeyID = "ed25519-public:00"
			return rechain(rs, 10, nil)
		}, 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := rotated(t)
			m.records = tt.tamper(m.records)
			res, err := Verify(t.Context(), m, testKey.Public())
			if tt.wantSeq == 0 {
				if err != nil || res.Records != 30 || len(res.KeyChanges) != 2 {
					t.Fatalf("Verify = %+v, %v", res, err)
				}
				want := []KeyChange{{Seq: 11, KeyID: newKey.Public().ID()}, {Seq: 20, KeyID: testKey.Public().ID(), Retired: true}}
				for i, c := range res.KeyChanges {
					if c != want[i] {
						t.Errorf("key change %d = %+v, want %+v", i, c, want[i])
					}
				}
				return
			}
			var broken *BrokenError
			if !errors.As(err, &broken) || broken.Seq != tt.wantSeq {
				t.Fatalf("Verify = %v, want a *BrokenError at %d", err, tt.wantSeq)
			}
		})
	}

	// Retiring the only key the log trusts breaks it.
	m := filled(t, 5)
	if _, err := New(testKey, nil).Append(t.Context(), m, Event{Caller: "kms", Action: ActionKeyRetired, KeyID: testKey.Public().ID(), Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	var broken *BrokenError
	if _, err := Verify(t.Context(), m, testKey.Public()); !errors.As(err, &broken) || broken.Seq != 6 {
		t.Fatalf("Verify(the only key retired) = %v, want a *BrokenError at 6", err)
	}
}

// TestCheckpointsAcrossRotation: a checkpoint signed by the new key, or by
// the old one before its retirement, verifies with the first key alone;
// the Log checkpoints a head the old key signed until it retires it.
func TestCheckpointsAcrossRotation(t *testing.T) {
	m, l := rotated(t)
	cpOld := mustCheckpointAt(t, New(testKey, nil), m, 9)
	cpNew, err := l.Checkpoint(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := Verify(t.Context(), m, testKey.Public(), cpOld, cpNew); err != nil || res.Checkpoints != 2 {
		t.Fatalf("Verify(checkpoints by both keys) = %+v, %v", res, err)
	}
	forged := cpNew
	forged.Sig = otherKey.Sign(checkpointSigInput(forged))
	if _, err := Verify(t.Context(), m, testKey.Public(), forged); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("Verify(a checkpoint by another key) = %v, want ErrBadCheckpoint", err)
	}

	// A head the old key signed (a lagging replica): accepted until the
	// Log retires that key.
	m2 := filled(t, 3)
	l2 := New(testKey, nil)
	if _, err := l2.Append(t.Context(), m2, Event{Caller: "kms", Action: ActionKeyRotated, KeyID: RotatedKeyID(newKey.Public()), Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	l2.SetKey(newKey)
	l2.Stored(4)
	if _, err := New(testKey, nil).Append(t.Context(), m2, event(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Checkpoint(t.Context(), m2); err != nil {
		t.Fatalf("Checkpoint(a head the old key signed, not retired) = %v", err)
	}
	l2.Retire(testKey.Public().ID())
	var broken *BrokenError
	if _, err := l2.Checkpoint(t.Context(), m2); !errors.As(err, &broken) {
		t.Fatalf("Checkpoint(a head the retired key signed) = %v, want a *BrokenError", err)
	}
	if l2.Public().ID() != newKey.Public().ID() {
		t.Fatal("Public() is not the key set last")
	}
}

// TestPruneAcrossRotation: a log pruned past a rotation and a retirement
// carries their records in its start, so that the first key alone
// verifies what stays; a start that leaves the retirement out (to make
// the retired key trusted again) is not the one the prune record names.
func TestPruneAcrossRotation(t *testing.T) {
	m, l := rotated(t)
	const through = 25
	last, keyRecs, err := CheckSegment(t.Context(), m, testKey.Public(), Start{}, through)
	if err != nil || last.Seq != through || len(keyRecs) != 2 {
		t.Fatalf("CheckSegment = record %d, %d key records, %v", last.Seq, len(keyRecs), err)
	}
	start := StartOf(last)
	for _, r := range keyRecs {
		start.Keys = append(start.Keys, ToAPI(r))
	}
	l.Stored(30)
	if _, err := l.Append(t.Context(), m, Event{Caller: "CN=admin,O=dcaas", Action: ActionPruned, KeyID: start.String(), Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	dropThrough(m, through)
	if res, err := VerifyAfter(t.Context(), m, testKey.Public(), start); err != nil || res.Records != 31 || len(res.KeyChanges) != 2 {
		t.Fatalf("VerifyAfter(pruned past the rotation) = %+v, %v", res, err)
	}
	got, err := ParseStart(start.Marshal())
	if err != nil || got.String() != start.String() {
		t.Fatalf("the start does not survive its encoding: %v, %q vs %q", err, got.String(), start.String())
	}

	// Without its key records the start's own signature (by the new key)
	// does not verify with the first key.
	bare := start
	bare.Keys = nil
	if _, err := VerifyAfter(t.Context(), m, testKey.Public(), bare); !errors.Is(err, ErrBadStart) {
		t.Fatalf("VerifyAfter(start without its key records) = %v, want ErrBadStart", err)
	}
	// Without the retirement: the old key would be trusted again; the
	// prune record names the start with both.
	noRetire := start
	noRetire.Keys = start.Keys[:1]
	var broken *BrokenError
	if _, err := VerifyAfter(t.Context(), m, testKey.Public(), noRetire); !errors.As(err, &broken) || broken.Seq != through+1 {
		t.Fatalf("VerifyAfter(start without the retirement) = %v, want a *BrokenError at %d", err, through+1)
	}
	// A key record the key did not sign.
	forged := start
	forged.Keys = append([]api.AuditRecord(nil), start.Keys...)
	forged.Keys[0].Signature = otherKey.Sign(recordSigInput(forged.Keys[0].Seq, forged.Keys[0].Hash))
	if _, err := VerifyAfter(t.Context(), m, testKey.Public(), forged); !errors.Is(err, ErrBadStart) {
		t.Fatalf("VerifyAfter(start with a forged key record) = %v, want ErrBadStart", err)
	}
	// Through a record the retired key signed: refused.
	m2, _ := rotated(t)
	resign(m2.records, 24, testKey)
	if _, _, err := CheckSegment(t.Context(), m2, testKey.Public(), Start{}, 25); !errors.As(err, &broken) || broken.Seq != 25 {
		t.Fatalf("CheckSegment(through a record the retired key signed) = %v, want a *BrokenError at 25", err)
	}
}
