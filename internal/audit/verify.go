package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
)

// pageSize is how many records Verify reads at a time.
const pageSize = 500

// Reader is what Verify reads the log through: a store, read-only is
// enough.
type Reader interface {
	AuditAfter(ctx context.Context, after int64, limit int) ([]store.AuditRecord, error)
}

// BrokenError names the first record at which the log breaks. Verify
// returns it as a *BrokenError (use errors.As).
type BrokenError struct {
	// Seq is the sequence number of the first broken record: for a gap,
	// the first missing number.
	Seq int64
	// Reason says what is wrong, for people.
	Reason string
}

// Error names the record and the reason.
func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit: chain broken at record %d: %s", e.Seq, e.Reason)
}

// TruncatedError: the log ends before the record a checkpoint covers, so
// records were removed from its end. Verify returns it as a
// *TruncatedError.
type TruncatedError struct {
	Head       int64                 // the last record the log holds
	Checkpoint store.AuditCheckpoint // the checkpoint it falls short of
}

// Error says how many records are missing.
func (e *TruncatedError) Error() string {
	return fmt.Sprintf("audit: the log ends at record %d, but the checkpoint made at %s covers %d records: records %d to %d are missing",
		e.Head, e.Checkpoint.Time.Format(time.RFC3339), e.Checkpoint.Seq, e.Head+1, e.Checkpoint.Seq)
}

var (
	// ErrNotSigned: the log holds records but none is signed: all were
	// written before the audit key existed, or their signatures were
	// stripped. A KMS signs a record as soon as it holds the key.
	ErrNotSigned = errors.New("audit: no record of the log is signed with the audit key")
	// ErrBadCheckpoint: a checkpoint's signature does not verify with the
	// audit key.
	ErrBadCheckpoint = errors.New("audit: a checkpoint's signature does not verify with the audit key")
	// ErrNoKey: Verify was given no key.
	ErrNoKey = errors.New("audit: verifying needs the audit key's public key")
)

// Result is what Verify found.
type Result struct {
	// Records is how many records passed, 1 to Records (Start+1 to
	// Records for a pruned log).
	Records int64
	// Legacy: records 1 to Legacy were written before the audit key
	// existed, unkeyed. They are protected only through record Legacy+1,
	// the first signed one (written at Anchored): a change made to them
	// before then cannot be detected.
	Legacy   int64
	Anchored time.Time
	// Head is the hash of record Records (32 zero bytes for an empty log).
	Head []byte
	// Checkpoints is how many of the given checkpoints the log matched;
	// Latest is the one of them with the highest Seq (the zero value when
	// none was given).
	Checkpoints int
	Latest      store.AuditCheckpoint
	// Start: records 1 to Start were pruned, and the log was verified from
	// record Start+1 on (Verifier.StartAfter); 0 for a whole log.
	// BeforeStart is how many of the given checkpoints cover pruned
	// records: their signatures verified, their records are in an archive
	// (not counted in Checkpoints).
	Start       int64
	BeforeStart int
	// KeyChanges are the rotations and retirements of the audit key the
	// log records (keys.go), oldest first.
	KeyChanges []KeyChange
}

// VerifyCheckpoint checks cp's signature with key: nil, or an error
// wrapping ErrBadCheckpoint.
func VerifyCheckpoint(key kcrypto.LogVerifyKey, cp store.AuditCheckpoint) error {
	if cp.Seq < 0 || !key.Verify(checkpointSigInput(cp), cp.Sig) {
		return fmt.Errorf("%w: the checkpoint of record %d made at %s", ErrBadCheckpoint, cp.Seq, cp.Time.Format(time.RFC3339Nano))
	}
	return nil
}

