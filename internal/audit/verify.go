package audit

import (
	"context"
	"errors"
	"fmt"
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
	// Records is how many records passed, 1 to Records.
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
	res := Result{Head: make([]byte, hashSize)}
	if key.IsZero() {
		return res, ErrNoKey
	}
	want := map[int64][]store.AuditCheckpoint{}
	for _, cp := range checkpoints {
		if err := VerifyCheckpoint(key, cp); err != nil {
			return res, err
		}
		want[cp.Seq] = append(want[cp.Seq], cp)
		if res.Latest.Sig == nil || cp.Seq > res.Latest.Seq {
			res.Latest = cp
		}
	}
	if err := matchCheckpoints(want[0], res.Head); err != nil {
		return res, err
	}
	signed := false
	var unsignedFrom int64 // the first of the unsigned records since the last signed one (0: none)
	var signedHead []byte  // the hash of the record before unsignedFrom
	var last int64
	for {
		page, err := r.AuditAfter(ctx, last, pageSize)
		if err != nil {
			return res, fmt.Errorf("audit: reading records after %d: %w", last, err)
		}
		if len(page) == 0 {
			break
		}
		for _, rec := range page {
			next := last + 1
			switch {
			case rec.Seq > next:
				return res, &BrokenError{Seq: next, Reason: fmt.Sprintf("it is missing; the next record is %d", rec.Seq)}
			case rec.Seq < next:
				return res, &BrokenError{Seq: next, Reason: fmt.Sprintf("record %d stands in its place", rec.Seq)}
			case !hashEqual(rec.PrevHash, res.Head):
				return res, &BrokenError{Seq: rec.Seq, Reason: "its previous hash is not the hash of the record before it"}
			case rec.Sig == nil && !hashEqual(rec.Hash, recordHash(rec)):
				return res, &BrokenError{Seq: rec.Seq, Reason: "its hash does not match its contents"}
			}
			if rec.Sig != nil {
				if err := checkRecord(rec, key); err != nil {
					var broken *BrokenError
					if errors.As(err, &broken) && !signed && rec.KeyID != key.ID() && rec.Action == ActionKeyCreated {
						broken.Reason += fmt.Sprintf(" (record %d names audit key %s)", rec.Seq, rec.KeyID)
					}
					if broken != nil && unsignedFrom != 0 {
						// Its signature was the only one over the unsigned
						// records before it: the change may be in any of them.
						broken.Reason = fmt.Sprintf("record %d, whose signature covers records %d to %d (unsigned, written in its transaction), fails: %s",
							rec.Seq, unsignedFrom, rec.Seq, broken.Reason)
						broken.Seq = unsignedFrom
						res.Records, res.Head = unsignedFrom-1, signedHead
					}
					return res, err
				}
				if !signed {
					if rec.Action != ActionKeyCreated {
						return res, &BrokenError{Seq: rec.Seq, Reason: "it is the first signed record but not the audit key's creation (" + ActionKeyCreated + "): the signatures of the records before it were removed"}
					}
					signed, res.Legacy, res.Anchored = true, rec.Seq-1, rec.Time
				}
				unsignedFrom = 0
			} else if signed && unsignedFrom == 0 {
				unsignedFrom, signedHead = rec.Seq, res.Head
			}
			if err := matchCheckpoints(want[rec.Seq], rec.Hash); err != nil {
				return res, err
			}
			res.Head, last = rec.Hash, rec.Seq
			res.Records++
		}
	}
	if res.Records > 0 && !signed {
		res.Legacy = res.Records
		return res, fmt.Errorf("%w: none of its %d records is", ErrNotSigned, res.Records)
	}
	if unsignedFrom != 0 {
		// The KMS signs the last record of every transaction, so a
		// committed log ends with a signed record. What passed ends
		// before the unsigned run.
		res.Records, res.Head = unsignedFrom-1, signedHead
		return res, &BrokenError{Seq: unsignedFrom, Reason: fmt.Sprintf("records %d to %d are unsigned and no signed record follows them: the log must end with a signed record, so signatures were removed from its end, or records", unsignedFrom, last)}
	}
	if res.Latest.Sig != nil && res.Latest.Seq > last {
		return res, &TruncatedError{Head: last, Checkpoint: res.Latest}
	}
	res.Checkpoints = len(checkpoints)
	return res, nil
}

// matchCheckpoints checks that every checkpoint in cps signed hash.
func matchCheckpoints(cps []store.AuditCheckpoint, hash []byte) error {
	for _, cp := range cps {
		if !hashEqual(cp.Hash, hash) {
			return &BrokenError{Seq: cp.Seq, Reason: "its hash is not the one the checkpoint made at " + cp.Time.Format(time.RFC3339Nano) + " signed"}
		}
	}
	return nil
}
