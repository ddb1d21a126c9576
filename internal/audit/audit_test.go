package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
)

// memAudit is an in-memory audit store: a slice under a mutex.
type memAudit struct {
	mu          sync.Mutex
	records     []store.AuditRecord
	checkpoints map[int64]store.AuditCheckpoint
	failAt      int64 // AuditAfter fails when after == failAt (0: never)
	failBuild   bool  // AppendAudit drops the record build made (a transaction that rolls back)
}

var errStore = errors.New("store down")

// AppendAudit signs a record as it stores it when sign is set: each append
// is its own transaction.
func (m *memAudit) AppendAudit(ctx context.Context, build func(seq int64, prevHash []byte) (store.AuditRecord, error), sign store.AuditSigner) (store.AuditRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var seq int64
	var prev []byte
	if n := len(m.records); n > 0 {
		seq, prev = m.records[n-1].Seq, m.records[n-1].Hash
	}
	r, err := build(seq+1, prev)
	if err != nil {
		return store.AuditRecord{}, err
	}
	if m.failBuild {
		return store.AuditRecord{}, errStore
	}
	if sign != nil {
		r.Sig = sign(r.Seq, r.Hash)
	}
	m.records = append(m.records, r)
	return r, nil
}

func (m *memAudit) AuditAfter(ctx context.Context, after int64, limit int) ([]store.AuditRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failAt != 0 && after == m.failAt {
		return nil, errStore
	}
	var out []store.AuditRecord
	for _, r := range m.records {
		if r.Seq > after && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memAudit) LastAudit(ctx context.Context) (store.AuditRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.records) == 0 {
		return store.AuditRecord{}, store.ErrNotFound
	}
	return m.records[len(m.records)-1], nil
}

func (m *memAudit) PutAuditCheckpoint(ctx context.Context, cp store.AuditCheckpoint) (store.AuditCheckpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.checkpoints == nil {
		m.checkpoints = map[int64]store.AuditCheckpoint{}
	}
	if old, ok := m.checkpoints[cp.Seq]; ok {
		return old, nil
	}
	m.checkpoints[cp.Seq] = cp
	return cp, nil
}

// clock returns a clock starting at t0 that advances 1.5µs per call.
func clock(t0 time.Time) func() time.Time {
	var mu sync.Mutex
	t := t0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(1500 * time.Nanosecond)
		return t
	}
}

// testKey is a fixed audit key; otherKey is an attacker's.
var (
	testKey  = mustKey(0x11)
	otherKey = mustKey(0x22)
)

func mustKey(b byte) *kcrypto.LogKey {
	seed := bytes.Repeat([]byte{b}, 32)
	k, err := kcrypto.NewLogKey(secretOf(seed))
	if err != nil {
		panic(err)
	}
	return k
}

func event(i int) Event {
	return Event{Caller: "CN=app,O=acme", Role: "custodian", Action: "crypto.encrypt", Tenant: "acme", KeyID: fmt.Sprintf("k-%d", i), Outcome: "ok"}
}

