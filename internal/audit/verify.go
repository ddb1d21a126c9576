package audit

import (
	"bytes"
	"context"
	"fmt"

	"github.com/dcaas/dcaas/internal/store"
)

// pageSize is how many records Verify reads at a time.
const pageSize = 500

// BrokenError names the first record at which the chain breaks. Verify
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

// Verify reads the whole log from s, oldest first, and checks that the
// records are numbered 1, 2, 3, … without gaps, that each record's
// PrevHash is the previous record's Hash (32 zero bytes for the first),
// and that each Hash matches the record. It returns how many records
// passed, and a *BrokenError for the first that does not; a store failure
// is returned as it is.
func Verify(ctx context.Context, s store.Audit) (checked int64, err error) {
	prev := make([]byte, hashSize)
	var last int64
	for {
		page, err := s.AuditAfter(ctx, last, pageSize)
		if err != nil {
			return checked, fmt.Errorf("audit: reading records after %d: %w", last, err)
		}
		if len(page) == 0 {
			return checked, nil
		}
		for _, r := range page {
			want := last + 1
			switch {
			case r.Seq > want:
				return checked, &BrokenError{Seq: want, Reason: fmt.Sprintf("it is missing; the next record is %d", r.Seq)}
			case r.Seq < want:
				return checked, &BrokenError{Seq: want, Reason: fmt.Sprintf("record %d stands in its place", r.Seq)}
			case !bytes.Equal(r.PrevHash, prev):
				return checked, &BrokenError{Seq: r.Seq, Reason: "its previous hash is not the hash of the record before it"}
			case !bytes.Equal(r.Hash, recordHash(r)):
				return checked, &BrokenError{Seq: r.Seq, Reason: "its hash does not match its contents"}
			}
			prev, last = r.Hash, r.Seq
			checked++
		}
	}
}
