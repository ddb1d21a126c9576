package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
)

// Pruning. Records can be removed from the start of the log once they are
// archived (the KMS's POST /v1/audit/prune, after `dcaas audit archive`):
// what stays in the database starts after a signed record, the log's
// Start (its seq, hash and signature), which the KMS keeps apart from the
// records. A verifier of what stays trusts the start's hash because the
// audit key signed it, and trusts the start itself only when the log after
// it holds the record of the prune that set it: the call ActionPruned,
// outcome ok, naming the start (KeyID Start.String()). Without that rule
// someone who can write the database could delete more records and name a
// later signed record as the start; with it, moving the start needs a
// record only the audit key can sign. An archive's start is trusted
// through the archive before it, which ends with that record.

// ActionPruned is the action of the call that prunes the log up to a
// start; its record's KeyID names the start (Start.String()).
const ActionPruned = "audit.prune"

// Start is the signed record a pruned log starts after: records 1 to Seq
// are gone from the log (archived), record Seq+1 is chained to Hash, and
// Sig is the audit key's signature of record Seq (the record signature of
// docs/formats.md §4). The zero Start is the start of an unpruned log.
type Start struct {
	Seq  int64  `json:"seq"`
	Hash []byte `json:"hash,omitempty"`
	Sig  []byte `json:"signature,omitempty"`
}

// StartOf is the start that record r would be.
func StartOf(r store.AuditRecord) Start { return Start{Seq: r.Seq, Hash: r.Hash, Sig: r.Sig} }

// IsZero reports whether s is the start of an unpruned log.
func (s Start) IsZero() bool { return s.Seq == 0 }

// String is how records and people name a start: "SEQ:HASH", the hash in
// hex (the form of `dcaas audit verify --expect-head`); "0" for the zero
// Start.
func (s Start) String() string {
	if s.IsZero() {
		return "0"
	}
	return fmt.Sprintf("%d:%x", s.Seq, s.Hash)
}

// ErrBadStart: a start is not a record the audit key signed.
var ErrBadStart = errors.New("audit: the log's start is not a record signed by the audit key")

// Check checks that key signed record s.Seq with hash s.Hash. The zero
// Start (no hash, no signature) is always good.
func (s Start) Check(key kcrypto.LogVerifyKey) error {
	switch {
	case s.Seq == 0 && len(s.Hash) == 0 && len(s.Sig) == 0:
		return nil
	case s.Seq < 1 || len(s.Hash) != hashSize:
		return fmt.Errorf("%w: record %d with a %d-byte hash", ErrBadStart, s.Seq, len(s.Hash))
	case !key.Verify(recordSigInput(s.Seq, s.Hash), s.Sig):
		return fmt.Errorf("%w: the signature of record %d does not verify with the audit key %s", ErrBadStart, s.Seq, key.ID())
	}
	return nil
}

// ParseStart decodes a start as the KMS stores it (JSON: seq, and hash and
// signature in standard base64); nil or empty is the zero Start. It does
// not check the signature (Check).
func ParseStart(b []byte) (Start, error) {
	var s Start
	if len(b) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return Start{}, fmt.Errorf("%w: %w", ErrBadStart, err)
	}
	return s, nil
}

// Marshal encodes s as ParseStart reads it.
func (s Start) Marshal() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic("audit: encoding a start: " + err.Error()) // an int and two byte slices
	}
	return b
}

