// Package audit is the KMS's append-only, hash-chained audit log over
// store.Audit. Log.Append records an Event; Verify walks the whole log and
// names the first record that breaks the chain.
//
// Every record's Hash is SHA-256 over its fields and the previous record's
// hash (see hash.go for the exact encoding), so changing, removing or
// reordering a stored record is detected from that record on. Truncating
// the end of the log is not: compare the last hash with a copy kept
// elsewhere to catch that.
//
// The log never carries secrets. Callers pass identities and ids (a DN, a
// key id, an instance id), never tokens, grants, key material or request
// bodies.
package audit

import (
	"context"
	"fmt"
	"strings"
	"time"

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

// Log appends events to the audit store. It is safe for concurrent use;
// appends are ordered by the store.
type Log struct {
	s   store.Audit
	now func() time.Time
}

// New returns a Log over s. now is the clock (nil means time.Now).
func New(s store.Audit, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{s: s, now: now}
}

// Append stores ev as the next record of the chain and returns it. The
// record's time is the clock's, in UTC, truncated to the microsecond so
// that every store keeps it exactly. Invalid UTF-8 and NUL bytes in the
// fields are replaced by U+FFFD so that every store can keep them.
func (l *Log) Append(ctx context.Context, ev Event) (store.AuditRecord, error) {
	if ev.Action == "" || ev.Outcome == "" {
		return store.AuditRecord{}, fmt.Errorf("audit: an event needs an action and an outcome")
	}
	return l.s.AppendAudit(ctx, func(seq int64, prevHash []byte) (store.AuditRecord, error) {
		switch {
		case seq < 1:
			return store.AuditRecord{}, fmt.Errorf("audit: store proposed sequence number %d", seq)
		case prevHash == nil && seq == 1:
			prevHash = make([]byte, hashSize)
		case len(prevHash) != hashSize:
			return store.AuditRecord{}, fmt.Errorf("audit: store returned a %d-byte previous hash for record %d", len(prevHash), seq)
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
		return r, nil
	})
}

// clean makes s valid UTF-8 without NUL bytes.
func clean(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