// Verify reads the whole log from r, oldest first, and checks it with key:
// records numbered 1, 2, 3, … without gaps; each record's PrevHash the
// previous record's Hash (32 zero bytes for the first); each Hash matching
// its record; every signature a record carries made with key; at least
// one record signed, the first of them the ActionKeyCreated record (the
// records before it are a prefix written before the key existed, see
// Result.Legacy); after it, every unsigned record followed by a signed
// one, so the log ends with a signed record (the KMS signs the last
// record of each transaction, which covers the ones before it through the
// chain); and each of checkpoints (kept by the verifier, or stored by the
// KMS) signed with key, its record present, with the hash it signed. It
// returns what passed, and the first failure: a *BrokenError, a
// *TruncatedError, an error wrapping ErrNotSigned or ErrBadCheckpoint, or
// a store failure as it is.
func Verify(ctx context.Context, r Reader, key kcrypto.LogVerifyKey, checkpoints ...store.AuditCheckpoint) (Result, error) {
	v, err := NewVerifier(key, checkpoints...)
	if err != nil {
		return v.res, err
	}
	return v.Feed(ctx, r)
}

// Feed reads the log from r after the last record v was fed (after its
// start, for the first), feeds v every record to the end, and returns v's
// Result; the first failure to read is returned as it is.
func (v *Verifier) Feed(ctx context.Context, r Reader) (Result, error) {
	for {
		page, err := r.AuditAfter(ctx, v.last, pageSize)
		if err != nil {
			return v.res, fmt.Errorf("audit: reading records after %d: %w", v.last, err)
		}
		if len(page) == 0 {
			break
		}
		for _, rec := range page {
			if err := v.Add(rec); err != nil {
				return v.res, err
			}
		}
	}
	return v.Result()
}

// ErrCheckpointBehind: a checkpoint given to a Verifier after it was fed
// records covers one of them other than the last, whose hash it no longer
// holds. Verify the log again from its start with the checkpoint.
var ErrCheckpointBehind = errors.New("audit: the checkpoint covers a record verified before it was given")

// Verifier checks a log record by record, oldest first, as Verify does,
// and can be fed more as the log grows: a reader that follows a log (the
// console) checks each record once and holds none of them. Verify is a
// Verifier fed the whole log. Its first failure sticks.
type Verifier struct {
	anchor       kcrypto.LogVerifyKey              // the key that made the log, pinned
	ks           keySet                            // the keys trusted as the log goes on (keys.go)
	unchecked    []store.AuditCheckpoint           // checkpoints no key known yet signed: checked again at the end
	want         map[int64][]store.AuditCheckpoint // checkpoints of records not fed yet, by seq
	given        int
	res          Result
	signed       bool
	unsignedFrom int64  // the first of the unsigned records since the last signed one (0: none)
	signedHead   []byte // the hash of the record before unsignedFrom
	last         int64  // the last record fed
	err          error

	start       Start  // the start of a pruned log (StartAfter)
	unexplained string // the start no prune record has named yet (StartAfter with explained)
}

// NewVerifier returns a Verifier of a log with key, holding checkpoints
// (see Verify).
func NewVerifier(key kcrypto.LogVerifyKey, checkpoints ...store.AuditCheckpoint) (*Verifier, error) {
	v := &Verifier{anchor: key, ks: newKeySet(key), want: map[int64][]store.AuditCheckpoint{}, res: Result{Head: make([]byte, hashSize)}}
	if key.IsZero() {
		v.err = ErrNoKey
		return v, v.err
	}
	for _, cp := range checkpoints {
		if err := v.AddCheckpoint(cp); err != nil {
			return v, err
		}
	}
	return v, nil
}

// Key is the audit key v checks from: the log's first, which it trusts
// before any record (keys.go: the log may rotate to others).
func (v *Verifier) Key() kcrypto.LogVerifyKey { return v.anchor }

// Last is the sequence number of the last record fed (0: none).
func (v *Verifier) Last() int64 { return v.last }

