package audit

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// pruned returns a log of n records pruned through record through the way
// the KMS prunes: the record of the prune (ActionPruned naming the start)
// appended at the head, then records 1 to through deleted. It returns the
// store and the start.
func pruned(t *testing.T, n int, through int64) (*memAudit, Start) {
	t.Helper()
	m := filled(t, n)
	start := StartOf(m.records[through-1])
	l := New(testKey, clock(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)))
	l.Stored(int64(n))
	if _, err := l.Append(t.Context(), m, Event{Caller: "CN=admin,O=dcaas", Role: "admin", Action: ActionPruned, KeyID: start.String(), Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	dropThrough(m, through)
	return m, start
}

// dropThrough deletes records 1 to seq from m.
func dropThrough(m *memAudit, seq int64) {
	m.records = slices.DeleteFunc(m.records, func(r store.AuditRecord) bool { return r.Seq <= seq })
}

// TestVerifyAfterPrune: a log pruned through a signed record verifies from
// its start, only with the record of the prune that set it after it; every
// way someone who can write the database (not sign) could use the start to
// hide records is caught: deleting more and naming a later signed record
// as the start, dropping the prune record, a start not signed by the key,
// a start that does not match the records left.
func TestVerifyAfterPrune(t *testing.T) {
	const n, through = 40, 12
	tests := []struct {
		name    string
		tamper  func(m *memAudit, s Start) Start
		wantErr error // nil: intact
		wantSeq int64 // the *BrokenError's record
		records int64
	}{
		{"intact", func(m *memAudit, s Start) Start { return s }, nil, 0, n + 1},
		{"start moved later, records deleted", func(m *memAudit, s Start) Start {
			later := StartOf(m.records[6]) // record 19, signed, kept by the database
			dropThrough(m, later.Seq)
			return later
		}, nil, 20, n + 1},
		{"prune record removed", func(m *memAudit, s Start) Start {
			m.records = m.records[:len(m.records)-1] // the log's end cut, as a truncation would
			return s
		}, nil, through + 1, n},
		{"prune record's outcome changed and re-signed with another key", func(m *memAudit, s Start) Start {
			m.records[len(m.records)-1].Outcome = "denied"
			m.records = rechain(m.records, len(m.records)-1, otherKey)
			return s
		}, nil, n + 1, n},
		{"start signed by another key", func(m *memAudit, s Start) Start {
			s.Sig = otherKey.Sign(recordSigInput(s.Seq, s.Hash))
			return s
		}, ErrBadStart, 0, 0},
		{"start's hash changed", func(m *memAudit, s Start) Start { s.Hash = append([]byte(nil), m.records[0].Hash...); return s }, ErrBadStart, 0, 0},
		{"start unsigned", func(m *memAudit, s Start) Start { s.Sig = nil; return s }, ErrBadStart, 0, 0},
		{"start named back to an earlier record", func(m *memAudit, s Start) Start {
			return Start{Seq: 5, Hash: s.Hash, Sig: s.Sig}
		}, ErrBadStart, 0, 0},
		{"start removed", func(m *memAudit, s Start) Start { return Start{} }, nil, 1, 0},
		{"first record after the start deleted", func(m *memAudit, s Start) Start {
			m.records = m.records[1:]
			return s
		}, nil, through + 1, through},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, start := pruned(t, n, through)
			start = tt.tamper(m, start)
			res, err := VerifyAfter(t.Context(), m, testKey.Public(), start)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("VerifyAfter() = %v, want %v", err, tt.wantErr)
				}
				return
			case tt.wantSeq == 0:
				if err != nil {
					t.Fatalf("VerifyAfter() = %v, want nil", err)
				}
				if res.Start != start.Seq || res.Records != tt.records {
					t.Fatalf("VerifyAfter() = start %d, records %d; want %d, %d", res.Start, res.Records, start.Seq, tt.records)
				}
				return
			}
			var broken *BrokenError
			if !errors.As(err, &broken) {
				t.Fatalf("VerifyAfter() = %v, want a *BrokenError", err)
			}
			if broken.Seq != tt.wantSeq {
				t.Errorf("VerifyAfter() names record %d (%s), want %d", broken.Seq, broken.Reason, tt.wantSeq)
			}
			if res.Records != tt.records {
				t.Errorf("VerifyAfter() passed %d records, want %d", res.Records, tt.records)
			}
		})
	}
}