// keyCreated appends the record a KMS appends when it makes its key.
func keyCreated(t *testing.T, l *Log, m *memAudit) {
	t.Helper()
	if _, err := l.Append(t.Context(), m, Event{Caller: "kms", Action: ActionKeyCreated, KeyID: l.Public().ID(), Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
}

// filled returns a store holding n valid signed records, the first the
// key's creation.
func filled(t *testing.T, n int) *memAudit {
	t.Helper()
	m := &memAudit{}
	l := New(testKey, clock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	for i := range n {
		if i == 0 {
			keyCreated(t, l, m)
			continue
		}
		if _, err := l.Append(t.Context(), m, event(i)); err != nil {
			t.Fatalf("Append() error %v", err)
		}
	}
	return m
}

func secretOf(b []byte) *secret.Bytes { return secret.New(b) }

// legacy appends n unsigned records, as a KMS did before the audit key.
func legacy(t *testing.T, m *memAudit, n int) {
	t.Helper()
	now := clock(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	for i := range n {
		_, err := m.AppendAudit(t.Context(), func(seq int64, prev []byte) (store.AuditRecord, error) {
			if prev == nil {
				prev = make([]byte, hashSize)
			}
			ev := event(i)
			r := store.AuditRecord{Seq: seq, Time: now().UTC().Truncate(time.Microsecond), Caller: ev.Caller, Role: ev.Role,
				Action: ev.Action, Tenant: ev.Tenant, KeyID: ev.KeyID, Outcome: ev.Outcome, PrevHash: prev}
			r.Hash = recordHash(r)
			return r, nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestAppend(t *testing.T) {
	m := &memAudit{}
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("CET", 3600))
	l := New(testKey, func() time.Time { return at })
	ev := Event{Caller: "CN=a,O=b", Role: "admin", Action: "tenants.create", Tenant: "b", KeyID: "", Outcome: "ok"}
	first, err := l.Append(t.Context(), m, ev)
	if err != nil {
		t.Fatalf("Append() error %v", err)
	}
	if first.Seq != 1 || !bytes.Equal(first.PrevHash, make([]byte, 32)) || len(first.Hash) != 32 || len(first.Sig) != 64 {
		t.Errorf("first record = seq %d prev %x hash %x sig %x; want seq 1, zero prev, 32-byte hash, 64-byte signature", first.Seq, first.PrevHash, first.Hash, first.Sig)
	}
	if !testKey.Public().Verify(recordSigInput(first.Seq, first.Hash), first.Sig) {
		t.Error("the first record's signature does not verify")
	}
	if want := at.UTC().Truncate(time.Microsecond); !first.Time.Equal(want) || first.Time.Location() != time.UTC {
		t.Errorf("Time = %v, want %v in UTC", first.Time, want)
	}
	second, err := l.Append(t.Context(), m, ev)
	if err != nil {
		t.Fatalf("Append() error %v", err)
	}
	if second.Seq != 2 || !bytes.Equal(second.PrevHash, first.Hash) || bytes.Equal(second.Hash, first.Hash) {
		t.Errorf("second record does not chain to the first")
	}
}

func TestAppendRejects(t *testing.T) {
	l := New(testKey, nil)
	for _, ev := range []Event{{Outcome: "ok"}, {Action: "x"}} {
		if _, err := l.Append(t.Context(), &memAudit{}, ev); err == nil {
			t.Errorf("Append(%+v) succeeded, want an error", ev)
		}
	}
}

func TestAppendCleansFields(t *testing.T) {
	m := &memAudit{}
	l := New(testKey, nil)
	keyCreated(t, l, m)
	r, err := l.Append(t.Context(), m, Event{Caller: "CN=a\x00b", Action: "x\xff", Outcome: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Caller != "CN=a\uFFFDb" || r.Action != "x\uFFFD" {
		t.Errorf("Append kept Caller %q Action %q", r.Caller, r.Action)
	}
	if _, err := Verify(t.Context(), m, testKey.Public()); err != nil {
		t.Errorf("Verify() = %v", err)
	}
}

func TestAppendConcurrent(t *testing.T) {
	m := &memAudit{}
	l := New(testKey, nil)
	keyCreated(t, l, m)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := l.Append(t.Context(), m, Event{Action: "a", Outcome: "ok"}); err != nil {
					t.Errorf("Append() error %v", err)
				}
			}
		})
	}
	wg.Wait()
	if res, err := Verify(t.Context(), m, testKey.Public()); res.Records != 401 || err != nil {
		t.Errorf("Verify() = %d, %v; want 401, nil", res.Records, err)
	}
}

// TestAppendRegressed: a store whose log lost committed records is refused;
// a sequence number offered again after a rollback is not, nor one a
// rolled-back transaction of several records had gone past (a group
// commit that failed on a full disk: the KMS refused every write until
// restarted, CI's TestFaultDiskFull).
func TestAppendRegressed(t *testing.T) {
	m := filled(t, 0)
	l := New(testKey, nil)
	for range 5 {
		r, err := l.Append(t.Context(), m, event(0))
		if err != nil {
			t.Fatal(err)
		}
		l.Stored(r.Seq) // each append its own transaction
	}
	// A transaction appends records 6, 7 and 8, then rolls back.
	for range 3 {
		if _, err := l.Append(t.Context(), m, event(0)); err != nil {
			t.Fatal(err)
		}
	}
	m.records = m.records[:5]
	if _, err := l.Checkpoint(t.Context(), m); err != nil {
		t.Errorf("Checkpoint() after a rolled-back transaction = %v", err)
	}
	if r, err := l.Append(t.Context(), m, event(0)); err != nil || r.Seq != 6 {
		t.Fatalf("Append() after a rolled-back transaction of three records = %d, %v; want record 6", r.Seq, err)
	}
	m.records = m.records[:5]
	m.failBuild = true // record 6 rolls back …
	if _, err := l.Append(t.Context(), m, event(0)); !errors.Is(err, errStore) {
		t.Fatalf("Append() with a failing store = %v, want errStore", err)
	}
	m.failBuild = false // … and is offered again
	r, err := l.Append(t.Context(), m, event(0))
	if err != nil || r.Seq != 6 {
		t.Fatalf("Append() after a rollback = %d, %v; want record 6", r.Seq, err)
	}
	l.Stored(r.Seq)
	m.records = m.records[:3] // truncated under the running KMS
	if _, err := l.Append(t.Context(), m, event(0)); !errors.Is(err, ErrRegressed) {
		t.Errorf("Append() after truncation = %v, want ErrRegressed", err)
	}
	if _, err := l.Checkpoint(t.Context(), m); !errors.Is(err, ErrRegressed) {
		t.Errorf("Checkpoint() after truncation = %v, want ErrRegressed", err)
	}
}

func TestCheckpoint(t *testing.T) {
	m := &memAudit{}
	l := New(testKey, clock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	empty, err := l.Checkpoint(t.Context(), m)
	if err != nil || empty.Seq != 0 || !bytes.Equal(empty.Hash, make([]byte, 32)) {
		t.Fatalf("Checkpoint() of an empty log = %+v, %v; want seq 0 with a zero hash", empty, err)
	}
	keyCreated(t, l, m)
	for i := range 2 {
		if _, err := l.Append(t.Context(), m, event(i)); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := l.Checkpoint(t.Context(), m)
	if err != nil || cp.Seq != 3 || !bytes.Equal(cp.Hash, m.records[2].Hash) {
		t.Fatalf("Checkpoint() = %+v, %v; want record 3's hash", cp, err)
	}
	if err := VerifyCheckpoint(testKey.Public(), cp); err != nil {
		t.Errorf("VerifyCheckpoint(Checkpoint()) = %v", err)
	}
	again, err := l.Checkpoint(t.Context(), m)
	if err != nil || !again.Time.Equal(cp.Time) {
		t.Errorf("Checkpoint() of the same head = %+v, %v; want the first one, %v", again, err, cp.Time)
	}
	res, err := Verify(t.Context(), m, testKey.Public(), empty, cp)
	if err != nil || res.Checkpoints != 2 || res.Latest.Seq != 3 {
		t.Errorf("Verify(log, its checkpoints) = %+v, %v; want both matched, the latest of record 3", res, err)
	}

	// A head someone rewrote is not signed for.
	m.records[2].Action = "covered up"
	m.records[2].Hash = recordHash(m.records[2])
	var broken *BrokenError
	if _, err := l.Checkpoint(t.Context(), m); !errors.As(err, &broken) || broken.Seq != 3 {
		t.Errorf("Checkpoint() of a rewritten head = %v, want a *BrokenError at record 3", err)
	}
}

// rechain recomputes the previous hash and hash of rs[from:], as someone
// who can write the store but not sign does after changing a record;
// resign, when set, signs them again with that key.
func rechain(rs []store.AuditRecord, from int, resign *kcrypto.LogKey) []store.AuditRecord {
	for i := from; i < len(rs); i++ {
		rs[i].PrevHash = make([]byte, hashSize)
		if i > 0 {
			rs[i].PrevHash = rs[i-1].Hash
		}
		rs[i].Hash = recordHash(rs[i])
		if resign != nil && rs[i].Sig != nil {
			rs[i].Sig = resign.Sign(recordSigInput(rs[i].Seq, rs[i].Hash))
		}
	}
	return rs
}

// renumber numbers rs 1, 2, 3 … again.
func renumber(rs []store.AuditRecord) []store.AuditRecord {
	for i := range rs {
		rs[i].Seq = int64(i + 1)
	}
	return rs
}

func TestVerify(t *testing.T) {
	const n = 1234 // more than two pages
	tests := []struct {
		name    string
		tamper  func(rs []store.AuditRecord) []store.AuditRecord
		wantSeq int64 // 0: intact
		checked int64
	}{
		{"intact", func(rs []store.AuditRecord) []store.AuditRecord { return rs }, 0, n},
		{"empty", func([]store.AuditRecord) []store.AuditRecord { return nil }, 0, 0},
		{"caller changed", func(rs []store.AuditRecord) []store.AuditRecord { rs[2].Caller = "CN=evil"; return rs }, 3, 2},
		{"key id changed", func(rs []store.AuditRecord) []store.AuditRecord { rs[700].KeyID = "k-x"; return rs }, 701, 700},
		{"outcome changed", func(rs []store.AuditRecord) []store.AuditRecord { rs[0].Outcome = "denied"; return rs }, 1, 0},
		{"code changed", func(rs []store.AuditRecord) []store.AuditRecord { rs[5].Code = "x"; return rs }, 6, 5},
		{"time changed", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[9].Time = rs[9].Time.Add(time.Microsecond)
			return rs
		}, 10, 9},
		{"hash flipped", func(rs []store.AuditRecord) []store.AuditRecord { rs[3].Hash[0] ^= 1; return rs }, 4, 3},
		{"signature flipped", func(rs []store.AuditRecord) []store.AuditRecord { rs[3].Sig[0] ^= 1; return rs }, 4, 3},
		{"first prev hash not zero", func(rs []store.AuditRecord) []store.AuditRecord { rs[0].PrevHash[31] = 1; return rs }, 1, 0},
		{"rewritten with a fresh hash", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[4].Action = "covered up"
			rs[4].Hash = recordHash(rs[4])
			return rs
		}, 5, 4},
		{"rewritten, every later hash recomputed", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[15].Action = "covered up"
			return rechain(rs, 15, nil)
		}, 16, 15},
		{"rewritten and re-signed with another key", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[15].Action = "covered up"
			return rechain(rs, 15, otherKey)
		}, 16, 15},
		{"whole log re-signed with another key", func(rs []store.AuditRecord) []store.AuditRecord { return rechain(rs, 0, otherKey) }, 1, 0},
		{"record deleted", func(rs []store.AuditRecord) []store.AuditRecord { return append(rs[:2:2], rs[3:]...) }, 3, 2},
		{"record deleted, renumbered and re-chained", func(rs []store.AuditRecord) []store.AuditRecord {
			return rechain(renumber(append(rs[:15:15], rs[16:]...)), 15, nil)
		}, 16, 15},
		{"first record deleted", func(rs []store.AuditRecord) []store.AuditRecord { return rs[1:] }, 1, 0},
		{"first record deleted, renumbered and re-chained", func(rs []store.AuditRecord) []store.AuditRecord {
			return rechain(renumber(rs[1:]), 0, nil)
		}, 1, 0},
		{"records reordered", func(rs []store.AuditRecord) []store.AuditRecord { rs[2], rs[3] = rs[3], rs[2]; return rs }, 3, 2},
		{"contents swapped", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[2].Seq, rs[3].Seq = rs[3].Seq, rs[2].Seq
			rs[2], rs[3] = rs[3], rs[2]
			return rs
		}, 3, 2},
		{"reordered, renumbered and re-chained", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[20], rs[21] = rs[21], rs[20]
			return rechain(renumber(rs), 20, nil)
		}, 21, 20},
		{"record duplicated", func(rs []store.AuditRecord) []store.AuditRecord {
			return append(rs[:3:3], append([]store.AuditRecord{rs[2]}, rs[3:]...)...)
		}, 4, 3},
		{"record inserted and re-chained", func(rs []store.AuditRecord) []store.AuditRecord {
			forged := rs[9]
			forged.Action = "forged"
			return rechain(renumber(append(rs[:10:10], append([]store.AuditRecord{forged}, rs[10:]...)...)), 10, nil)
		}, 11, 10},
		{"signatures stripped from the tail", func(rs []store.AuditRecord) []store.AuditRecord {
			for i := 1000; i < len(rs); i++ {
				rs[i].Sig = nil
			}
			return rs
		}, 1001, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := filled(t, n)
			m.records = tt.tamper(m.records)
			res, err := Verify(t.Context(), m, testKey.Public())
			if res.Records != tt.checked {
				t.Errorf("Verify() checked %d, want %d", res.Records, tt.checked)
			}
			if tt.wantSeq == 0 {
				if err != nil {
					t.Errorf("Verify() = %v, want nil", err)
				}
				return
			}
			var broken *BrokenError
			if !errors.As(err, &broken) {
				t.Fatalf("Verify() = %v, want a *BrokenError", err)
			}
			if broken.Seq != tt.wantSeq {
				t.Errorf("Verify() names record %d (%s), want %d", broken.Seq, broken.Reason, tt.wantSeq)
			}
		})
	}
}