// AddCheckpoint checks cp's signature and holds it: the record it covers
// must have the hash it signed (checked now when that is the last record
// fed, or the start of an empty log; as it is fed otherwise), and the log
// must reach it. A checkpoint of an earlier record fed already is
// refused with ErrCheckpointBehind (v is unchanged).
func (v *Verifier) AddCheckpoint(cp store.AuditCheckpoint) error {
	if v.err != nil {
		return v.err
	}
	if !v.ks.checkpointSigned(cp) {
		// Perhaps by a key the log brings in later: checked at the end.
		v.unchecked = append(v.unchecked, cp)
	}
	switch {
	case cp.Seq < v.start.Seq:
		if err := v.checkpointsSigned([]store.AuditCheckpoint{cp}); err != nil {
			v.err = err
			return err
		}
		v.res.BeforeStart++
		return nil
	case cp.Seq < v.last:
		return fmt.Errorf("%w: record %d (the verifier is at record %d)", ErrCheckpointBehind, cp.Seq, v.last)
	case cp.Seq == v.last:
		if err := v.checkpointsSigned([]store.AuditCheckpoint{cp}); err != nil {
			v.err = err
			return err
		}
		if err := matchCheckpoints([]store.AuditCheckpoint{cp}, v.res.Head); err != nil {
			v.err = err
			return err
		}
	default:
		v.want[cp.Seq] = append(v.want[cp.Seq], cp)
	}
	v.given++
	if v.res.Latest.Sig == nil || cp.Seq > v.res.Latest.Seq {
		v.res.Latest = cp
	}
	return nil
}

// Add checks rec, the record after the last one fed.
func (v *Verifier) Add(rec store.AuditRecord) error {
	if v.err != nil {
		return v.err
	}
	if err := v.add(rec); err != nil {
		v.err = err
		return err
	}
	return nil
}

func (v *Verifier) add(rec store.AuditRecord) error {
	res := &v.res
	next := v.last + 1
	switch {
	case rec.Seq > next:
		return &BrokenError{Seq: next, Reason: fmt.Sprintf("it is missing; the next record is %d", rec.Seq)}
	case rec.Seq < next:
		return &BrokenError{Seq: next, Reason: fmt.Sprintf("record %d stands in its place", rec.Seq)}
	case !hashEqual(rec.PrevHash, res.Head):
		return &BrokenError{Seq: rec.Seq, Reason: "its previous hash is not the hash of the record before it"}
	case rec.Sig == nil && !hashEqual(rec.Hash, recordHash(rec)):
		return &BrokenError{Seq: rec.Seq, Reason: "its hash does not match its contents"}
	}
	if rec.Sig != nil {
		if err := checkRecord(rec, v.ks.trusted...); err != nil {
			var broken *BrokenError
			if errors.As(err, &broken) && !v.signed && rec.KeyID != v.anchor.ID() && rec.Action == ActionKeyCreated {
				broken.Reason += fmt.Sprintf(" (record %d names audit key %s)", rec.Seq, rec.KeyID)
			}
			if broken != nil && v.unsignedFrom != 0 {
				// Its signature was the only one over the unsigned
				// records before it: the change may be in any of them.
				broken.Reason = fmt.Sprintf("record %d, whose signature covers records %d to %d (unsigned, written in its transaction), fails: %s",
					rec.Seq, v.unsignedFrom, rec.Seq, broken.Reason)
				broken.Seq = v.unsignedFrom
				res.Records, res.Head = v.unsignedFrom-1, v.signedHead
			}
			return err
		}
		if !v.signed {
			if rec.Action != ActionKeyCreated {
				return &BrokenError{Seq: rec.Seq, Reason: "it is the first signed record but not the audit key's creation (" + ActionKeyCreated + "): the signatures of the records before it were removed"}
			}
			v.signed, res.Legacy, res.Anchored = true, rec.Seq-1, rec.Time
		}
		v.unsignedFrom = 0
	} else if v.signed && v.unsignedFrom == 0 {
		v.unsignedFrom, v.signedHead = rec.Seq, res.Head
	}
	if isKeyRecord(rec) && v.signed {
		if err := v.ks.apply(rec); err != nil {
			return err
		}
	}
	v.explains(rec)
	if err := v.checkpointsSigned(v.want[rec.Seq]); err != nil {
		return err
	}
	if err := matchCheckpoints(v.want[rec.Seq], rec.Hash); err != nil {
		return err
	}
	delete(v.want, rec.Seq)
	res.Head, v.last = rec.Hash, rec.Seq
	res.Records++
	return nil
}

