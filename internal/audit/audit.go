// Package audit is the KMS's append-only audit log over store.Audit: a
// hash chain signed with the KMS's audit key (the last record of each
// transaction carries the signature, which covers the records before it
// through the chain), and signed checkpoints of its head. Log.Append records an Event;
// Log.Checkpoint signs the head; Verify walks the whole log with the
// audit key's public half and names the first record that breaks it.
//
// What a verifier holding the public key can detect, from someone who can
// write the database but does not hold the audit key (which the KMS keeps
// sealed under its root key):
//
//   - a record changed, inserted, removed, duplicated or moved, anywhere
//     but in an unsigned legacy prefix: its signature, or the signature
//     of the record that closes its transaction, or the chain breaks,
//     even if every later hash is recomputed;
//   - a change to the legacy prefix (records written before the audit key
//     existed, unkeyed) made after the first signed record was written:
//     that record's signature covers the hash of the last legacy one, and
//     through the chain every legacy record;
//   - signatures stripped: once a record is signed, every later unsigned
//     one must be followed by a signed one, so the log ends signed; the
//     first signed record must be the audit key's creation
//     (ActionKeyCreated), which a KMS appends in the transaction that
//     stores the key; and a log without any signed record does not
//     verify;
//   - records removed from the end (truncation) up to a checkpoint the
//     verifier is given: the log must reach every given checkpoint's
//     record with the same hash.
//
// What it cannot detect: records removed from the end after the latest
// checkpoint the verifier has (keep checkpoints, or the head a verify
// printed, outside the database, and pass them back); a log replaced
// wholesale by an older copy of itself, if no later checkpoint is kept;
// changes made to the legacy prefix before the audit key existed; and
// anything done by whoever holds the audit key (the KMS, or the root of
// trust it is sealed under).
//
// The log never carries secrets. Callers pass identities and ids (a DN, a
// key id, an instance id), never tokens, grants, key material or request
// bodies.
package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
)

// Event is what happened, as the caller saw it. No field may hold a secret.
type Event struct {
	Caller  string // who: the caller's normalized DN, or "" when unknown
	Role    string // api.Role of the caller, if known
	Action  string // what: e.g. "datakeys.create"; required
	Tenant  string // the tenant concerned, if any
	KeyID   string // the key (or instance) concerned, if any
	Outcome string // e.g. "ok", "denied", "error"; required
	Code    string // api.Code of a failure, if any
}

// ActionKeyCreated is the action of the record a KMS appends when it makes
// its audit key (the first record it signs); the record's KeyID is the
// key's ID (kcrypto.LogVerifyKey.ID).
const ActionKeyCreated = "audit.key_created"

// Appender is where records are appended: a store, or a store transaction
// (so that a record commits with the change it records).
type Appender interface {
	AppendAudit(ctx context.Context, build func(seq int64, prevHash []byte) (store.AuditRecord, error), sign store.AuditSigner) (store.AuditRecord, error)
}

// ErrRegressed: the store offered a sequence number below one this Log
// already used, so committed records disappeared (the log was truncated
// or rolled back under a running KMS).
var ErrRegressed = errors.New("audit: the log went back: records this KMS saw are gone")

// Log signs and appends events. It is safe for concurrent use; appends are
// ordered by the store.
type Log struct {
	now func() time.Time

	mu     sync.Mutex
	key    *kcrypto.LogKey        // signs what is appended from now on (SetKey)
	accept []kcrypto.LogVerifyKey // the keys whose signatures may end the log: key's, and older ones not retired
	stored int64                  // the highest sequence number known stored (Stored)
}

// New returns a Log that signs with key (which the Log uses but does not
// own: the caller wipes it after the Log's last use). now is the clock
// (nil means time.Now). A nil key is a programming error.
func New(key *kcrypto.LogKey, now func() time.Time) *Log {
	if key == nil {
		panic("audit: New needs a key")
	}
	if now == nil {
		now = time.Now
	}
	return &Log{key: key, accept: []kcrypto.LogVerifyKey{key.Public()}, now: now}
}

// Public is the key the Log signs with now.
func (l *Log) Public() kcrypto.LogVerifyKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.key.Public()
}