// TestVerifyAfterPruneCheckpoints: checkpoints of pruned records are
// checked for their signature and counted apart; one of the start must
// match it; later ones match as usual, and a forged one of a pruned record
// still fails.
func TestVerifyAfterPruneCheckpoints(t *testing.T) {
	const n, through = 30, 10
	full := filled(t, n)
	l := New(testKey, nil)
	before := mustCheckpointAt(t, l, full, 4)
	atStart := mustCheckpointAt(t, l, full, through)
	after := mustCheckpointAt(t, l, full, 20)
	forged := before
	forged.Time = forged.Time.Add(time.Second)

	m, start := pruned(t, n, through)
	res, err := VerifyAfter(t.Context(), m, testKey.Public(), start, before, atStart, after)
	if err != nil || res.BeforeStart != 1 || res.Checkpoints != 2 || res.Latest.Seq != 20 {
		t.Fatalf("VerifyAfter() = %+v, %v; want 1 checkpoint before the start and 2 matched", res, err)
	}
	if _, err := VerifyAfter(t.Context(), m, testKey.Public(), start, forged); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("VerifyAfter(a forged checkpoint of a pruned record) = %v, want ErrBadCheckpoint", err)
	}

	// A checkpoint of record 10 of another log (same key) does not match
	// the start.
	other := filled(t, n)
	other.records[3].Action = "elsewhere"
	other.records = rechain(other.records, 3, testKey)
	wrong := mustCheckpointAt(t, l, other, through)
	var broken *BrokenError
	if _, err := VerifyAfter(t.Context(), m, testKey.Public(), start, wrong); !errors.As(err, &broken) || broken.Seq != through {
		t.Fatalf("VerifyAfter(a checkpoint of the start's seq with another hash) = %v, want a *BrokenError at %d", err, through)
	}

	// Given after records were fed, a checkpoint of a pruned record is
	// counted, not ErrCheckpointBehind.
	v, _ := NewVerifier(testKey.Public())
	if err := v.StartAfter(start, true); err != nil {
		t.Fatal(err)
	}
	for _, r := range m.records[:5] {
		if err := v.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.AddCheckpoint(before); err != nil {
		t.Fatalf("AddCheckpoint(pruned record) = %v", err)
	}
	if err := v.StartAfter(start, true); err == nil {
		t.Fatal("StartAfter after records were fed succeeded")
	}
}