// StartAfter makes v check a log whose records 1 to s.Seq were pruned:
// the first record fed must be s.Seq+1, chained to s.Hash, and s must be
// signed by v's key. With explained (the start a database names for its
// own log) the records fed must also hold the record of the prune that
// set it (ActionPruned, outcome ok, KeyID s.String()), or Result fails;
// an archive's start is trusted through the archive before it instead.
// Checkpoints of pruned records (given before or after) are checked for
// their signature only and counted in Result.BeforeStart; one of record
// s.Seq must have s.Hash. It must be called before the first record is
// fed; the zero Start changes nothing.
func (v *Verifier) StartAfter(s Start, explained bool) error {
	if v.err != nil {
		return v.err
	}
	if v.last != 0 || v.res.Records != 0 {
		return errors.New("audit: StartAfter after records were fed")
	}
	if s.IsZero() {
		return nil
	}
	if err := s.Check(v.key); err != nil {
		v.err = err
		return err
	}
	v.start = s
	v.last, v.res.Head, v.res.Start, v.res.Records = s.Seq, s.Hash, s.Seq, s.Seq
	// The start is a signed record, so the audit key existed before it.
	v.signed = true
	if explained {
		v.unexplained = s.String()
	}
	for seq, cps := range v.want {
		switch {
		case seq < s.Seq:
			v.res.BeforeStart += len(cps)
			v.given -= len(cps)
			delete(v.want, seq)
		case seq == s.Seq:
			if err := matchCheckpoints(cps, s.Hash); err != nil {
				v.err = err
				return err
			}
			delete(v.want, seq)
		}
	}
	return nil
}

// explains notes rec when it is the record of the prune that set the
// start v checks from.
func (v *Verifier) explains(rec store.AuditRecord) {
	if v.unexplained != "" && rec.Action == ActionPruned && rec.Outcome == "ok" && rec.KeyID == v.unexplained {
		v.unexplained = ""
	}
}

// VerifyAfter is Verify of a pruned log that starts after start, the start
// the database holding r names for it (see Verifier.StartAfter with
// explained): records start.Seq+1 on are read and checked, and the
// record of the prune that set start must be among them.
func VerifyAfter(ctx context.Context, r Reader, key kcrypto.LogVerifyKey, start Start, checkpoints ...store.AuditCheckpoint) (Result, error) {
	v, err := NewVerifier(key, checkpoints...)
	if err != nil {
		return v.res, err
	}
	if err := v.StartAfter(start, true); err != nil {
		return v.res, err
	}
	return v.Feed(ctx, r)
}

// CheckSegment checks the records after start up to through, read from r,
// as one span the audit key signed: each record's hash matches it and is
// the next one's previous hash, from start's hash (start itself as Check
// checks it) to record through, whose signature must verify with key. The
// signatures between are not checked: through's signature covers them all
// through the chain, as it covers the unsigned records of a transaction.
// It is the check before a prune (the KMS deletes nothing a signature of
// its own does not cover), an eighth of Verify's cost on SQLite; a change
// among the records is reported as a *BrokenError naming the first record
// whose hash or link is wrong, or through when only its signature is.
func CheckSegment(ctx context.Context, r Reader, key kcrypto.LogVerifyKey, start Start, through int64) (store.AuditRecord, error) {
	if err := start.Check(key); err != nil {
		return store.AuditRecord{}, err
	}
	if through <= start.Seq {
		return store.AuditRecord{}, fmt.Errorf("audit: no record after %d up to %d", start.Seq, through)
	}
	prev, last := start.Hash, start.Seq
	if start.IsZero() {
		prev = make([]byte, hashSize)
	}
	var rec store.AuditRecord
	for last < through {
		page, err := r.AuditAfter(ctx, last, int(min(pageSize, through-last)))
		if err != nil {
			return store.AuditRecord{}, fmt.Errorf("audit: reading records after %d: %w", last, err)
		}
		if len(page) == 0 {
			return store.AuditRecord{}, &BrokenError{Seq: last + 1, Reason: fmt.Sprintf("it is missing; the log ends at record %d", last)}
		}
		for _, rec = range page {
			switch {
			case rec.Seq != last+1:
				return store.AuditRecord{}, &BrokenError{Seq: last + 1, Reason: fmt.Sprintf("it is missing; the next record is %d", rec.Seq)}
			case !hashEqual(rec.PrevHash, prev):
				return store.AuditRecord{}, &BrokenError{Seq: rec.Seq, Reason: "its previous hash is not the hash of the record before it"}
			case !hashEqual(rec.Hash, recordHash(rec)):
				return store.AuditRecord{}, &BrokenError{Seq: rec.Seq, Reason: "its hash does not match its contents"}
			}
			prev, last = rec.Hash, rec.Seq
		}
	}
	if err := checkRecord(rec, key); err != nil {
		return store.AuditRecord{}, err
	}
	return rec, nil
}