// SetKey makes the Log sign with key from now on (a rotation this KMS made
// or another replica did: the rotation record is the caller's to append
// first). Records appended before keep the key they were appended with,
// even if their transaction commits later. The previous key's signatures
// still end the log (Checkpoint) until Retire. The Log uses key but does
// not own it.
func (l *Log) SetKey(key *kcrypto.LogKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.key = key
	if pub := key.Public(); !slices.ContainsFunc(l.accept, pub.Equal) {
		l.accept = append(l.accept, pub)
	}
}

// AcceptOnly makes the Log accept at the log's head signatures by its own
// key and by keys (those a rotation left trusted, which other replicas may
// still sign with), and no other.
func (l *Log) AcceptOnly(keys ...kcrypto.LogVerifyKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accept = []kcrypto.LogVerifyKey{l.key.Public()}
	for _, k := range keys {
		if !slices.ContainsFunc(l.accept, k.Equal) {
			l.accept = append(l.accept, k)
		}
	}
}

// Retire stops accepting signatures by the keys with these ids at the
// log's head (the key the Log signs with is never retired).
func (l *Log) Retire(ids ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.key.Public().ID()
	l.accept = slices.DeleteFunc(l.accept, func(k kcrypto.LogVerifyKey) bool {
		return k.ID() != cur && slices.Contains(ids, k.ID())
	})
}

// signing returns the key to sign with now and the keys accepted at the
// head.
func (l *Log) signing() (*kcrypto.LogKey, []kcrypto.LogVerifyKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.key, slices.Clone(l.accept)
}

// Append stores ev through to as the next record of the chain and returns
// it. The record is signed when its transaction commits if it is then
// the transaction's last record (store.Audit.AppendAudit); the records
// before it in the same transaction stay unsigned, covered through the
// chain by that signature, so the key signs once per transaction, not
// once per record. The audit key's creation (ActionKeyCreated) is signed
// as it is built: a verifier starts the signed log at that record. The
// record's time is the clock's, in UTC, truncated to the microsecond so
// that every store keeps it exactly. Invalid UTF-8 and
// NUL bytes in the fields are replaced by U+FFFD so that every store can
// keep them. ErrRegressed when the store's log is shorter than it was when
// this Log was last told a record was Stored.
func (l *Log) Append(ctx context.Context, to Appender, ev Event) (store.AuditRecord, error) {
	if ev.Action == "" || ev.Outcome == "" {
		return store.AuditRecord{}, fmt.Errorf("audit: an event needs an action and an outcome")
	}
	// A record that makes or changes the audit key is signed as it is
	// built: a verifier trusts a key only on such a record's own
	// signature. Every other record is signed, if its transaction ends
	// with it, with the key the Log held when it was appended.
	signNow := ev.Action == ActionKeyCreated || ev.Action == ActionKeyRotated || ev.Action == ActionKeyRetired
	l.mu.Lock()
	key := l.key
	l.mu.Unlock()
	sign := store.AuditSigner(func(seq int64, hash []byte) []byte { return key.Sign(recordSigInput(seq, hash)) })
	if signNow {
		sign = nil
	}
	return to.AppendAudit(ctx, func(seq int64, prevHash []byte) (store.AuditRecord, error) {
		switch {
		case seq < 1:
			return store.AuditRecord{}, fmt.Errorf("audit: store proposed sequence number %d", seq)
		case prevHash == nil && seq == 1:
			prevHash = make([]byte, hashSize)
		case len(prevHash) != hashSize:
			return store.AuditRecord{}, fmt.Errorf("audit: store returned a %d-byte previous hash for record %d", len(prevHash), seq)
		}
		if err := l.saw(seq); err != nil {
			return store.AuditRecord{}, err
		}
		r := store.AuditRecord{
			Seq:      seq,
			Time:     l.now().UTC().Truncate(time.Microsecond),
			Caller:   clean(ev.Caller),
			Role:     clean(ev.Role),
			Action:   clean(ev.Action),
			Tenant:   clean(ev.Tenant),
			KeyID:    clean(ev.KeyID),
			Outcome:  clean(ev.Outcome),
			Code:     clean(ev.Code),
			PrevHash: append([]byte(nil), prevHash...),
		}
		r.Hash = recordHash(r)
		if signNow {
			r.Sig = key.Sign(recordSigInput(r.Seq, r.Hash))
		}
		return r, nil
	}, sign)
}