// TestVerifyTransactionSigned: the KMS signs the last record of each
// transaction only (store.Audit.AppendAudit). Unsigned records followed by
// a signed one verify; a change to one of them, re-chained through the
// signed record, breaks that record's signature and is reported from the
// first record it covers; a log ending in unsigned records does not
// verify (its last signatures were stripped, or records removed).
func TestVerifyTransactionSigned(t *testing.T) {
	const n = 1234
	// Transactions of 1 to 7 records; records 1 (the key's creation) and
	// every transaction's last keep their signatures.
	grouped := func(t *testing.T) *memAudit {
		m := filled(t, n)
		for i, size := 1, 1; i < n; i, size = i+size, size%7+1 {
			for j := i; j < min(i+size, n)-1; j++ {
				m.records[j].Sig = nil
			}
		}
		return m
	}
	m := grouped(t)
	unsigned := 0
	for _, r := range m.records {
		if r.Sig == nil {
			unsigned++
		}
	}
	if unsigned < n/2 {
		t.Fatalf("only %d of %d records unsigned", unsigned, n)
	}
	if res, err := Verify(t.Context(), m, testKey.Public()); err != nil || res.Records != n {
		t.Fatalf("Verify(transaction-signed log) = %+v, %v; want all %d records", res, err, n)
	}
	// Record 600 (index 599) is unsigned; find the run it is in.
	first, last := 599, 599
	for m.records[first-1].Sig == nil {
		first--
	}
	for m.records[last].Sig == nil {
		last++
	}
	if m.records[599].Sig != nil || first == last {
		t.Fatalf("record 600 should be inside an unsigned run; run %d-%d", first+1, last+1)
	}
	tests := []struct {
		name    string
		tamper  func(rs []store.AuditRecord) []store.AuditRecord
		wantSeq int64
		checked int64
	}{
		{"covered record changed, not re-chained", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[599].Caller = "CN=evil"
			return rs
		}, 600, 599},
		{"covered record changed and re-chained", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[599].Caller = "CN=evil"
			return rechain(rs, 599, nil)
		}, int64(first + 1), int64(first)},
		{"covered record removed, renumbered and re-chained", func(rs []store.AuditRecord) []store.AuditRecord {
			return rechain(renumber(append(rs[:599:599], rs[600:]...)), 599, nil)
		}, int64(first + 1), int64(first)},
		{"last record's signature stripped", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[n-1].Sig = nil
			return rs
		}, -1, -1},
		{"log cut inside a transaction", func(rs []store.AuditRecord) []store.AuditRecord {
			return rs[:last]
		}, int64(first + 1), int64(first)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := grouped(t)
			m.records = tt.tamper(m.records)
			if tt.wantSeq == -1 { // the run the last record closed
				k := len(m.records) - 1
				for m.records[k-1].Sig == nil {
					k--
				}
				tt.wantSeq, tt.checked = int64(k+1), int64(k)
			}
			res, err := Verify(t.Context(), m, testKey.Public())
			var broken *BrokenError
			if !errors.As(err, &broken) {
				t.Fatalf("Verify() = %+v, %v; want a *BrokenError", res, err)
			}
			if broken.Seq != tt.wantSeq || res.Records != tt.checked {
				t.Errorf("Verify() names record %d (%s), checked %d; want %d, checked %d", broken.Seq, broken.Reason, res.Records, tt.wantSeq, tt.checked)
			}
			if !bytes.Equal(res.Head, m.records[res.Records-1].Hash) {
				t.Errorf("Verify().Head is not the hash of record %d, the last that passed", res.Records)
			}
		})
	}
}