// Result is what the records fed so far make of the log, checked as a
// whole log ending there (its last record signed, every checkpoint
// reached), or the first failure. It does not change v: more records may
// be fed after it.
func (v *Verifier) Result() (Result, error) {
	res := v.res
	switch {
	case v.err != nil:
		return res, v.err
	case res.Records > 0 && !v.signed:
		res.Legacy = res.Records
		return res, fmt.Errorf("%w: none of its %d records is", ErrNotSigned, res.Records)
	case v.unsignedFrom != 0:
		// The KMS signs the last record of every transaction, so a
		// committed log ends with a signed record. What passed ends
		// before the unsigned run.
		res.Records, res.Head = v.unsignedFrom-1, v.signedHead
		return res, &BrokenError{Seq: v.unsignedFrom, Reason: fmt.Sprintf("records %d to %d are unsigned and no signed record follows them: the log must end with a signed record, so signatures were removed from its end, or records", v.unsignedFrom, v.last)}
	case v.badCheckpoint() != nil:
		return res, v.badCheckpoint()
	case res.Latest.Sig != nil && res.Latest.Seq > v.last:
		return res, &TruncatedError{Head: v.last, Checkpoint: res.Latest}
	case v.unexplained != "":
		return res, &BrokenError{Seq: v.start.Seq + 1, Reason: fmt.Sprintf("the log starts after record %d (records 1 to %d pruned), but no record of that prune (%s, ok, naming %s) follows: records were removed from its start", v.start.Seq, v.start.Seq, ActionPruned, v.unexplained)}
	}
	res.Checkpoints = v.given
	res.KeyChanges = slices.Clone(v.ks.changes)
	return res, nil
}

// badCheckpoint is the failure of the first checkpoint given that no key
// the log trusted so far signed, or nil.
func (v *Verifier) badCheckpoint() error { return v.checkpointsSigned(v.unchecked) }

// checkpointsSigned fails with ErrBadCheckpoint on the first of cps that
// no key the log trusted so far signed. Every checkpoint of a record is
// signed by a key trusted by the time that record is written (a rotation
// is written before any replica signs with the new key).
func (v *Verifier) checkpointsSigned(cps []store.AuditCheckpoint) error {
	for _, cp := range cps {
		if !v.ks.checkpointSigned(cp) {
			return &BadCheckpointError{Checkpoint: cp, trusted: v.ks.ids()}
		}
	}
	return nil
}

// BadCheckpointError names a checkpoint no key the log trusts signed; it
// wraps ErrBadCheckpoint.
type BadCheckpointError struct {
	Checkpoint store.AuditCheckpoint
	trusted    string
}

func (e *BadCheckpointError) Error() string {
	return fmt.Sprintf("%v: the checkpoint of record %d made at %s (the log trusts %s there)", ErrBadCheckpoint, e.Checkpoint.Seq, e.Checkpoint.Time.Format(time.RFC3339Nano), e.trusted)
}

func (e *BadCheckpointError) Unwrap() error { return ErrBadCheckpoint }

// matchCheckpoints checks that every checkpoint in cps signed hash.
func matchCheckpoints(cps []store.AuditCheckpoint, hash []byte) error {
	for _, cp := range cps {
		if !hashEqual(cp.Hash, hash) {
			return &BrokenError{Seq: cp.Seq, Reason: "its hash is not the one the checkpoint made at " + cp.Time.Format(time.RFC3339Nano) + " signed"}
		}
	}
	return nil
}