// Stored tells the Log that record seq was stored: the transaction that
// appended it committed (for an append outside a transaction, Append
// returned it). The caller says so, since only it knows when its
// transaction commits; a record it does not report only weakens the
// check below.
func (l *Log) Stored(seq int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stored = max(l.stored, seq)
}

// saw checks the seq the store offers for the next record. One at or below
// a record known stored means committed records are gone. A seq offered
// again after records were only built is not: their transaction rolled
// back, and a group commit's transaction holds many records, so the store
// may go back by more than one.
func (l *Log) saw(seq int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq <= l.stored {
		return fmt.Errorf("%w: the store offers record %d, but record %d was stored", ErrRegressed, seq, l.stored)
	}
	return nil
}

// CheckpointStore is where Log.Checkpoint reads the head and stores the
// checkpoint: a store or a store transaction.
type CheckpointStore interface {
	LastAudit(ctx context.Context) (store.AuditRecord, error)
	PutAuditCheckpoint(ctx context.Context, cp store.AuditCheckpoint) (store.AuditCheckpoint, error)
}

// Checkpoint signs the log's head as s holds it now (its sequence number,
// its hash, the time) and stores the checkpoint there; it returns the
// checkpoint stored for that head (an earlier one when the head has not
// moved since). It refuses, with a *BrokenError or ErrRegressed, to sign a
// head that is not the KMS's own record, or a log shorter than it was
// when this Log was last told a record was Stored.
func (l *Log) Checkpoint(ctx context.Context, s CheckpointStore) (store.AuditCheckpoint, error) {
	head, err := s.LastAudit(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		head = store.AuditRecord{Hash: make([]byte, hashSize)}
	case err != nil:
		return store.AuditCheckpoint{}, fmt.Errorf("audit: reading the head: %w", err)
	}
	l.mu.Lock()
	known := l.stored
	l.mu.Unlock()
	if head.Seq < known {
		return store.AuditCheckpoint{}, fmt.Errorf("%w: the log ends at record %d, but record %d was stored", ErrRegressed, head.Seq, known)
	}
	key, accept := l.signing()
	if head.Seq > 0 {
		if err := checkRecord(head, accept...); err != nil {
			return store.AuditCheckpoint{}, err
		}
	}
	cp := store.AuditCheckpoint{Seq: head.Seq, Hash: head.Hash, Time: l.now().UTC().Truncate(time.Microsecond)}
	cp.Sig = key.Sign(checkpointSigInput(cp))
	stored, err := s.PutAuditCheckpoint(ctx, cp)
	if err != nil {
		return store.AuditCheckpoint{}, fmt.Errorf("audit: storing the checkpoint of record %d: %w", cp.Seq, err)
	}
	// The one stored first for that head (another replica's, perhaps
	// with a key this one has retired since) is the one that stands.
	if ks := (keySet{known: accept}); !ks.checkpointSigned(stored) {
		return store.AuditCheckpoint{}, fmt.Errorf("%w: the checkpoint of record %d made at %s", ErrBadCheckpoint, stored.Seq, stored.Time.Format(time.RFC3339Nano))
	}
	return stored, nil
}

// checkRecord checks one signed record on its own: its hash, and its
// signature by one of keys.
func checkRecord(r store.AuditRecord, keys ...kcrypto.LogVerifyKey) error {
	switch {
	case !hashEqual(r.Hash, recordHash(r)):
		return &BrokenError{Seq: r.Seq, Reason: "its hash does not match its contents"}
	case r.Sig == nil:
		return &BrokenError{Seq: r.Seq, Reason: "it is not signed"}
	}
	ks := keySet{trusted: keys}
	if _, ok := ks.signer(r.Seq, r.Hash, r.Sig); !ok {
		if len(keys) == 1 {
			return &BrokenError{Seq: r.Seq, Reason: "its signature does not verify with the audit key " + keys[0].ID()}
		}
		return &BrokenError{Seq: r.Seq, Reason: "its signature does not verify with the audit keys the log trusts there (" + ks.ids() + ")"}
	}
	return nil
}

// clean makes s valid UTF-8 without NUL bytes.
func clean(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