// TestVerifyStripped: a log whose every signature was removed, the hashes
// left valid, does not pass as a log written before the audit key.
func TestVerifyStripped(t *testing.T) {
	m := filled(t, 20)
	for i := range m.records {
		m.records[i].Sig = nil
	}
	res, err := Verify(t.Context(), m, testKey.Public())
	if !errors.Is(err, ErrNotSigned) || res.Legacy != 20 {
		t.Errorf("Verify(unsigned log) = %+v, %v; want ErrNotSigned", res, err)
	}
	if _, err := Verify(t.Context(), m, kcrypto.LogVerifyKey{}); !errors.Is(err, ErrNoKey) {
		t.Errorf("Verify(no key) = %v, want ErrNoKey", err)
	}
}

// TestVerifyTruncated: records removed from the end pass unless the
// verifier holds a checkpoint past the new end.
func TestVerifyTruncated(t *testing.T) {
	m := filled(t, 30)
	l := New(testKey, clock(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)))
	cp20 := mustCheckpointAt(t, l, m, 20)
	cp30, err := l.Checkpoint(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(t.Context(), m, testKey.Public(), cp20, cp30); err != nil {
		t.Fatalf("Verify(intact, checkpoints 20 and 30) = %v", err)
	}
	m.records = m.records[:25]
	// Without a checkpoint past record 25, the shorter log looks whole.
	if res, err := Verify(t.Context(), m, testKey.Public(), cp20); err != nil || res.Records != 25 {
		t.Errorf("Verify(truncated, checkpoint 20) = %d, %v; want 25, nil (undetectable)", res.Records, err)
	}
	var trunc *TruncatedError
	res, err := Verify(t.Context(), m, testKey.Public(), cp20, cp30)
	if !errors.As(err, &trunc) || trunc.Head != 25 || trunc.Checkpoint.Seq != 30 || res.Records != 25 {
		t.Errorf("Verify(truncated, checkpoint 30) = %d, %v; want a *TruncatedError at 25 of 30", res.Records, err)
	}
	// Truncated to nothing.
	m.records = nil
	if _, err := Verify(t.Context(), m, testKey.Public(), cp20); !errors.As(err, &trunc) || trunc.Head != 0 {
		t.Errorf("Verify(emptied, checkpoint 20) = %v; want a *TruncatedError at 0", err)
	}
}

