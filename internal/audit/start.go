package audit

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dcaas/dcaas/api"
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
	// Keys are the records at or below Seq that changed the audit key
	// (rotations and retirements, keys.go), oldest first: what a verifier
	// holding the log's first key needs to know which keys sign after the
	// start, each signed as it was written.
	Keys []api.AuditRecord `json:"keys,omitempty"`
}

// StartOf is the start that record r would be.
func StartOf(r store.AuditRecord) Start { return Start{Seq: r.Seq, Hash: r.Hash, Sig: r.Sig} }

// IsZero reports whether s is the start of an unpruned log.
func (s Start) IsZero() bool { return s.Seq == 0 }

// String is how records and people name a start: "SEQ:HASH", the hash in
// hex (the form of `dcaas audit verify --expect-head`), and when the start
// carries key records ":" and the SHA-256, in hex, of their hashes one
// after the other (so the record of a prune commits to them); "0" for the
// zero Start.
func (s Start) String() string {
	if s.IsZero() {
		return "0"
	}
	name := fmt.Sprintf("%d:%x", s.Seq, s.Hash)
	if len(s.Keys) == 0 {
		return name
	}
	h := sha256.New()
	for _, r := range s.Keys {
		h.Write(r.Hash)
	}
	return fmt.Sprintf("%s:%x", name, h.Sum(nil))
}

// ErrBadStart: a start is not a record the audit key signed.
var ErrBadStart = errors.New("audit: the log's start is not a record signed by the audit key")

// Check checks s for a verifier holding the log's first key, anchor: its
// key records, in order, each signed as it was written by a key trusted
// then (anchor, and those they bring in), and record s.Seq signed by a
// key trusted after them, with hash s.Hash. The zero Start (no hash, no
// signature, no key record) is always good.
func (s Start) Check(anchor kcrypto.LogVerifyKey) error {
	_, err := s.trust(anchor)
	return err
}

// trust is Check, and the keys trusted after the start.
func (s Start) trust(anchor kcrypto.LogVerifyKey) (keySet, error) {
	ks := newKeySet(anchor)
	if s.Seq == 0 && len(s.Hash) == 0 && len(s.Sig) == 0 && len(s.Keys) == 0 {
		return ks, nil
	}
	if s.Seq < 1 || len(s.Hash) != hashSize {
		return ks, fmt.Errorf("%w: record %d with a %d-byte hash", ErrBadStart, s.Seq, len(s.Hash))
	}
	var prev int64
	for _, ar := range s.Keys {
		r := FromAPI(ar)
		switch {
		case r.Seq <= prev || r.Seq > s.Seq:
			return ks, fmt.Errorf("%w: its key records are not in order at or below record %d (record %d after %d)", ErrBadStart, s.Seq, r.Seq, prev)
		case !isKeyRecord(r):
			return ks, fmt.Errorf("%w: record %d among its key records is %s, not a key rotation or retirement", ErrBadStart, r.Seq, r.Action)
		}
		if err := checkRecord(r, ks.trusted...); err != nil {
			return ks, fmt.Errorf("%w: its key record %w", ErrBadStart, err)
		}
		if err := ks.apply(r); err != nil {
			return ks, fmt.Errorf("%w: its key record %w", ErrBadStart, err)
		}
		prev = r.Seq
	}
	if _, ok := ks.signer(s.Seq, s.Hash, s.Sig); !ok {
		return ks, fmt.Errorf("%w: the signature of record %d does not verify with the audit keys trusted there (%s)", ErrBadStart, s.Seq, ks.ids())
	}
	return ks, nil
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
	ks, err := s.trust(v.anchor)
	if err != nil {
		v.err = err
		return err
	}
	v.ks, v.start = ks, s
	v.last, v.res.Head, v.res.Start, v.res.Records = s.Seq, s.Hash, s.Seq, s.Seq
	// The start is a signed record, so the audit key existed before it.
	v.signed = true
	if explained {
		v.unexplained = s.String()
	}
	for seq, cps := range v.want {
		if seq > s.Seq {
			continue
		}
		if err := v.checkpointsSigned(cps); err != nil {
			v.err = err
			return err
		}
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
// as one span the audit keys signed, for a verifier holding the log's
// first key, anchor: start as Check checks it; each record's hash matches
// it and is the next one's previous hash, from start's hash to record
// through, whose signature must verify with a key trusted there; and each
// record that changes the audit key is signed itself by a key trusted
// then (keys.go). The other signatures between are not checked: through's
// covers them all through the chain, as it covers the unsigned records of
// a transaction. It is the check before a prune (the KMS deletes nothing a
// signature of its own does not cover), a fraction of Verify's cost. It
// returns record through and the key records of the span, for the next
// start; a change among the records is a *BrokenError naming the first
// record whose hash or link is wrong, or through when only its signature
// is.
func CheckSegment(ctx context.Context, r Reader, anchor kcrypto.LogVerifyKey, start Start, through int64) (store.AuditRecord, []store.AuditRecord, error) {
	ks, err := start.trust(anchor)
	if err != nil {
		return store.AuditRecord{}, nil, err
	}
	if through <= start.Seq {
		return store.AuditRecord{}, nil, fmt.Errorf("audit: no record after %d up to %d", start.Seq, through)
	}
	prev, last := start.Hash, start.Seq
	if start.IsZero() {
		prev = make([]byte, hashSize)
	}
	var rec store.AuditRecord
	var keyRecs []store.AuditRecord
	for last < through {
		page, err := r.AuditAfter(ctx, last, int(min(pageSize, through-last)))
		if err != nil {
			return store.AuditRecord{}, nil, fmt.Errorf("audit: reading records after %d: %w", last, err)
		}
		if len(page) == 0 {
			return store.AuditRecord{}, nil, &BrokenError{Seq: last + 1, Reason: fmt.Sprintf("it is missing; the log ends at record %d", last)}
		}
		for _, rec = range page {
			switch {
			case rec.Seq != last+1:
				return store.AuditRecord{}, nil, &BrokenError{Seq: last + 1, Reason: fmt.Sprintf("it is missing; the next record is %d", rec.Seq)}
			case !hashEqual(rec.PrevHash, prev):
				return store.AuditRecord{}, nil, &BrokenError{Seq: rec.Seq, Reason: "its previous hash is not the hash of the record before it"}
			case !hashEqual(rec.Hash, recordHash(rec)):
				return store.AuditRecord{}, nil, &BrokenError{Seq: rec.Seq, Reason: "its hash does not match its contents"}
			}
			if isKeyRecord(rec) {
				if rec.Sig != nil {
					if err := checkRecord(rec, ks.trusted...); err != nil {
						return store.AuditRecord{}, nil, err
					}
				}
				if err := ks.apply(rec); err != nil {
					return store.AuditRecord{}, nil, err
				}
				keyRecs = append(keyRecs, rec)
			}
			prev, last = rec.Hash, rec.Seq
		}
	}
	if err := checkRecord(rec, ks.trusted...); err != nil {
		return store.AuditRecord{}, nil, err
	}
	return rec, keyRecs, nil
}
