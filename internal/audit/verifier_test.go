package audit

import (
	"errors"
	"testing"
)

// TestVerifierIncremental: a Verifier fed a growing log record by record
// answers what Verify answers of the log so far at every length, holds
// checkpoints given as it goes, and keeps its first failure.
func TestVerifierIncremental(t *testing.T) {
	m := filled(t, 12)
	l := New(testKey, nil)
	v, err := NewVerifier(testKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	for i, rec := range m.records {
		if err := v.Add(rec); err != nil {
			t.Fatalf("Add(record %d) = %v", rec.Seq, err)
		}
		got, gerr := v.Result()
		want, werr := Verify(t.Context(), &memAudit{records: m.records[:i+1]}, testKey.Public())
		if (gerr == nil) != (werr == nil) || got.Records != want.Records || string(got.Head) != string(want.Head) || got.Legacy != want.Legacy {
			t.Fatalf("after record %d: Result = %+v, %v; Verify = %+v, %v", rec.Seq, got, gerr, want, werr)
		}
		if v.Last() != rec.Seq {
			t.Fatalf("Last() = %d after record %d", v.Last(), rec.Seq)
		}
	}

	// A checkpoint of the last record fed is matched at once; one of an
	// earlier record cannot be (its hash is gone): ErrCheckpointBehind,
	// and the Verifier is unchanged.
	head := mustCheckpointAt(t, l, m, 12)
	if err := v.AddCheckpoint(head); err != nil {
		t.Fatalf("AddCheckpoint(the head) = %v", err)
	}
	if err := v.AddCheckpoint(mustCheckpointAt(t, l, m, 5)); !errors.Is(err, ErrCheckpointBehind) {
		t.Fatalf("AddCheckpoint(record 5 of 12) = %v, want ErrCheckpointBehind", err)
	}
	if res, err := v.Result(); err != nil || res.Checkpoints != 1 || res.Latest.Seq != 12 {
		t.Fatalf("Result() = %+v, %v; want 12 records and the one checkpoint", res, err)
	}

	// A checkpoint ahead of the log: truncated until the log reaches it.
	more := filled(t, 14)
	ahead := mustCheckpointAt(t, l, more, 14)
	w, _ := NewVerifier(testKey.Public(), ahead)
	for _, rec := range more.records[:13] {
		if err := w.Add(rec); err != nil {
			t.Fatal(err)
		}
	}
	var trunc *TruncatedError
	if _, err := w.Result(); !errors.As(err, &trunc) || trunc.Head != 13 {
		t.Fatalf("Result() short of the checkpoint = %v, want a *TruncatedError at 13", err)
	}
	if err := w.Add(more.records[13]); err != nil {
		t.Fatal(err)
	}
	if res, err := w.Result(); err != nil || res.Records != 14 || res.Checkpoints != 1 {
		t.Fatalf("Result() at the checkpoint = %+v, %v", res, err)
	}

	// A tampered record fed later fails, and the failure sticks.
	bad := filled(t, 6)
	bad.records[4].Action = "covered up"
	x, _ := NewVerifier(testKey.Public())
	var broken *BrokenError
	for _, rec := range bad.records[:4] {
		if err := x.Add(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Add(bad.records[4]); !errors.As(err, &broken) || broken.Seq != 5 {
		t.Fatalf("Add(tampered record 5) = %v, want a *BrokenError at 5", err)
	}
	if err := x.Add(bad.records[5]); !errors.As(err, &broken) || broken.Seq != 5 {
		t.Fatalf("Add after a failure = %v, want the same failure", err)
	}
	if res, err := x.Result(); !errors.As(err, &broken) || res.Records != 4 {
		t.Fatalf("Result() = %+v, %v; want 4 records and the failure at 5", res, err)
	}
}