// mustCheckpointAt signs a checkpoint of record seq of m, as a KMS did when
// the log ended there.
func mustCheckpointAt(t *testing.T, l *Log, m *memAudit, seq int64) store.AuditCheckpoint {
	t.Helper()
	short := &memAudit{records: m.records[:seq]}
	cp, err := l.Checkpoint(t.Context(), short)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestVerifyCheckpoints(t *testing.T) {
	m := filled(t, 10)
	l := New(testKey, nil)
	cp := mustCheckpointAt(t, l, m, 7)
	forged := cp
	forged.Seq = 9
	forgedTime := cp
	forgedTime.Time = cp.Time.Add(time.Hour)
	otherCP, err := New(otherKey, nil).Checkpoint(t.Context(), &memAudit{records: m.records[:7]})
	if err == nil {
		t.Fatal("another key checkpointed a head it did not sign")
	}
	otherCP = cp
	otherCP.Sig = otherKey.Sign(checkpointSigInput(cp))
	for _, bad := range []store.AuditCheckpoint{forged, forgedTime, otherCP, {Seq: 7, Hash: cp.Hash, Time: cp.Time}} {
		if _, err := Verify(t.Context(), m, testKey.Public(), bad); !errors.Is(err, ErrBadCheckpoint) {
			t.Errorf("Verify(checkpoint %+v) = %v, want ErrBadCheckpoint", bad, err)
		}
	}
	// A record someone rewrote and signed again with another key: with the
	// attacker's key the log is refused from its first record (signed by
	// the audit key), before the genuine checkpoint is reached; with the
	// audit key, the record is.
	m.records[6].Action = "covered up"
	rechain(m.records, 6, otherKey)
	var broken *BrokenError
	if _, err := Verify(t.Context(), m, otherKey.Public(), cp); !errors.As(err, &broken) || broken.Seq != 1 {
		t.Errorf("Verify(with the attacker's key) = %v, want a *BrokenError at record 1", err)
	}
	if _, err := Verify(t.Context(), m, testKey.Public(), cp); !errors.As(err, &broken) || broken.Seq != 7 {
		t.Errorf("Verify(re-signed log) = %v, want a *BrokenError at record 7", err)
	}
}

// TestVerifyLegacy: records from before the audit key verify as an unkeyed
// prefix, anchored by the first signed record.
func TestVerifyLegacy(t *testing.T) {
	build := func(t *testing.T) *memAudit {
		m := &memAudit{}
		legacy(t, m, 10)
		l := New(testKey, clock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)))
		keyCreated(t, l, m)
		for i := range 5 {
			if _, err := l.Append(t.Context(), m, event(i)); err != nil {
				t.Fatal(err)
			}
		}
		return m
	}
	m := build(t)
	res, err := Verify(t.Context(), m, testKey.Public())
	if err != nil || res.Records != 16 || res.Legacy != 10 || !res.Anchored.Equal(m.records[10].Time) {
		t.Fatalf("Verify(10 legacy + 6 signed) = %+v, %v; want 16 records, 10 legacy anchored by record 11", res, err)
	}
	for _, tt := range []struct {
		name    string
		tamper  func(rs []store.AuditRecord) []store.AuditRecord
		wantSeq int64
	}{
		{"legacy record changed", func(rs []store.AuditRecord) []store.AuditRecord { rs[3].Outcome = "denied"; return rs }, 4},
		{"legacy record changed, every later hash recomputed", func(rs []store.AuditRecord) []store.AuditRecord {
			rs[3].Outcome = "denied"
			return rechain(rs, 3, nil)
		}, 11},
		{"legacy record deleted and re-chained", func(rs []store.AuditRecord) []store.AuditRecord {
			return rechain(renumber(append(rs[:3:3], rs[4:]...)), 3, nil)
		}, 10}, // the first signed record, now number 10
		{"first signed record unsigned", func(rs []store.AuditRecord) []store.AuditRecord { rs[10].Sig = nil; return rs }, 12},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := build(t)
			m.records = tt.tamper(m.records)
			var broken *BrokenError
			if _, err := Verify(t.Context(), m, testKey.Public()); !errors.As(err, &broken) || broken.Seq != tt.wantSeq {
				t.Errorf("Verify() = %v, want a *BrokenError at record %d", err, tt.wantSeq)
			}
		})
	}
	// The wrong key is named.
	var broken *BrokenError
	if _, err := Verify(t.Context(), m, otherKey.Public()); !errors.As(err, &broken) || broken.Seq != 11 || !bytes.Contains([]byte(broken.Reason), []byte(testKey.Public().ID())) {
		t.Errorf("Verify(another key) = %v, want record 11 naming key %s", err, testKey.Public().ID())
	}
}

func TestVerifyStoreError(t *testing.T) {
	m := filled(t, 1200)
	m.failAt = pageSize
	res, err := Verify(t.Context(), m, testKey.Public())
	if !errors.Is(err, errStore) || res.Records != pageSize {
		t.Errorf("Verify() = %d, %v; want %d, errStore", res.Records, err, pageSize)
	}
	var broken *BrokenError
	if errors.As(err, &broken) {
		t.Error("a store error is reported as a broken chain")
	}
}