// TestVerifyAfterArchiveStart: an archive's start (explained false) needs
// no prune record after it: it is trusted through the archive before it.
func TestVerifyAfterArchiveStart(t *testing.T) {
	m := filled(t, 20)
	start := StartOf(m.records[7])
	dropThrough(m, start.Seq)
	v, _ := NewVerifier(testKey.Public())
	if err := v.StartAfter(start, false); err != nil {
		t.Fatal(err)
	}
	for _, r := range m.records {
		if err := v.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := v.Result(); err != nil || res.Records != 20 || res.Start != 8 {
		t.Fatalf("Result() = %+v, %v", res, err)
	}
	w, _ := NewVerifier(testKey.Public())
	_ = w.StartAfter(start, true)
	for _, r := range m.records {
		_ = w.Add(r)
	}
	var broken *BrokenError
	if _, err := w.Result(); !errors.As(err, &broken) || broken.Seq != 9 {
		t.Fatalf("Result() explained, with no prune record = %v, want a *BrokenError at 9", err)
	}
}

// TestStartEncoding: a start round-trips through its stored form, the
// zero Start is what an empty value parses to, and its name is SEQ:HASH.
func TestStartEncoding(t *testing.T) {
	m := filled(t, 3)
	s := StartOf(m.records[1])
	got, err := ParseStart(s.Marshal())
	if err != nil || got.String() != s.String() || string(got.Sig) != string(s.Sig) {
		t.Fatalf("ParseStart(Marshal()) = %+v, %v", got, err)
	}
	if z, err := ParseStart(nil); err != nil || !z.IsZero() || z.String() != "0" || z.Check(testKey.Public()) != nil {
		t.Fatalf("ParseStart(nil) = %+v, %v", z, err)
	}
	if _, err := ParseStart([]byte("{")); !errors.Is(err, ErrBadStart) {
		t.Fatalf("ParseStart(bad) = %v, want ErrBadStart", err)
	}
	if want := fmt.Sprintf("2:%x", s.Hash); s.String() != want {
		t.Fatalf("String() = %q, want %q", s.String(), want)
	}
}

// TestCheckSegment: the span from a start to a signed record checks with
// that record's signature alone; a change anywhere in it, a gap, or a
// last record the key did not sign is named.
func TestCheckSegment(t *testing.T) {
	const n = 1200 // more than two pages
	var broken *BrokenError
	tests := []struct {
		name    string
		from    int64 // the start's record (0: the log's start)
		tamper  func(rs []store.AuditRecord)
		wantSeq int64 // the *BrokenError's record; 0: intact
	}{
		{"from the log's start", 0, func([]store.AuditRecord) {}, 0},
		{"from a start", 300, func([]store.AuditRecord) {}, 0},
		{"a record's content changed", 0, func(rs []store.AuditRecord) { rs[700].Caller = "CN=other" }, 701},
		{"a record changed and its hash recomputed", 300, func(rs []store.AuditRecord) {
			rs[500].Action = "other"
			rs[500].Hash = recordHash(rs[500])
		}, 502},
		{"a record changed, every later hash recomputed", 0, func(rs []store.AuditRecord) {
			rs[10].Action = "other"
			rechain(rs, 10, nil)
		}, n},
		{"the last record's signature flipped", 0, func(rs []store.AuditRecord) { rs[n-1].Sig[3] ^= 1 }, n},
		{"the last record unsigned", 0, func(rs []store.AuditRecord) { rs[n-1].Sig = nil }, n},
		{"an inner signature flipped (covered by the last)", 0, func(rs []store.AuditRecord) { rs[20].Sig[0] ^= 1 }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := filled(t, n)
			var start Start
			if tt.from > 0 {
				start = StartOf(m.records[tt.from-1])
			}
			tt.tamper(m.records)
			last, _, err := CheckSegment(t.Context(), m, testKey.Public(), start, n)
			if tt.wantSeq == 0 {
				if err != nil || last.Seq != n {
					t.Fatalf("CheckSegment = record %d, %v", last.Seq, err)
				}
				return
			}
			if !errors.As(err, &broken) || broken.Seq != tt.wantSeq {
				t.Fatalf("CheckSegment = %v, want a *BrokenError at %d", err, tt.wantSeq)
			}
		})
	}
	m := filled(t, 10)
	if _, _, err := CheckSegment(t.Context(), &memAudit{records: m.records[:6]}, testKey.Public(), Start{}, 10); !errors.As(err, &broken) || broken.Seq != 7 {
		t.Fatalf("CheckSegment past the end = %v, want a *BrokenError at 7", err)
	}
	bad := StartOf(m.records[2])
	bad.Sig = otherKey.Sign(recordSigInput(bad.Seq, bad.Hash))
	if _, _, err := CheckSegment(t.Context(), m, testKey.Public(), bad, 10); !errors.Is(err, ErrBadStart) {
		t.Fatalf("CheckSegment from a forged start = %v, want ErrBadStart", err)
	}
	if _, _, err := CheckSegment(t.Context(), m, testKey.Public(), StartOf(m.records[5]), 6); err == nil {
		t.Fatal("CheckSegment of nothing after the start succeeded")
	}
}
